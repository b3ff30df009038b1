"""Reliability of train.py and its helpers: one-line errors (also from loader workers), validated flags,
unwritable outputs, crash-consistent checkpoint sets, exact resume, and stopping on SIGTERM / SIGUSR1."""
import argparse
import csv
import errno
import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest
import torch

import checkpoint_set
import demo
import fileio
import projection
import test_disp
import train
import train_loop
from checkpoint_io import atomic_torch_save, load_checkpoint, load_file
from cli_types import float_in, int_at_least, odd_int_at_least
from datasets.io import DatasetError, read_cam, read_flo, write_cam, write_flo
from datasets.samplers import EpochSampler
from datasets.sequence_folders import SequenceFolder
from datasets.toy_data import write_toy_kitti_vis
from kitti_eval.kitti_raw import KittiFormatError, read_velodyne_points
from preemption import StopRequest

TINY = ['--with-pretrain', '0', '-b', '1', '-j', '0', '-mni', '1', '--epoch-size', '2', '--print-freq', '0',
        '--image-freq', '0', '--save-freq', '0']
NETWORK_FILES = ('dispnet_checkpoint.pth.tar', 'ego_pose_checkpoint.pth.tar', 'obj_pose_checkpoint.pth.tar')


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    """fsync only matters for power loss; skipping it here keeps the many checkpoint saves of this file fast."""
    monkeypatch.setattr(os, 'fsync', lambda fd: None)


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    """One 64x64 scene of 4 frames: 2 training samples, 1 validation sample."""
    root = tmp_path_factory.mktemp('tiny')
    write_toy_kitti_vis(str(root), num_scenes=1, num_frames=4, height=64, width=64, num_objects=3)
    return str(root)


def copy_of(root, tmp_path):
    copy = tmp_path / 'data'
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns('.cache'))
    return copy


def run_train(argv, capsys):
    """``(exit code, stderr)`` of ``train.main(argv)``; the messages of SystemExit go to stderr as in a shell."""
    try:
        train.main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    return code, capsys.readouterr().err


def error_line(stderr):
    """The ``error: ...`` line of ``stderr`` (there must be exactly one) and no traceback."""
    assert 'Traceback' not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, stderr
    return lines[0]


def read_tsv(path):
    with open(path) as f:
        return list(csv.reader(f, delimiter='\t'))


def weights(run_dir):
    return {name: load_checkpoint(os.path.join(run_dir, name))['state_dict'] for name in NETWORK_FILES}


def assert_same_weights(a, b):
    for name in NETWORK_FILES:
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), (name, key)


# ---------------------------------------------------------------- bad input: one line naming the file


def test_worker_error_is_the_one_line_of_the_main_process(tiny_root, tmp_path, monkeypatch, capsys):
    data = copy_of(tiny_root, tmp_path)
    frame = data / 'image' / 'scene_00' / '0000000002.jpg'
    frame.write_bytes(frame.read_bytes()[:200])
    monkeypatch.chdir(tmp_path)
    code, stderr = run_train([str(data), '--name', 'bad', '--epochs', '1'] + TINY + ['-j', '2'], capsys)
    assert code == 1
    assert error_line(stderr) == f"error: {frame}: cannot decode the image (not a valid jpg/png file)"
    assert list(tmp_path.glob('checkpoints/bad/*')) == [], 'a run that fails in its first epoch leaves no run folder'


def test_dataset_error_rebuilt_from_a_worker_report():
    try:
        raise DatasetError('/data/a.flo', 'truncated .flo')
    except DatasetError:
        import traceback
        report = f"Caught DatasetError in DataLoader worker process 0.\nOriginal {traceback.format_exc()}"
    rebuilt = DatasetError(report)
    assert str(rebuilt) == '/data/a.flo: truncated .flo' and rebuilt.path == '/data/a.flo'


