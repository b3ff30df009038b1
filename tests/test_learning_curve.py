"""experiments/learning_curve.py: the kept checkpoints of the ablation's runs, evaluated along training."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from checkpoint_io import CheckpointError, save_checkpoint
from experiments import learning_curve
from test_probe_object_size import fake_run

NETWORK_NAMES = ('dispnet', 'ego_pose', 'obj_pose')


def keep_copies(run_dir, epochs, steps_per_epoch, steps=None):
    """Give a fake run kept copies at ``epochs``, saved at ``steps`` (default: ``epoch * steps_per_epoch``; its
    final checkpoints are the last copy's) and the manifest of its last save."""
    steps = steps or [epoch * steps_per_epoch for epoch in epochs]
    for epoch, step in zip(epochs, steps):
        for name in NETWORK_NAMES:
            weights = torch.load(run_dir / f'{name}_checkpoint.pth.tar', weights_only=True)['state_dict']
            save_checkpoint(run_dir / f'{name}_checkpoint_ep{epoch:03d}.pth.tar', weights, epoch, n_iter=step)
    manifest = {'save_id': 'test', 'epoch': epochs[-1], 'n_iter': steps[-1],
                'files': sorted(p.name for p in run_dir.glob('*.pth.tar'))}
    (run_dir / 'checkpoint_set.json').write_text(json.dumps(manifest))


def depth_row(config, seed, step, moving, background):
    return {'config': config, 'seed': seed, 'checkpoint': f'ep{step}', 'step': step,
            'metrics': {'depth': {'moving': {'abs_rel': moving}, 'background': {'abs_rel': background}},
                        'objects': None}}


def with_split(row, near, away):
    """``row`` with a background split whose cars' borders have Abs Rel ``near`` and the open background ``away``
    (signed errors 0.1 and 0; the other parts left out)."""
    row['kinds'] = {'background_split': {'near_cars': {'abs_rel': near, 'log_ratio': 0.1},
                                         'away_from_cars': {'abs_rel': away, 'log_ratio': 0.0}}}
    return row


def test_background_split_table_averages_the_checkpoints_and_compares_full_with_rigid():
    rows = [with_split(depth_row('full', 1, 100, 0.3, 0.1), 0.30, 0.10),
            with_split(depth_row('full', 1, 200, 0.3, 0.1), 0.20, 0.10),
            with_split(depth_row('rigid', 1, 200, 0.3, 0.1), 0.20, 0.08),
            depth_row('rigid', 0, 200, 0.3, 0.1)]                          # no split: left out of the table
    lines = learning_curve.background_split_lines(rows, [('mean of steps >= 100', {100, 200})])
    header = lines[3].split(' | ')
    assert header[:3] == ['| steps', 'config', 'seeds'] and header[3] == 'near_cars'
    cells = {line.split(' | ')[1]: line.strip('| ').split(' | ') for line in lines[5:]}
    assert cells['full'][2:4] == ['1', '0.250 / 0.100'] and cells['full'][header.index('upper')] == 'n/a / n/a'
    assert cells['full'][header.index('away_from_cars')] == '0.100 / 0.000'
    # paired on (seed 1, step 200) only: near 0.20 against 0.20, away 0.10 against 0.08
    assert cells['full vs rigid'][3] == '0.0 % better'
    assert cells['full vs rigid'][header.index('away_from_cars')] == '25.0 % worse'
    assert cells['full vs rigid'][header.index('road')] == 'n/a'
    assert learning_curve.background_split_lines([depth_row('full', 1, 100, 0.3, 0.1)], []) == []
    assert '| mean of steps >= 100 | full vs rigid | 1 | 0.0 % better |' in learning_curve.format_markdown(rows, [])


def test_checkpoint_steps_are_the_copies_on_the_grid_between_the_initialisation_and_the_last(world, tmp_path):
    run_dir = fake_run(world, tmp_path / 'runs')
    keep_copies(run_dir, [2, 4, 6, 8], steps_per_epoch=20, steps=[40, 80, 125, 165])   # steps as saved
    assert learning_curve.checkpoint_steps(run_dir, 40) == [('init', 0), ('ep002', 40), ('ep004', 80), ('last', 165)]
    assert learning_curve.checkpoint_steps(run_dir, 80) == [('init', 0), ('ep004', 80), ('last', 165)]


def test_no_copy_on_the_grid_is_said(world, tmp_path, capsys):
    run_dir = fake_run(world, tmp_path / 'runs')
    keep_copies(run_dir, [3, 6], steps_per_epoch=20)
    assert learning_curve.checkpoint_steps(run_dir, 50) == [('init', 0), ('last', 120)]
    assert 'no kept copy is at a multiple of --every 50 (copies at steps 60, 120' in capsys.readouterr().err


def test_a_run_without_a_manifest_is_one_clear_error(world, tmp_path):
    run_dir = fake_run(world, tmp_path / 'runs')
    with pytest.raises(learning_curve.EvalError, match='no checkpoint_set.json'):
        learning_curve.checkpoint_steps(run_dir, 40)


def test_gain_of_full_over_rigid_is_on_the_seeds_both_have_at_a_step():
    rows = [depth_row('full', 0, 100, 0.30, 0.105), depth_row('rigid', 0, 100, 0.40, 0.100),
            depth_row('full', 1, 100, 0.10, 0.101),                       # no rigid seed 1: not paired
            depth_row('full', 0, 200, 0.30, 0.090), depth_row('rigid', 0, 200, 0.30, 0.100),
            depth_row('full', 0, 300, 0.30, 0.100)]
    moving, background, seeds = learning_curve.paired_gain(rows, {100})
    assert (moving, background, seeds) == (pytest.approx(0.25), pytest.approx(0.05), [0])
    assert learning_curve.paired_gain(rows, {300}) is None
    # over steps 100 and 200: the pairs (0, 100) and (0, 200), full 0.30 against rigid 0.35
    assert learning_curve.paired_gain(rows, {100, 200})[0] == pytest.approx(1 - 0.30 / 0.35)
    table = learning_curve.format_markdown(rows, ['python -m experiments.learning_curve ...'])
    assert '| 100 | 0.200 | 0.103 | n/a | 0.400 | 0.100 | n/a | 25.0 % lower | 5.0 % worse |' in table
    assert '| 200 | 0.300 | 0.090 | n/a | 0.300 | 0.100 | n/a | 0.0 % lower | 10.0 % better |' in table
    assert '| 300 | 0.300 | 0.100 | n/a | n/a | n/a | n/a | n/a | n/a |' in table
    # the second half (steps >= 150): full's rows at 200 and 300, rigid's at 200; paired on (0, 200) only; seed 1
    # has no row there
    assert '| mean of steps >= 150, seed 0 | 0.300 | 0.095 | n/a | 0.300 | 0.100 | n/a | 0.0 % lower | 10.0 % ' \
        'better |' in table
    assert '| mean of steps >= 150, seed 1 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |' in table
    assert '| mean of steps >= 150, all seeds | 0.300 | 0.095 | n/a | 0.300 | 0.100 | n/a | 0.0 % lower | 10.0 % ' \
        'better |' in table
    assert learning_curve.row_configs(rows[::-1] + [depth_row('obj_size_0.01', 0, 100, 0.3, 0.1)]) == \
        ['full', 'rigid', 'obj_size_0.01']
    rows.append(depth_row('rigid', 0, 300, 0.25, 0.100))
    assert '| 300 | 0.300 | 0.100 | n/a | 0.250 | 0.100 | n/a | 20.0 % higher | 0.0 % better |' in \
        learning_curve.format_markdown(rows, [])


def test_second_half_means_are_per_seed_then_over_all_seeds():
    rows = [depth_row('full', seed, step, moving, 0.100) for step in (0, 200, 300)
            for seed, moving in ((0, 0.30), (1, 0.20))]
    rows += [depth_row('rigid', seed, step, 0.40 if seed == 0 else 0.20, 0.100) for step in (0, 200, 300)
             for seed in (0, 1)]
    table = learning_curve.format_markdown(rows, [])
    assert '| mean of steps >= 150, seed 0 | 0.300 | 0.100 | n/a | 0.400 | 0.100 | n/a | 25.0 % lower | 0.0 % ' \
        'better |' in table
    assert '| mean of steps >= 150, seed 1 | 0.200 | 0.100 | n/a | 0.200 | 0.100 | n/a | 0.0 % lower | 0.0 % ' \
        'better |' in table
    # over both seeds: full 0.25 against rigid 0.30
    assert '| mean of steps >= 150, all seeds | 0.250 | 0.100 | n/a | 0.300 | 0.100 | n/a | 16.7 % lower |' in table
    one_seed = learning_curve.format_markdown([row for row in rows if row['seed'] == 0], [])
    assert '| mean of steps >= 150 | 0.300 |' in one_seed and ', seed 0 |' not in one_seed


def test_every_seed_weighs_the_same_in_the_mean_over_seeds():
    """Seed 0 has two checkpoints in the second half, seed 1 one: the mean over seeds is the mean of the seeds'
    means (full 0.2, rigid 0.3), not of the three checkpoints (0.233, 0.333)."""
    rows = [depth_row('full', 0, step, 0.30, 0.100) for step in (200, 300)] + [depth_row('full', 1, 300, 0.10, 0.100)]
    rows += [depth_row('rigid', 0, step, 0.40, 0.100) for step in (200, 300)] + [depth_row('rigid', 1, 300, 0.20, 0.1)]
    assert learning_curve.paired_gain(rows, {200, 300})[0] == pytest.approx(1 - 0.2 / 0.3)
    assert '| mean of steps >= 150, all seeds | 0.200 | 0.100 | n/a | 0.300 | 0.100 | n/a | 33.3 % lower |' in \
        learning_curve.format_markdown(rows, [])
    rows = [with_split(row, row['metrics']['depth']['moving']['abs_rel'], 0.1) for row in rows]
    lines = learning_curve.background_split_lines(rows, [('late', {200, 300})])
    assert lines[5].startswith('| late | full | 0, 1 | 0.200 / 0.100 |')
    assert lines[7].startswith('| late | full vs rigid | 0, 1 | 33.3 % better |')


def test_windows_average_the_checkpoints_of_a_step_range():
    rows = [depth_row('full', 0, step, moving, 0.100) for step, moving in ((0, 0.5), (100, 0.4), (200, 0.3))]
    rows += [depth_row('rigid', 0, step, 0.5, 0.100) for step in (0, 100, 200)]
    table = learning_curve.format_markdown(rows, [], windows=[(50, 200), (0, 100)])
    # 50-200: full (0.4 + 0.3) / 2 against rigid 0.5; 0-100: full 0.45
    assert '| mean of steps 50-200 | 0.350 | 0.100 | n/a | 0.500 | 0.100 | n/a | 30.0 % lower | 0.0 % better |' \
        in table
    assert '| mean of steps 0-100 | 0.450 | 0.100 | n/a | 0.500 | 0.100 | n/a | 10.0 % lower |' in table
    assert learning_curve.step_window('1500-2340') == (1500, 2340)
    parser = learning_curve.build_parser()
    for bad in ('2400-1500', '1500', 'a-b'):
        with pytest.raises(SystemExit):
            parser.parse_args(['--runs', 'r', '--data', 'd', '--output-dir', 'o', '--windows', bad])


def test_command_line_evaluates_each_checkpoint_once_and_continues_an_interrupted_run(world, tmp_path, monkeypatch):
    root, _ = world
    runs, out = tmp_path / 'runs', tmp_path / 'curve'
    full_run, rigid_run = fake_run(world, runs, 'full', 3), fake_run(world, runs, 'rigid', 0)
    for name in NETWORK_NAMES:                                      # the rigid run: the full run's networks
        shutil.copy(full_run / f'{name}_checkpoint.pth.tar', rigid_run / f'{name}_checkpoint.pth.tar')
    keep_copies(full_run, [1, 2], steps_per_epoch=10)
    keep_copies(rigid_run, [1, 2], steps_per_epoch=10)
    argv = ['--runs', str(runs), '--data', str(root), '--seeds', '0', '--every', '10', '--device', 'cpu',
            '--output-dir', str(out)]
    assert learning_curve.main(argv + ['--configs', 'full']) == 0
    assert learning_curve.main(argv) == 0                           # full is not evaluated again
    saved = json.loads((out / 'learning_curve.json').read_text())
    assert [(r['config'], r['checkpoint'], r['step']) for r in saved['rows']] == [
        ('full', 'init', 0), ('full', 'ep001', 10), ('full', 'last', 20),
        ('rigid', 'init', 0), ('rigid', 'ep001', 10), ('rigid', 'last', 20)]
    assert len(saved['commands']) == 2
    full_last, rigid_last = saved['rows'][2]['metrics'], saved['rows'][5]['metrics']
    # the same random networks: equal depth; only the rigid model gives every car zero motion
    assert full_last['depth'] == rigid_last['depth']
    assert full_last['objects']['moving']['matched'] > 0
    assert rigid_last['objects']['moving']['matched'] == 0
    assert set(saved['rows'][2]['kinds']['depth']) >= {'parked', 'background'}
    assert '| 20 |' in (out / 'learning_curve.md').read_text() and (out / 'learning_curve.png').stat().st_size > 0

    def fail(*args):
        raise AssertionError('evaluated again')
    monkeypatch.setattr(learning_curve, 'evaluate_checkpoint', fail)
    assert learning_curve.main(argv + ['--windows', '5-20']) == 0      # nothing to evaluate: written again
    assert '| mean of steps 5-20 |' in (out / 'learning_curve.md').read_text()
    shutil.rmtree(rigid_run)                                         # pruned: its rows stay, the md is rewritten
    assert learning_curve.main(argv + ['--windows', '0-10']) == 0
    kept = json.loads((out / 'learning_curve.json').read_text())['rows']
    assert sum(row['config'] == 'rigid' for row in kept) == 3
    assert '| mean of steps 0-10 |' in (out / 'learning_curve.md').read_text()
    # another world into the same folder is refused; a run trained further gets its new final checkpoint only
    other = tmp_path / 'other_world'
    shutil.copytree(root, other)
    assert learning_curve.main([*argv[:2], '--data', str(other), *argv[4:]]) == 2
    keep_copies(full_run, [1, 2, 3], steps_per_epoch=10)
    monkeypatch.setattr(learning_curve, 'evaluate_checkpoint', lambda *args: (full_last, saved['rows'][2]['kinds']))
    assert learning_curve.main(argv) == 0
    rows = json.loads((out / 'learning_curve.json').read_text())['rows']
    assert [(r['checkpoint'], r['step']) for r in rows if r['config'] == 'full'] == [
        ('init', 0), ('ep001', 10), ('ep002', 20), ('last', 30)]


def test_command_line_errors_are_one_line(world, tmp_path, capsys):
    root, _ = world
    run_dir = fake_run(world, tmp_path / 'runs')
    keep_copies(run_dir, [1], steps_per_epoch=10)
    argv = ['--runs', str(tmp_path / 'runs'), '--data', str(root), '--configs', 'full', '--output-dir',
            str(tmp_path / 'out')]
    args_json = (run_dir / 'args.json').read_text()
    (run_dir / 'args.json').write_text('{"truncated')
    assert learning_curve.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {run_dir / 'args.json'}: not a readable train.py args.json")
    (run_dir / 'args.json').write_text(json.dumps({key: value for key, value in json.loads(args_json).items()
                                                   if key != 'mni'}))
    assert learning_curve.main(argv) == 2
    assert capsys.readouterr().err == f"error: {run_dir / 'args.json'}: no mni (not the args.json of a train.py run)\n"
    if not torch.cuda.is_available():
        assert learning_curve.main(argv + ['--device', 'cuda']) == 2
        assert 'CUDA is not available' in capsys.readouterr().err
    copy = run_dir / 'dispnet_checkpoint_ep001.pth.tar'
    torch.save({'state_dict': torch.load(copy, weights_only=True)['state_dict']}, copy)    # no n_iter
    with pytest.raises(learning_curve.EvalError, match='dispnet_checkpoint_ep001.pth.tar: not a train.py checkpoint'):
        learning_curve.checkpoint_steps(run_dir, 10)
    copy.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='dispnet_checkpoint_ep001.pth.tar: not a readable PyTorch checkpoint'):
        learning_curve.checkpoint_steps(run_dir, 10)


