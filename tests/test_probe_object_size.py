"""experiments/probe_object_size.py: units of depth, the object-size term's unit, the terms' pull."""
import json

import numpy as np
import pytest
import torch

import train
from checkpoint_io import save_checkpoint
from experiments import probe_object_size as probe
from experiments.eval_synthetic import EvalError, read_scene_truth, region_masks
from models import DispResNet, EgoPoseNet, ObjPoseNet


def scene_frame(world, frame=1):
    """``(gt [H,W] depth (0: sky), segmentation [1+N,H,W], regions, truth)`` of a frame of the world."""
    root, scene = world
    gt = scene.depths[frame].astype(np.float64)
    truth = read_scene_truth(root, scene.name)
    segmentation = scene.masks[frame]
    return gt, segmentation, region_masks(segmentation, truth['objects'], frame), truth


def test_units_of_a_prediction_in_a_known_unit_and_of_cars_drawn_too_near(world):
    gt, _, regions, _ = scene_frame(world)
    pred = np.where(gt > 0, gt / 40.0, 1.0)
    assert probe.unit_ratio(gt, pred, regions['background']) == pytest.approx(40.0)
    assert probe.unit_ratio(gt, pred, regions['moving'], min_pixels=1) == pytest.approx(40.0)
    pred[regions['moving']] /= 2
    assert probe.unit_ratio(gt, pred, regions['moving'], min_pixels=1) / \
        probe.unit_ratio(gt, pred, regions['background']) == pytest.approx(2.0)
    assert probe.unit_ratio(gt, pred, regions['moving'], min_pixels=10 ** 6) is None
    assert probe.unit_ratio(gt, pred, np.zeros_like(regions['moving'])) is None


def test_log_contrast_of_a_flattened_and_of_a_scaled_prediction(world):
    gt, _, regions, _ = scene_frame(world)
    background = regions['background']
    assert probe.log_contrast(gt, np.where(gt > 0, gt / 40.0, 1.0), background) == pytest.approx(1.0)
    median = np.median(gt[background & (gt > 0)])
    flattened = np.where(gt > 0, median * (gt / median) ** 0.5, 1.0)
    assert probe.log_contrast(gt, flattened, background) == pytest.approx(0.5)
    assert probe.log_contrast(gt, flattened, background, min_pixels=10 ** 6) is None


def test_street_bands_of_a_right_and_of_a_flattened_street():
    gt = np.repeat(np.linspace(40.0, 5.0, 30)[:, None], 20, axis=1)     # far at the top, near at the bottom
    street = np.zeros_like(gt, bool)
    street[15:] = True
    assert probe.street_band_ratios(gt, gt * 3, street, min_pixels=3) == (pytest.approx(1.0), pytest.approx(1.0))
    flattened = np.where(street, np.median(gt[street]), gt)
    far, near = probe.street_band_ratios(gt, flattened, street, min_pixels=3)
    assert far < 1 < near
    assert probe.street_band_ratios(gt, gt, np.zeros_like(street), min_pixels=3) == (None, None)


def test_size_unit_of_a_hand_made_car_is_its_depth_over_the_depth_the_term_asks_for():
    segmentation = np.zeros((2, 30, 40), np.uint8)
    segmentation[1, 5:15, 10:20] = 1            # 10 rows, 100 pixels
    gt = np.full((30, 40), 20.0)
    objects = [{'kind': 'crossing', 'mask_index': np.array([1])}]
    # the term asks for fy * hp / rows = 100 * 0.02 / 10 = 0.2 units: 20 m / 0.2 = 100 m per unit
    assert probe.car_size_units(gt, segmentation, objects, 0, fy=100.0, height_prior=0.02) == [pytest.approx(100.0)]
    objects[0]['mask_index'] = np.array([-1])
    assert probe.car_size_units(gt, segmentation, objects, 0, fy=100.0, height_prior=0.02) == []


def test_size_unit_of_rendered_cars_is_their_height_over_the_prior(world):
    root, scene = world
    gt, segmentation, _, truth = scene_frame(world)
    heights = [obj.size[1] for obj in scene.objects if obj.mask_index[1] >= 1]
    units = probe.car_size_units(gt, segmentation, truth['objects'], 1, float(scene.K[1, 1]), 0.02, min_pixels=1)
    assert len(units) >= 1
    # a car of height H at depth Z covers about fy * H / Z rows, so the term's unit is about H / hp
    assert np.median(units) == pytest.approx(np.median(heights) / 0.02, rel=0.3)


def test_scale_derivative_of_a_term_and_of_one_that_does_not_depend_on_the_scale():
    log_scale = torch.zeros((), requires_grad=True)
    term = (2 * torch.exp(log_scale)) ** 2
    assert probe.scale_derivative(term, log_scale) == pytest.approx(8.0)
    assert probe.scale_derivative(torch.ones((), requires_grad=True) * 3, log_scale) == 0.0
    assert probe.scale_derivative(torch.tensor(1.0), log_scale) == 0.0


def test_pixel_agreement_weights_the_object_size_pull_by_its_size():
    depths = torch.ones(1, 1, 2, 2, requires_grad=True)
    size_weights = torch.tensor([[3.0, 1.0], [0.0, 0.0]])[None, None]
    rest_weights = torch.tensor([[2.0, -5.0], [-1.0, 1.0]])[None, None]
    size_term, rest = (depths * size_weights).sum(), (depths * rest_weights).sum()
    assert probe.pixel_agreement(size_term, rest, depths) == pytest.approx(3 / 4)
    assert probe.pixel_agreement(depths.sum() * 0, rest, depths) is None