def test_non_finite_flow_is_refused_naming_the_file(tmp_path):
    flow = np.zeros((4, 6, 2), np.float32)
    flow[1, 2, 0], flow[3, 3, 1] = np.nan, np.inf
    write_flo(tmp_path / 'f.flo', flow)
    with pytest.raises(DatasetError, match=r'f\.flo: 2 non-finite flow values \(NaN or inf\)'):
        read_flo(tmp_path / 'f.flo')


def test_singular_cam_txt_is_refused_naming_the_file(tmp_path):
    write_cam(tmp_path / 'cam.txt', np.zeros((3, 3)))
    with pytest.raises(DatasetError, match=r'cam\.txt: cam\.txt intrinsics matrix is singular'):
        read_cam(tmp_path / 'cam.txt')
    write_cam(tmp_path / 'cam.txt', [[100, 0, 32], [0, 100, 16], [0, 0, 1]])
    assert read_cam(tmp_path / 'cam.txt')[0, 0] == 100


def test_frames_that_are_not_multiples_of_32_stop_train_with_one_line(tmp_path, monkeypatch, capsys):
    write_toy_kitti_vis(str(tmp_path / 'odd'), num_scenes=1, num_frames=4, height=48, width=64, num_objects=3)
    monkeypatch.chdir(tmp_path)
    code, stderr = run_train([str(tmp_path / 'odd'), '--name', 'odd', '--epochs', '1'] + TINY, capsys)
    assert code == 1
    line = error_line(stderr)
    assert line.startswith(f"error: {tmp_path / 'odd' / 'image' / 'scene_00' / '0000000000.jpg'}: frame is 48x64")
    assert 'multiples of 32' in line and not (tmp_path / 'checkpoints').exists()


def test_empty_velodyne_scan_is_named(tmp_path):
    (tmp_path / '0000000000.bin').write_bytes(b'')
    with pytest.raises(KittiFormatError, match=r'0000000000\.bin: empty velodyne scan \(0 bytes\)'):
        read_velodyne_points(tmp_path / '0000000000.bin')


def test_demo_refuses_one_frame():
    with pytest.raises(SystemExit, match=r'--max-frames 1: the demo needs at least 2 frames'):
        demo.main(['--data', 'anywhere', '--max-frames', '1'])


# ---------------------------------------------------------------- flags checked when parsed


@pytest.mark.parametrize('flag, value, shown', [
    ('-b', '0', '-b/--batch-size'), ('--sequence-length', '4', '--sequence-length'),
    ('--sequence-length', '1', '--sequence-length'), ('-mni', '-1', '-mni/--mni'), ('--epochs', '-1', '--epochs'),
    ('--epochs', '0', '--epochs'), ('--epoch-size', '-2', '--epoch-size'), ('-j', '-1', '-j/--workers'),
    ('--disp-lr', '-1e-4', '--disp-lr/--disp-learning-rate'), ('--momentum', '1', '--momentum'),
    ('--beta', '-0.1', '--beta'), ('-p', 'nan', '-p/--photo-loss-weight'), ('-s', 'inf', '-s/--smooth-loss-weight'),
    ('--wd', '-1', '--weight-decay/--wd'), ('--seed', '-3', '--seed'), ('--with-pretrain', '2', '--with-pretrain'),
    ('--print-freq', '-1', '--print-freq'), ('--save-freq', 'x', '--save-freq'), ('--debug-viz', '-1', '--debug-viz'),
    ('--begin-idx', '-1', '--begin-idx'), ('--image-freq', '-5', '--image-freq'),
])
def test_invalid_numeric_flag_is_refused_when_parsed(flag, value, shown, capsys):
    with pytest.raises(SystemExit) as stop:
        train.build_parser().parse_args(['data', '--name', 'x', flag, value])
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    assert 'Traceback' not in stderr
    assert f"error: argument {shown}: " in stderr.strip().splitlines()[-1]