def test_command_line_names_a_missing_run(tmp_path, capsys):
    assert learning_curve.main(['--runs', str(tmp_path), '--data', str(tmp_path), '--output-dir',
                                str(tmp_path / 'out')]) == 2
    assert 'run_dir.txt: not found' in capsys.readouterr().err


def test_outputs_name_the_data_by_its_absolute_path(tmp_path, monkeypatch):
    """A relative --data is stored resolved: the same folder given from elsewhere is accepted, another world of the
    same relative name is refused."""
    (tmp_path / 'a' / 'vis').mkdir(parents=True)
    (tmp_path / 'b' / 'vis').mkdir(parents=True)
    out = tmp_path / 'curve'
    monkeypatch.chdir(tmp_path / 'a')
    learning_curve.write_outputs(out, Path('vis'), [depth_row('full', 0, 100, 0.3, 0.1)], ['command'])
    assert json.loads((out / 'learning_curve.json').read_text())['data'] == str(tmp_path / 'a' / 'vis')
    monkeypatch.chdir(tmp_path / 'b')
    assert learning_curve.read_rows(out, Path('../a/vis'))[1] == ['command']
    with pytest.raises(learning_curve.EvalError, match='evaluated on .*a/vis, not on --data vis'):
        learning_curve.read_rows(out, Path('vis'))