def test_checkpoint_labels_are_in_training_order(tmp_path):
    for name in ('dispnet_checkpoint_ep006.pth.tar', 'dispnet_checkpoint_ep003.pth.tar', 'dispnet_checkpoint.pth.tar'):
        (tmp_path / name).write_bytes(b'')
    assert probe.checkpoint_labels(tmp_path) == ['init', 'ep003', 'ep006', 'last']
    assert probe.checkpoint_paths(tmp_path, 'ep003')['obj'] == tmp_path / 'obj_pose_checkpoint_ep003.pth.tar'


def test_a_runs_folder_without_the_run_is_named(tmp_path, capsys):
    assert probe.main(['--runs', str(tmp_path), '--configs', 'full', '--seeds', '0',
                       '--output-dir', str(tmp_path / 'out')]) == 2
    assert 'run_dir.txt' in capsys.readouterr().err


def fake_run(world, runs, config='full', mni=3):
    """A run folder of random networks and train.py's args for ``world`` under ``runs/CONFIG/seed0``."""
    root, _ = world
    run_dir = runs / config / 'seed0' / 'run'
    run_dir.mkdir(parents=True)
    args = vars(train.build_parser().parse_args([str(root), '--name', 'probe', '-b', '1', '-mni', str(mni),
                                                 '-o', '0.02',
                                                 '--with-ssim', '--with-mask', '--with-auto-mask',
                                                 '--depth-scale', '0.1', '--antisymmetric-ego-pose']))
    (run_dir / 'args.json').write_text(json.dumps({k: (str(v) if k == 'data' else v) for k, v in args.items()}))
    for name, net in (('dispnet', DispResNet(18)), ('ego_pose', EgoPoseNet(18)), ('obj_pose', ObjPoseNet(18))):
        save_checkpoint(run_dir / f'{name}_checkpoint.pth.tar', net.state_dict(), 0)
    (runs / config / 'seed0' / 'run_dir.txt').write_text(str(run_dir))
    return run_dir


def test_command_line_writes_a_row_per_checkpoint(world, tmp_path):
    fake_run(world, tmp_path / 'runs')
    out = tmp_path / 'out'
    assert probe.main(['--runs', str(tmp_path / 'runs'), '--configs', 'full', '--seeds', '0', '--batches', '1',
                       '--output-dir', str(out)]) == 0
    rows = json.loads((out / 'results.json').read_text())['rows']
    assert [row['checkpoint'] for row in rows] == ['init', 'last']
    for row in rows:
        assert row['height_prior'] == pytest.approx(0.02)
        assert row['bg_unit'] > 0 and row['pose_unit'] > 0 and row['size_unit'] > 0 and row['bg_contrast'] > 0
        assert row['road_abs_rel'] > 0 and row['upper_abs_rel'] > 0 and row['road_near'] > 0
        assert row['batches'] == 1 and row['d_obj_size'] != 0 and -1 <= row['cos_size_rest'] <= 1
    assert '| full | 0 | last |' in (out / 'results.md').read_text()


def test_an_args_json_without_the_data_folder_is_named_unless_data_is_given(world, tmp_path, capsys):
    run_dir = fake_run(world, tmp_path / 'runs')
    args = json.loads((run_dir / 'args.json').read_text())
    (run_dir / 'args.json').write_text(json.dumps({k: v for k, v in args.items() if k != 'data'}))
    argv = ['--runs', str(tmp_path / 'runs'), '--configs', 'full', '--seeds', '0', '--batches', '1',
            '--checkpoints', 'init', '--output-dir', str(tmp_path / 'out')]
    assert probe.main(argv) == 2
    assert capsys.readouterr().err == f"error: {run_dir / 'args.json'}: no data (not the args.json of a train.py run)\n"
    assert probe.main(argv + ['--data', args['data']]) == 0


def test_a_second_run_keeps_the_rows_and_measures_only_the_missing_ones(world, tmp_path, capsys):
    fake_run(world, tmp_path / 'runs')
    out = tmp_path / 'out'
    common = ['--runs', str(tmp_path / 'runs'), '--configs', 'full', '--seeds', '0', '--batches', '1',
              '--output-dir', str(out)]
    assert probe.main(common + ['--checkpoints', 'last']) == 0
    first = json.loads((out / 'results.json').read_text())
    capsys.readouterr()
    assert probe.main(common) == 0
    second = json.loads((out / 'results.json').read_text())
    assert [row['checkpoint'] for row in second['rows']] == ['last', 'init']
    assert second['rows'][0] == first['rows'][0] and len(second['commands']) == 2
    assert capsys.readouterr().out.count('| full | 0 | last |') == 1    # the final table only: not measured again
    saved = json.loads((out / 'results.json').read_text())
    del saved['rows'][0]['road_abs_rel']
    saved['rows'][0]['d_photo'] = 123.0      # a pull value that a new measurement would not give
    (out / 'results.json').write_text(json.dumps(saved))
    assert probe.main(common) == 0
    upgraded = json.loads((out / 'results.json').read_text())['rows'][0]
    assert upgraded['road_abs_rel'] == first['rows'][0]['road_abs_rel'] and upgraded['d_photo'] == 123.0
    (out / 'results.json').write_text('{}')
    assert probe.main(common) == 2
    assert 'results.json' in capsys.readouterr().err


def test_pose_vs_bg_is_the_ratio_of_the_units():
    assert probe.pose_vs_bg({'pose_unit': 100.0, 'bg_unit': 50.0}) == 2.0
    assert probe.pose_vs_bg({'pose_unit': None, 'bg_unit': 50.0}) is None