def test_numeric_types_accept_their_range():
    assert int_at_least(1)('3') == 3 and odd_int_at_least(3)('5') == 5
    assert float_in(0)('0') == 0.0 and float_in(0, 1, include_high=False)('0.999') == 0.999
    for parse, text in ((int_at_least(0), '1.5'), (odd_int_at_least(3), '3.0'), (float_in(0, 1, False), '1')):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


# ---------------------------------------------------------------- outputs checked before any work


def read_only_probe(monkeypatch):
    real_open = os.open

    def fake_open(path, *args, **kwargs):
        if '.write-probe.' in str(path):
            raise OSError(errno.EROFS, 'Read-only file system')
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(fileio.os, 'open', fake_open)


@pytest.mark.parametrize('where', ['existing file', 'below a file', '/proc', '/sys', 'read-only'])
def test_unwritable_checkpoint_root_is_refused_before_any_work(where, tiny_root, tmp_path, monkeypatch, capsys):
    user_file = tmp_path / 'notes.txt'
    user_file.write_text('mine')
    root = {'existing file': str(user_file), 'below a file': str(user_file / 'runs'), '/proc': '/proc/insta_dm',
            '/sys': '/sys/insta_dm', 'read-only': str(tmp_path / 'ro')}[where]
    if where == 'read-only':
        read_only_probe(monkeypatch)
    monkeypatch.setattr(train_loop, 'make_loaders', lambda *a: pytest.fail('work started'))
    monkeypatch.chdir(tmp_path)
    code, stderr = run_train([tiny_root, '--name', 'x', '--checkpoint-root', root] + TINY, capsys)
    assert code == 1
    line = error_line(stderr)
    assert line.startswith(f"error: --checkpoint-root {root}: ")
    assert user_file.read_text() == 'mine' and sorted(os.listdir(tmp_path)) == ['notes.txt']


@pytest.mark.parametrize('where', ['existing file', 'read-only'])
def test_unwritable_test_disp_output_is_refused_before_inference(where, tmp_path, monkeypatch, capsys):
    user_file = tmp_path / 'out'
    user_file.write_text('mine')
    output = str(user_file) if where == 'existing file' else str(tmp_path / 'ro' / 'out')
    if where == 'read-only':
        read_only_probe(monkeypatch)
    monkeypatch.setattr(test_disp, 'load_depth_network', lambda *a: pytest.fail('work started'))
    with pytest.raises(SystemExit) as stop:
        test_disp.main(['--pretrained-dispnet', 'x.pth', '--dataset-dir', str(tmp_path), '--output-dir', output])
    assert str(stop.value.code).startswith(f"error: --output-dir {output}: ")
    assert '\n' not in str(stop.value.code) and user_file.read_text() == 'mine'


def fill_disk(monkeypatch):
    """Every atomic write goes to /dev/full (ENOSPC), as on a full disk."""
    def full(fd, mode):
        os.close(fd)
        return open('/dev/full', mode)
    monkeypatch.setattr(fileio.os, 'fdopen', full)


def test_full_disk_is_no_space_left_naming_the_file(tmp_path, monkeypatch):
    fill_disk(monkeypatch)
    with pytest.raises(fileio.OutputError) as error:
        atomic_torch_save({'w': torch.zeros(1000)}, tmp_path / 'ck.pth.tar')
    assert str(error.value) == f"{tmp_path / 'ck.pth.tar'}: no space left on device"
    assert os.listdir(tmp_path) == []


def test_full_disk_during_training_is_one_line_and_leaves_no_run_folder(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_loop, 'record_arguments', lambda *a: None)
    fill_disk(monkeypatch)
    code, stderr = run_train([tiny_root, '--name', 'full', '--epochs', '1'] + TINY, capsys)
    assert code == 1
    line = error_line(stderr)
    assert line.endswith('.pth.tar: no space left on device') and '.pending' not in line
    assert list(tmp_path.glob('checkpoints/full/*')) == []


# ---------------------------------------------------------------- exact resume, crash-consistent sets, SIGTERM


@pytest.fixture(scope='module')
def uninterrupted(tiny_root, tmp_path_factory):
    """A 2-epoch run (2 iterations each): its folder and the number of samples it loaded.

    Its 0.6 GB of checkpoints are removed when the module's tests are done (the suite's disk peak)."""
    loads = []
    original = SequenceFolder.__getitem__
    SequenceFolder.__getitem__ = lambda self, index: loads.append(index) or original(self, index)
    cwd, folder = os.getcwd(), tmp_path_factory.mktemp('uninterrupted')
    os.chdir(folder)
    try:
        run_dir = train.main([tiny_root, '--name', 'full', '--epochs', '2'] + TINY)
    finally:
        os.chdir(cwd)
        SequenceFolder.__getitem__ = original
    yield os.path.join(folder, run_dir), loads
    shutil.rmtree(folder, ignore_errors=True)


def full_rows(run_dir):
    return read_tsv(os.path.join(run_dir, 'progress_log_full.csv'))


def test_the_loop_loads_no_batch_beyond_the_epoch_size(uninterrupted):
    _, loads = uninterrupted
    assert len(loads) == 2 * 2 + 2 * 1, 'two epochs of two training samples, and one validation sample per epoch'


def test_resume_at_an_epoch_boundary_is_exact(tiny_root, uninterrupted, tmp_path, monkeypatch):
    reference = uninterrupted[0]
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([tiny_root, '--name', 'half', '--epochs', '1'] + TINY)
    original_args = open(os.path.join(run_dir, 'args.json')).read()
    train.main([tiny_root, '--name', 'half', '--epochs', '2', '--resume', run_dir] + TINY)
    assert full_rows(run_dir) == full_rows(reference)
    assert read_tsv(os.path.join(run_dir, 'progress_log_summary.csv')) == \
        read_tsv(os.path.join(reference, 'progress_log_summary.csv'))
    assert_same_weights(weights(run_dir), weights(reference))
    assert open(os.path.join(run_dir, 'args.json')).read() == original_args
    resumes = json.load(open(os.path.join(run_dir, 'args_resume.json')))
    assert [(r['resumed_at_epoch'], r['args']['epochs']) for r in resumes] == [(1, 2)]


def signal_at_call(monkeypatch, step, signum):
    """Send ``signum`` to this process during the ``step``-th call (0-based) of ``run_step`` (training and validation; ``models.InstaDM`` calls it)."""
    calls = []
    original = projection.run_step

    def run_step(*args, **kwargs):
        if len(calls) == step:
            os.kill(os.getpid(), signum)
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(projection, 'run_step', run_step)


def test_sigterm_finishes_the_step_saves_and_resume_is_exact(tiny_root, uninterrupted, tmp_path, monkeypatch, capsys):
    signum, run_step = signal.SIGTERM, projection.run_step
    monkeypatch.chdir(tmp_path)
    signal_at_call(monkeypatch, 3, signum)  # calls 0, 1: epoch 1; 2: its validation; 3: epoch 2
    with pytest.raises(SystemExit) as stop:
        train.main([tiny_root, '--name', 'stopped', '--epochs', '2'] + TINY)
    assert stop.value.code == 128 + signum
    stderr = capsys.readouterr().err
    run_dir = next(tmp_path.glob('checkpoints/stopped/*'))
    assert 'Traceback' not in stderr
    assert f"stopped by {signal.Signals(signum).name} at epoch 1, iteration 3: checkpoint saved; continue with the " \
           f"same command plus --resume {os.path.relpath(run_dir, tmp_path)}" in stderr
    state = torch.load(run_dir / 'training_state.pth.tar', weights_only=True)
    assert (state['epoch'], state['n_iter'], state['step_in_epoch']) == (1, 3, 1)
    monkeypatch.setattr(projection, 'run_step', run_step)
    train.main([tiny_root, '--name', 'stopped', '--epochs', '2', '--resume', str(run_dir)] + TINY)
    assert full_rows(run_dir) == full_rows(uninterrupted[0])
    assert_same_weights(weights(run_dir), weights(uninterrupted[0]))


class Crash(BaseException):
    """Stands for the process dying (kill -9, power loss): nothing after it runs."""


def crash_at(monkeypatch, module, name, call):
    """Make ``module.name`` kill the "process" on its ``call``-th use (1-based)."""
    calls = []
    original = getattr(module, name)

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise Crash
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, crashing)


@pytest.mark.parametrize('crash', ['between the files', 'after the commit'])
def test_save_interrupted_midway_then_resume(crash, tiny_root, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([tiny_root, '--name', 'crash', '--epochs', '1'] + TINY)
    # between the files: the epoch-2 save dies after writing two of its files;
    # after the commit: the manifest is written, one file renamed, then the process dies
    name, call = ('atomic_torch_save', 3) if crash == 'between the files' else ('_commit_file', 2)
    original = getattr(checkpoint_set, name)
    crash_at(monkeypatch, checkpoint_set, name, call)
    with pytest.raises(Crash):
        train.main([tiny_root, '--name', 'crash', '--epochs', '2', '--resume', run_dir] + TINY)
    monkeypatch.setattr(checkpoint_set, name, original)
    manifest = checkpoint_set.recover(run_dir)
    assert manifest['epoch'] == (1 if crash == 'between the files' else 2)
    assert not [name for name in os.listdir(run_dir) if name.endswith(('.pending', '.tmp'))]
    for name in manifest['files']:
        checkpoint = torch.load(os.path.join(run_dir, name), weights_only=True)
        assert (checkpoint['epoch'], checkpoint['n_iter']) == (manifest['epoch'], manifest['n_iter'])
    if crash == 'between the files':
        train.main([tiny_root, '--name', 'crash', '--epochs', '2', '--resume', run_dir] + TINY)
    summary = read_tsv(os.path.join(run_dir, 'progress_log_summary.csv'))
    assert [row[0] for row in summary[1:]] == ['1', '2']
    assert full_rows(run_dir) == full_rows(uninterrupted[0])
    assert_same_weights(weights(run_dir), weights(uninterrupted[0]))


def test_resume_refuses_files_of_different_saves(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([tiny_root, '--name', 'mixed', '--epochs', '2'] + TINY[:-2] + ['--save-freq', '1'])
    shutil.copy(os.path.join(run_dir, 'ego_pose_checkpoint_ep001.pth.tar'),
                os.path.join(run_dir, 'ego_pose_checkpoint.pth.tar'))
    original_args = open(os.path.join(run_dir, 'args.json')).read()
    code, stderr = run_train([tiny_root, '--name', 'mixed', '--epochs', '3', '--resume', run_dir] + TINY, capsys)
    assert code == 1
    assert error_line(stderr) == (
        f"error: {os.path.join(run_dir, 'ego_pose_checkpoint.pth.tar')}: epoch 1, iteration 2, but the committed "
        f"checkpoint set ({os.path.join(run_dir, 'checkpoint_set.json')}) is epoch 2, iteration 4: the run folder "
        f"was changed by hand")
    assert open(os.path.join(run_dir, 'args.json')).read() == original_args
    assert not os.path.exists(os.path.join(run_dir, 'args_resume.json'))
    shutil.copy(os.path.join(run_dir, 'ego_pose_checkpoint_ep002.pth.tar'),
                os.path.join(run_dir, 'ego_pose_checkpoint.pth.tar'))
    code, stderr = run_train([tiny_root, '--name', 'mixed', '--epochs', '2', '--resume', run_dir] + TINY, capsys)
    assert code == 1 and 'has already trained 2 epochs; give a larger --epochs' in error_line(stderr)


def test_resume_of_a_missing_folder_is_one_line(tiny_root, tmp_path, capsys):
    code, stderr = run_train([tiny_root, '--name', 'x', '--resume', str(tmp_path / 'gone')] + TINY, capsys)
    assert code == 1 and error_line(stderr) == f"error: --resume {tmp_path / 'gone'}: no such run folder"


def test_recover_rolls_back_an_uncommitted_save_and_forward_a_committed_one(tmp_path):
    checkpoint_set.save_set(tmp_path, {'a.pth': {'epoch': 1, 'n_iter': 5}}, 1, 5)
    (tmp_path / '.a.pth.e2-i9-0000.pending').write_bytes(b'half')
    (tmp_path / '.b.pth.123.abcd.tmp').write_bytes(b'half')
    assert checkpoint_set.recover(tmp_path)['epoch'] == 1
    assert sorted(os.listdir(tmp_path)) == ['a.pth', 'checkpoint_set.json']
    manifest = checkpoint_set.read_manifest(tmp_path)
    atomic_torch_save({'epoch': 2, 'n_iter': 9}, tmp_path / '.a.pth.e2-i9-ffff.pending')
    (tmp_path / 'checkpoint_set.json').write_text(json.dumps(dict(manifest, epoch=2, n_iter=9, save_id='e2-i9-ffff')))
    checkpoint_set.recover(tmp_path)
    assert torch.load(tmp_path / 'a.pth', weights_only=True) == {'epoch': 2, 'n_iter': 9}


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    sampler = EpochSampler(10, seed=3, num_samples=4)
    first = list(sampler)
    assert len(first) == len(sampler) == 4 and list(EpochSampler(10, seed=3, num_samples=4)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    sampler.set_epoch(1, start=3)
    assert list(sampler) == second[3:] and len(sampler) == 1
    shares = [list(EpochSampler(5, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shares[0] + shares[1])[:5] == [0, 1, 2, 3, 4] and len(shares[0]) == len(shares[1]) == 3


def test_sigusr1_is_a_stop_request():
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested and stop.name == 'SIGUSR1' and stop.exit_code == 138


def test_second_ctrl_c_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.name == 'SIGINT' and stop.exit_code == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_fp16_loss_scale_survives_save_and_resume(tmp_path):
    import models
    from train_checkpoints import GRAD_SCALER_KEY, STATE_FILE, TrainingState, resume_run, save_run

    def networks():
        torch.manual_seed(0)
        return {'disp': models.DispResNet(18), 'ego': models.EgoPoseNet(18), 'obj': models.ObjPoseNet(18)}

    nets = networks()
    optimizer = torch.optim.Adam([p for net in nets.values() for p in net.parameters()])
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.0, growth_interval=3)
    scaler.scale(torch.ones(()))
    scaler.update(new_scale=256.0)
    state = TrainingState()
    state.epoch, state.n_iter = 1, 5
    save_run(str(tmp_path), nets, optimizer, state, scaler=scaler)
    assert GRAD_SCALER_KEY in torch.load(tmp_path / STATE_FILE, weights_only=True)
    resumed = torch.amp.GradScaler('cpu', init_scale=1024.0, growth_interval=3)
    resume_run(str(tmp_path), networks(), torch.optim.Adam([p for net in networks().values() for p in net.parameters()]),
               TrainingState(), torch.device('cpu'), scaler=resumed)
    assert resumed.get_scale() == 256.0 and resumed.get_growth_interval() == 3


def test_load_file_maps_zip_checkpoints_and_reads_legacy_ones_whole(tmp_path):
    weights = {'w': torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(weights, tmp_path / 'zip.pth')
    torch.save(weights, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    for name in ('zip.pth', 'legacy.pth'):
        assert torch.equal(load_file(tmp_path / name, mmap=True)['w'], weights['w'])
