"""experiments/: depth by region, ego- and object-motion errors, the command line on a tiny synthetic world."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint_io import save_checkpoint
from data import synthetic
from experiments import ablation_results, eval_synthetic, motion_metrics, run_record
from experiments.eval_synthetic import kind_masks, read_scene_truth, region_errors, region_masks
from kitti_eval.odometry_metrics import chain_poses
from models import DispResNet, EgoPoseNet, ObjPoseNet

HEIGHT, WIDTH = 64, 96   # the size of conftest's ``world``


def two_car_segmentation():
    """``[3,4,8]`` masks: channel 1 a parked car (2 px), channel 2 a moving car (3 px), and its objects."""
    seg = np.zeros((3, 4, 8), np.uint8)
    seg[1, 0, :2] = 1
    seg[2, 3, 5:] = 1
    objects = [{'kind': 'same', 'mask_index': np.array([2, -1])}, {'kind': 'parked', 'mask_index': np.array([1, 1])},
               {'kind': 'crossing', 'mask_index': np.array([-1, 2])}]
    return seg, objects


def test_region_masks_split_cars_by_kind_and_channel():
    seg, objects = two_car_segmentation()
    regions = region_masks(seg, objects, frame=0)
    assert regions['moving'].sum() == 3 and regions['moving'][3, 5:].all()
    assert regions['parked'].sum() == 2 and regions['parked'][0, :2].all()
    assert regions['background'].sum() == 32 - 5 and regions['all'].all()
    # frame 1: channel 2 belongs to the crossing car, so it is still moving; channel 1 still parked
    assert (region_masks(seg, objects, frame=1)['moving'] == regions['moving']).all()


def test_kind_masks_follow_each_car_kind_through_its_channels():
    seg, objects = two_car_segmentation()
    first, second = kind_masks(seg, objects, frame=0), kind_masks(seg, objects, frame=1)
    assert set(first) == {'same', 'parked', 'crossing'}
    assert first['same'].sum() == 3 and first['same'][3, 5:].all() and not first['crossing'].any()
    assert not second['same'].any() and (second['crossing'] == first['same']).all()
    assert (first['parked'] == region_masks(seg, objects, frame=0)['parked']).all()


def test_kinds_summary_gives_the_signed_depth_error_and_the_motion_error_of_each_kind():
    gt = np.full((10, 20), 10.0)
    same, opposite = np.zeros(gt.shape, bool), np.zeros(gt.shape, bool)
    same[:5, 10:], opposite[5:, 10:] = True, True      # 50 pixels each
    pred = gt.copy()
    pred[same] *= 1.25                                 # drawn too far, as a rigid model paints a car driving along
    pred[opposite] *= 0.8                              # drawn too near
    cars = same | opposite
    regions = {'all': np.ones(gt.shape, bool), 'background': ~cars, 'moving': cars, 'same': same,
               'opposite': opposite}
    records = [{'kind': 'same', 'gt': np.array([0.0, 0.0, 1.0]), 'pred': np.zeros(3), 'matched': False,
                'wrong_partner': False},
               {'kind': 'opposite', 'gt': np.array([0.0, 0.0, -2.0]), 'pred': np.array([0.0, 0.0, -1.5]),
                'matched': True, 'wrong_partner': False}]
    kinds = eval_synthetic.summarise_kinds([region_errors(gt, pred, regions)], records)
    assert list(kinds['depth']) == ['opposite', 'same', 'background']
    assert kinds['depth']['same']['log_ratio'] == pytest.approx(np.log(1.25))
    assert kinds['depth']['opposite']['log_ratio'] == pytest.approx(np.log(0.8))
    assert kinds['depth']['same']['abs_rel'] == pytest.approx(0.25) and kinds['depth']['same']['pixels'] == 50
    assert kinds['depth']['background']['log_ratio'] == pytest.approx(0, abs=1e-12)
    assert kinds['objects']['same'] == {'epe': 1.0, 'rel': 1.0, 'within_30deg': 0.0, 'cars': 1, 'matched': 0,
                                        'wrong_partner': 0}
    assert kinds['objects']['opposite']['epe'] == pytest.approx(0.5)
    assert kinds['objects']['opposite']['within_30deg'] == 1.0
    assert eval_synthetic.summarise_kinds([region_errors(gt, pred, regions)], None)['objects'] is None


def one_car_frame():
    """``(segmentation [2,20,30], gt [20,30], K)``: an 8x8 car at rows 6-13, columns 10-17; true depth 5 m in
    columns 0-9, 20 m in 10-19, 40 m beyond; the principal point's row 9.5."""
    seg = np.zeros((2, 20, 30), np.uint8)
    seg[1, 6:14, 10:18] = 1
    gt = np.full((20, 30), 40.0)
    gt[:, :10], gt[:, 10:20] = 5.0, 20.0
    K = np.array([[20.0, 0.0, 15.0], [0.0, 20.0, 9.5], [0.0, 0.0, 1.0]])
    return seg, gt, K


def test_road_and_upper_split_the_background_at_the_principal_point_row():
    background = np.ones((6, 4), bool)
    background[4, 1] = False                      # a car pixel
    K = np.array([[10.0, 0, 2], [0, 10.0, 2.5], [0, 0, 1]])
    split = eval_synthetic.road_and_upper(background, K)
    assert split['road'][3:].sum() == 3 * 4 - 1 and not split['road'][:3].any()
    assert split['upper'][:3].all() and not split['upper'][3:].any()


def test_background_split_parts_the_background_by_car_distance_image_half_and_true_depth():
    seg, gt, K = one_car_frame()
    split = eval_synthetic.background_split(seg, gt, K)
    assert list(split) == list(eval_synthetic.BACKGROUND_SPLIT)
    background = seg[1] == 0
    for names in (('near_cars', 'around_cars', 'away_from_cars'), ('road', 'upper'),
                  ('depth_0-10m', 'depth_10-30m', 'depth_30m+')):
        assert (sum(split[name].astype(int) for name in names) == background).all(), names
    assert split['near_cars'][5, 10] and split['near_cars'][4, 10] and split['near_cars'][13, 19]  # 1, 2 and 2 px
    assert split['around_cars'][4, 9] and split['around_cars'][3, 10]        # sqrt(5) and 3 px
    assert split['around_cars'][10, 25] and split['away_from_cars'][10, 26]  # 8 and 9 px
    assert split['near_cars'].sum() == 12 * 12 - 64 - 4 * 3                   # a corner's 3 pixels are beyond 2 px
    assert split['road'][10:].sum() == background[10:].sum() and not split['road'][:10].any()
    assert split['depth_10-30m'].sum() == background[:, 10:20].sum()
    no_car = eval_synthetic.background_split(np.zeros((1, 20, 30), np.uint8), gt, K)
    assert no_car['away_from_cars'].all() and not no_car['near_cars'].any()


def test_background_split_errors_equal_a_hand_computation():
    seg, gt, K = one_car_frame()
    split = eval_synthetic.background_split(seg, gt, K)
    pred = gt.copy()
    pred[split['near_cars']] *= 1.5                 # the car's border drawn too far; the median stays 20 m
    regions = {**region_masks(seg, [{'kind': 'same', 'mask_index': np.array([1])}], 0, with_kinds=True), **split}
    kinds = eval_synthetic.summarise_kinds([region_errors(gt, pred, regions, min_pixels=1)], None)
    assert list(kinds['depth']) == ['same', 'background']
    near = kinds['background_split']['near_cars']
    assert near['abs_rel'] == pytest.approx(0.5) and near['log_ratio'] == pytest.approx(np.log(1.5))
    assert near['pixels'] == 12 * 12 - 64 - 4 * 3
    assert kinds['background_split']['away_from_cars']['abs_rel'] == pytest.approx(0)
    # the border's pixels are 5 m or 20 m deep: columns 8-9 and 10-19
    depth_5 = (split['near_cars'] & (gt == 5)).sum() / split['depth_0-10m'].sum()
    assert kinds['background_split']['depth_0-10m']['abs_rel'] == pytest.approx(0.5 * depth_5)
    assert kinds['background_split']['depth_30m+']['abs_rel'] == pytest.approx(0)
    assert 'near_cars' in eval_synthetic.format_kinds(kinds)


def test_region_masks_of_a_rendered_scene_match_its_instance_maps(world):
    root, scene = world
    truth = read_scene_truth(root, scene.name)
    assert [o['kind'] for o in truth['objects']] == [o.kind for o in scene.objects]
    kinds = np.array(['none'] + [o.kind for o in scene.objects])
    for k in range(scene.frames):
        regions = region_masks(scene.masks[k], truth['objects'], k)
        car_kind = kinds[scene.instance_maps[k]]
        masked = (scene.masks[k][1:] > 0).any(0)
        assert regions['moving'].any() and regions['parked'].any()
        assert (regions['moving'] == (masked & (car_kind != 'parked') & (car_kind != 'none'))).all()
        assert (regions['parked'] == (masked & (car_kind == 'parked'))).all()
        assert not (regions['background'] & (regions['moving'] | regions['parked'])).any()


def test_perfect_prediction_scores_zero(world):
    root, scene = world
    truth = read_scene_truth(root, scene.name)
    gt = scene.depths[0]
    results = region_errors(gt, gt * 3.0, region_masks(scene.masks[0], truth['objects'], 0), min_pixels=1)
    assert set(results) == {'all', 'background', 'moving', 'parked'}
    for errors, pixels, log_ratio in results.values():
        assert pixels > 0 and log_ratio == pytest.approx(0, abs=1e-6)
        assert errors.abs_rel == pytest.approx(0, abs=1e-7) and errors.rmse == pytest.approx(0, abs=1e-5)
        assert errors.a1 == 1.0


def test_scaled_and_perturbed_prediction_equals_a_hand_computation():
    gt = np.full((10, 20), 10.0)
    gt[:, :5] = 20.0
    gt[0, 0] = 0.0                                   # no GT: ignored
    moving = np.zeros(gt.shape, bool)
    moving[:5, 10:] = True                           # 50 pixels, all at 10 m
    pred = 0.5 * gt
    pred[moving] *= 1.2                              # moving cars 20 % too far after the global scale 2
    results = region_errors(gt, pred, {'all': np.ones(gt.shape, bool), 'moving': moving, 'background': ~moving})
    errors, pixels, log_ratio = results['moving']
    assert pixels == 50 and log_ratio == pytest.approx(np.log(1.2))
    assert errors.abs_rel == pytest.approx(0.2)
    assert errors.sq_rel == pytest.approx(2.0 ** 2 / 10)
    assert errors.rmse == pytest.approx(2.0) and errors.rmse_log == pytest.approx(np.log(1.2))
    assert errors.a1 == 1.0
    assert results['background'].errors.abs_rel == pytest.approx(0) and results['background'].pixels == 199 - 50
    assert results['background'].log_ratio == pytest.approx(0, abs=1e-12)
    assert results['all'].errors.abs_rel == pytest.approx(0.2 * 50 / 199)
    assert results['all'].log_ratio == pytest.approx(np.log(1.2) * 50 / 199)


def test_regions_below_50_valid_pixels_are_left_out_and_averaged_as_null():
    gt = np.full((10, 10), 5.0)
    small = np.zeros(gt.shape, bool)
    small[0, :9] = True
    per_image = [region_errors(gt, gt, {'all': np.ones(gt.shape, bool), 'moving': small})]
    assert 'moving' not in per_image[0]
    summary = eval_synthetic.average_region_errors(per_image)
    assert summary['moving'] == {**{m: None for m in summary['moving'] if m not in ('images', 'pixels')},
                                 'images': 0, 'pixels': 0}
    assert summary['all']['images'] == 1 and summary['all']['pixels'] == 100


def gt_pose_vectors(scene):
    return np.stack([synthetic.pose_to_vec(synthetic.relative_pose(scene, t, t + 1)) for t in range(scene.frames - 1)])


def test_ego_errors_are_zero_for_the_true_poses_in_any_scale(world):
    _, scene = world
    vectors = gt_pose_vectors(scene)
    vectors[:, :3] *= 0.25                            # the network's depth scale is 4x smaller
    record = motion_metrics.ego_records(vectors, scene.cam_to_world, [4.0] * scene.frames)
    summary = motion_metrics.summarise_ego([record], snippet_length=3)
    assert summary['ate'] == pytest.approx(0, abs=1e-9) and summary['rel_trans'] == pytest.approx(0, abs=1e-9)
    assert summary['rot_deg'] == pytest.approx(0, abs=1e-4)
    assert (summary['snippets'], summary['pairs']) == (1, 2)


def test_ego_errors_of_a_known_perturbation():
    cam_to_world = np.tile(np.eye(4), (3, 1, 1))
    cam_to_world[1, 2, 3], cam_to_world[2, 2, 3] = 1.0, 2.0       # 1 m forward per frame
    pred = np.array([[0, 0, -1.0, 0, 0, 0.1], [0.5, 0, -1.0, 0, 0, 0.1]])
    record = motion_metrics.ego_records(pred, cam_to_world, [1.0, 1.0, 1.0])
    summary = motion_metrics.summarise_ego([record], snippet_length=3)
    assert summary['rot_deg'] == pytest.approx(np.degrees(0.1))
    assert summary['rel_trans'] == pytest.approx(0.25)             # (0 + 0.5) / 2
    gt_positions = np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]])
    pred_positions = chain_poses(record['pred'])[:, :3, 3]       # frame 0 is the snippet's first camera
    scale = (gt_positions * pred_positions).sum() / (pred_positions ** 2).sum()
    assert summary['ate'] == pytest.approx(np.linalg.norm(gt_positions - scale * pred_positions) / 3)
    assert summary['ate'] > 0.01


def test_object_motion_error_is_zero_for_the_true_motion(world):
    root, scene = world
    truth = read_scene_truth(root, scene.name)
    scales = [2.0] * scene.frames
    matches, motion = [], []
    for t in range(scene.frames - 1):
        visible = [j for j, o in enumerate(scene.objects) if o.mask_index[t] >= 1 and o.mask_index[t + 1] >= 1]
        matches.append(np.array([[scene.objects[j].mask_index[k] for k in (t, t + 1)] for j in visible]))
        motion.append(np.stack([synthetic.object_translation(scene, j + 1, t, t + 1) / 2.0 for j in visible]))
    summary = motion_metrics.summarise_objects(motion_metrics.object_records(matches, motion, truth, scales))
    assert summary['moving']['cars'] == 2 and summary['parked']['cars'] == 2
    assert summary['moving']['epe'] == pytest.approx(0, abs=1e-9) and summary['moving']['rel'] == pytest.approx(0)
    assert summary['moving']['within_30deg'] == 1.0 and summary['parked']['epe'] == pytest.approx(0, abs=1e-9)
    # unmatched cars get no motion: the error is the car's own motion
    unmatched = motion_metrics.summarise_objects(motion_metrics.object_records(
        [np.zeros((0, 2), int)] * 2, [np.zeros((0, 3))] * 2, truth, scales))
    assert unmatched['moving']['rel'] == pytest.approx(1.0) and unmatched['moving']['within_30deg'] == 0.0
    assert unmatched['moving']['matched'] == 0

    assert summary['moving']['wrong_partner'] == 0 and summary['parked']['wrong_partner'] == 0


def test_a_car_matched_to_another_car_is_counted_as_a_wrong_partner(world):
    root, scene = world
    truth = read_scene_truth(root, scene.name)
    visible = [j for j, o in enumerate(scene.objects) if min(o.mask_index[0], o.mask_index[1]) >= 1]
    assert len(visible) >= 2
    partners = [scene.objects[j].mask_index[1] for j in visible]
    swapped = np.array([[scene.objects[j].mask_index[0], partner]
                        for j, partner in zip(visible, partners[1:] + partners[:1])])
    records = motion_metrics.object_records([swapped], [np.zeros((len(visible), 3))], truth, [1.0, 1.0])
    assert len(records) == len(visible) and all(r['matched'] and r['wrong_partner'] for r in records)
    summary = motion_metrics.summarise_objects(records)
    assert summary['moving']['wrong_partner'] + summary['parked']['wrong_partner'] == len(visible)


def test_a_moving_car_that_did_not_move_counts_in_neither_rel_nor_direction():
    still = {'kind': 'same', 'gt': np.zeros(3), 'pred': np.array([0.0, 0.0, 1.0]), 'matched': True,
             'wrong_partner': False}
    moved = {'kind': 'same', 'gt': np.array([0.0, 0.0, 2.0]), 'pred': np.array([0.0, 0.0, 1.0]), 'matched': True,
             'wrong_partner': False}
    summary = motion_metrics.summarise_object_group([still, moved], moving=True)
    assert summary['epe'] == pytest.approx(1.0) and summary['cars'] == 2
    assert summary['rel'] == pytest.approx(0.5) and summary['within_30deg'] == 1.0


def save_random_networks(folder):
    torch.manual_seed(0)
    paths = {}
    for name, net in (('disp', DispResNet(18)), ('ego', EgoPoseNet(18)), ('obj', ObjPoseNet(18))):
        paths[name] = folder / f'{name}.pth.tar'
        save_checkpoint(paths[name], net.state_dict(), 0)
    return paths


def test_command_line_writes_metrics_json_of_the_documented_shape(world, tmp_path, capsys):
    root, _ = world
    paths = save_random_networks(tmp_path)
    assert eval_synthetic.main(['--data', str(root), '--pretrained-dispnet', str(paths['disp']),
                                '--pretrained-ego-pose', str(paths['ego']), '--pretrained-obj-pose', str(paths['obj']),
                                '--output-dir', str(tmp_path / 'out'), '--device', 'cpu', '--mni', '3']) == 0
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert set(metrics) == {'depth', 'ego', 'objects'}
    assert set(metrics['depth']) == {'all', 'background', 'moving', 'parked'}
    for row in metrics['depth'].values():
        assert set(row) == {'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3', 'images', 'pixels'}
    assert metrics['depth']['all']['images'] == 3 and metrics['depth']['all']['abs_rel'] > 0
    assert metrics['ego']['pairs'] == 2 and metrics['objects']['moving']['cars'] == 2
    kinds = json.loads((tmp_path / 'out' / 'car_kinds.json').read_text())
    world_kinds = {o['kind'] for o in read_scene_truth(root, world[1].name)['objects']}
    # the moving car is below the 50 pixels of a depth region at 64x96; its motion is still measured
    assert set(kinds['depth']) == {'parked', 'background'} and set(kinds['objects']) == world_kinds
    assert all(row['images'] == 3 and 'log_ratio' in row for row in kinds['depth'].values())
    assert sum(kinds['objects'][k]['cars'] for k in kinds['objects'] if k != 'parked') == 2
    assert list(kinds['background_split']) == list(eval_synthetic.BACKGROUND_SPLIT)
    assert kinds['background_split']['away_from_cars']['images'] == 3
    assert kinds['background_split']['road']['abs_rel'] > 0
    printed = capsys.readouterr().out
    assert 'log_ratio' in printed and 'away_from_cars' in printed


def test_command_line_refuses_an_ego_checkpoint_without_the_object_one(world, tmp_path, capsys):
    root, _ = world
    paths = save_random_networks(tmp_path)
    assert eval_synthetic.main(['--data', str(root), '--pretrained-dispnet', str(paths['disp']),
                                '--pretrained-ego-pose', str(paths['ego']), '--output-dir', str(tmp_path)]) == 2
    assert '--pretrained-obj-pose' in capsys.readouterr().err


def test_command_line_names_a_folder_without_poses(world, tmp_path, capsys):
    root, scene = world
    paths = save_random_networks(tmp_path)
    (root / 'poses' / f'{scene.name}.json').rename(tmp_path / 'moved.json')
    try:
        assert eval_synthetic.main(['--data', str(root), '--pretrained-dispnet', str(paths['disp']),
                                    '--output-dir', str(tmp_path / 'out'), '--device', 'cpu']) == 2
    finally:
        (tmp_path / 'moved.json').rename(root / 'poses' / f'{scene.name}.json')
    assert 'poses' in capsys.readouterr().err


def test_command_line_names_an_output_folder_it_cannot_write(world, tmp_path, capsys):
    root, _ = world
    paths = save_random_networks(tmp_path)
    (tmp_path / 'a_file').write_text('not a folder')
    assert eval_synthetic.main(['--data', str(root), '--pretrained-dispnet', str(paths['disp']),
                                '--output-dir', str(tmp_path / 'a_file'), '--device', 'cpu']) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: ') and 'a_file' in error and error.count('\n') == 1


REPO = Path(__file__).resolve().parent.parent


def planted_metrics(abs_rel):
    regions = {r: {'abs_rel': abs_rel, 'sq_rel': 0.1, 'rmse': 1.0, 'rmse_log': 0.1, 'a1': 0.9, 'a2': 0.95, 'a3': 0.99,
                   'images': 3, 'pixels': 1000} for r in ('all', 'background', 'moving', 'parked')}
    return {'depth': regions, 'ego': None, 'objects': None}


def test_ablation_runner_skips_finished_configurations_and_aggregates(world, tmp_path):
    """The runner trains only what is not finished (tiny settings: one step), and a rerun trains nothing."""
    root, _ = world
    out = tmp_path / 'ablation'
    (out / 'runs' / 'full' / 'seed0').mkdir(parents=True)
    (out / 'runs' / 'full' / 'seed0' / 'metrics.json').write_text(json.dumps(planted_metrics(0.5)))
    calls = tmp_path / 'calls.txt'
    wrapper = tmp_path / 'python'
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': str(wrapper), 'CONFIGS': 'full rigid',
           'SEEDS': '0', 'STEPS': '1', 'BATCH': '1', 'WORKERS': '0', 'DEVICE': 'cpu', 'OMP_NUM_THREADS': '1'}
    run = lambda: subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,  # noqa: E731
                                 capture_output=True, text=True)
    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    trained = [line for line in calls.read_text().splitlines() if line.startswith('train.py')]
    assert len(trained) == 1 and '-mni 0' in trained[0] and '/runs/rigid/' in trained[0]
    assert 'full seed 0: finished, skipped' in first.stdout
    results = json.loads((out / 'results.json').read_text())
    assert set(results['configs']) == {'full', 'rigid'}
    assert results['configs']['full']['mean']['depth']['moving']['abs_rel'] == 0.5
    assert results['configs']['full']['std']['depth']['moving']['abs_rel'] is None      # one seed: no spread
    assert results['configs']['rigid']['flags'] == '-mni 0' and results['configs']['rigid']['steps'] == {'0': 1}
    assert results['configs']['rigid']['mean']['depth']['all']['images'] == 3
    # the training's wall time is kept (the planted full run has none)
    rigid_dir = out / 'runs' / 'rigid' / 'seed0'
    assert int((rigid_dir / 'train_seconds.txt').read_text()) >= 0 and not (rigid_dir / 'train_started.txt').exists()
    assert results['configs']['rigid']['train_seconds'] == {'0': int((rigid_dir / 'train_seconds.txt').read_text())}
    assert results['configs']['full']['train_seconds'] == {'0': None}
    assert 'Training wall time (min' in (out / 'results.md').read_text()
    assert (out / 'results.png').stat().st_size > 1000 and '| rigid |' in (out / 'results.md').read_text()
    assert 'EXTRA_FLAGS none;' in (out / 'results.md').read_text()
    assert 'By car kind' in (out / 'results.md').read_text()        # the rigid run's car_kinds.json
    # what the rigid run was trained with (not where: no device, no loader workers) and on which machine
    settings = (rigid_dir / 'train_settings.txt').read_text().splitlines()
    assert settings[0].startswith('flags: --with-pretrain 0 -b 1 --epochs 1 --epoch-size 1 ') and settings[1:] == [
        'world: none'] and '--device' not in settings[0] and ' -j ' not in settings[0] and '-mni' not in settings[0]
    machines = (rigid_dir / 'machines.txt').read_text()
    assert machines.startswith('cpu: ') and machines.endswith(', run with -j 0 --device cpu --image-freq 0\n')
    assert results['train_settings'] == {'text': (rigid_dir / 'train_settings.txt').read_text(),
                                         'unrecorded': ['full/seed0']}
    assert results['configs']['rigid']['machines'] == {'0': (rigid_dir / 'machines.txt').read_text().splitlines()}
    assert '(not recorded for full/seed0: runs older than the record)' in (out / 'results.md').read_text()
    assert 'Machines (machines.txt): rigid 0: `cpu: ' in (out / 'results.md').read_text()
    calls.write_text('')
    second = run()
    assert second.returncode == 0, second.stderr[-2000:]
    assert not [line for line in calls.read_text().splitlines() if 'train.py' in line or 'eval_synthetic' in line]
    assert 'rigid seed 0: finished, skipped' in second.stdout


def test_ablation_runner_runs_jobs_at_once_and_names_a_failed_run(world, tmp_path):
    """JOBS=2 with full seed 0 finished: rigid 0 and full 1 are the first group (rigid 0's train.py waits for full
    1's to start), then rigid 1, whose training fails: the runner exits 1 naming it and aggregates the rest."""
    root, _ = world
    out, marker = tmp_path / 'ablation', tmp_path / 'full1_started'
    (out / 'runs' / 'full' / 'seed0').mkdir(parents=True)
    (out / 'runs' / 'full' / 'seed0' / 'metrics.json').write_text(json.dumps(planted_metrics(0.5)))
    wrapper = tmp_path / 'python'
    wrapper.write_text(f"""#!/bin/sh
case "$*" in
    *train.py*/runs/full/seed1/*) touch {marker} ;;
    *train.py*/runs/rigid/seed0/*) for i in $(seq 600); do [ -f {marker} ] && break; sleep 0.1; done
                                   [ -f {marker} ] || exit 4 ;;
    *train.py*/runs/rigid/seed1/*) echo "planted failure" >&2; exit 3 ;;
esac
exec {sys.executable} "$@"
""")
    wrapper.chmod(0o755)
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': str(wrapper), 'CONFIGS': 'full rigid',
           'SEEDS': '0 1', 'STEPS': '1', 'BATCH': '1', 'WORKERS': '0', 'DEVICE': 'cpu', 'OMP_NUM_THREADS': '1',
           'JOBS': '2'}
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'these runs failed: rigid/seed1 (' in result.stderr
    assert 'full seed 0: finished, skipped' in result.stdout and not (out / 'logs' / 'full_seed0.log').exists()
    assert 'planted failure' in (out / 'logs' / 'rigid_seed1.log').read_text()
    assert 'full seed 1: training' in (out / 'logs' / 'full_seed1.log').read_text()
    results = json.loads((out / 'results.json').read_text())['configs']
    assert list(results['full']['seeds']) == ['0', '1'] and list(results['rigid']['seeds']) == ['0']
    assert '| full | `-mni 3` | 0, 1 | ' in (out / 'results.md').read_text()
    assert 'seeds of this invocation 0 1,' in (out / 'results.md').read_text()


def test_ablation_runner_refuses_to_add_seeds_trained_with_other_settings(world, tmp_path):
    """A seed of OUT recorded with --amp bf16: a later invocation without it trains nothing and names the file;
    with the same settings the new seed starts training (here a planted failure of train.py) and is recorded."""
    root, _ = world
    out = tmp_path / 'ablation'
    seed_dir = out / 'runs' / 'full' / 'seed0'
    seed_dir.mkdir(parents=True)
    (seed_dir / 'metrics.json').write_text(json.dumps(planted_metrics(0.5)))
    calls = tmp_path / 'calls.txt'
    wrapper = tmp_path / 'python'
    wrapper.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
case "$*" in
    *train.py*) echo "planted failure" >&2; exit 3 ;;
esac
exec {sys.executable} "$@"
""")
    wrapper.chmod(0o755)
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': str(wrapper), 'CONFIGS': 'full', 'SEEDS': '1',
           'STEPS': '1', 'BATCH': '1', 'WORKERS': '0', 'DEVICE': 'cpu', 'OMP_NUM_THREADS': '1'}
    flags = '--with-pretrain 0 -b 1 --epochs 1 --epoch-size 1 -p 2.0 -c 1.0 -s 0.1 -o 0.02 -mc 0.1 -hp 0 -dm 0 ' \
            '--with-ssim --with-mask --with-auto-mask --with-gt'
    (seed_dir / 'train_settings.txt').write_text(f'flags: {flags} --amp bf16\nworld: none\n')
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (f"error: {seed_dir / 'train_settings.txt'}: this run was trained with other settings "
                             "than this invocation's (flags differ: '--amp bf16' there, 'nothing' here); its seeds "
                             "would be averaged with yours: use the same settings or another OUT\n")
    assert 'train.py' not in calls.read_text() and not (out / 'runs' / 'full' / 'seed1').exists()
    (seed_dir / 'train_settings.txt').write_text(f'flags: {flags}\nworld: none\n')
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'planted failure' in result.stderr
    assert [line for line in calls.read_text().splitlines() if line.startswith('train.py')]
    new_seed = out / 'runs' / 'full' / 'seed1'
    assert (new_seed / 'train_settings.txt').read_text() == f'flags: {flags}\nworld: none\n'
    assert (new_seed / 'machines.txt').read_text().startswith('cpu: ')


def test_seeds_recorded_with_other_settings_are_not_averaged(tmp_path, capsys):
    for seed, amp in (('0', ''), ('1', ' --amp bf16')):
        seed_dir = tmp_path / 'runs' / 'full' / f'seed{seed}'
        seed_dir.mkdir(parents=True)
        (seed_dir / 'metrics.json').write_text(json.dumps(planted_metrics(0.5)))
        (seed_dir / 'train_settings.txt').write_text(f'flags: -b 4{amp}\nworld: none\n')
    assert ablation_results.main(['--out', str(tmp_path), '--configs', 'full']) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'runs' / 'full' / 'seed1' / 'train_settings.txt'}: trained with other settings than "
        f"{tmp_path / 'runs' / 'full' / 'seed0'} (flags differ: 'nothing' there, '--amp bf16' here); they cannot be "
        "averaged as one experiment\n")


def test_the_recorded_world_is_the_generators_config_whatever_its_layout(tmp_path):
    (tmp_path / 'synthetic_config.json').write_text('{\n "width": 320,\n "height": 96, "seed": 0\n}')
    assert run_record.settings_text(['-b', '4'], tmp_path) == 'flags: -b 4\nworld: {"height":96,"seed":0,"width":320}\n'
    (tmp_path / 'synthetic_config.json').write_text('{"width": ')
    with pytest.raises(run_record.RecordError, match='synthetic_config.json: not readable JSON'):
        run_record.settings_text([], tmp_path)
    assert run_record.settings_text([], tmp_path / 'elsewhere') == 'flags: \nworld: none\n'
    # how a run is executed is not what it learns: no device, workers, memory layout, compilation, logging
    flags = '-b 4 -j 2 --channels-last --amp bf16 --compile --device cuda --image-freq 0 -mni 3 --save-freq 5'.split()
    assert run_record.settings_text(flags, tmp_path / 'elsewhere') == 'flags: -b 4 --amp bf16 -mni 3\nworld: none\n'


def test_a_settings_difference_names_each_differing_flag_with_its_value():
    difference = run_record.settings_difference('flags: -b 4 --with-ssim -o 0.02 --amp bf16\nworld: none\n',
                                                'flags: -b 8 --with-ssim -o 0.02\nworld: none\n')
    assert difference == "flags differ: '-b 4 --amp bf16' there, '-b 8' here"
    assert run_record.settings_difference('flags: -b 4\nworld: {"seed":0}\n', 'flags: -b 4\nworld: none\n') == \
        'world differs: \'{"seed":0}\' there, \'none\' here'


def test_a_machine_is_recorded_once_per_seed(tmp_path):
    for _ in range(2):
        run_record.write_record(tmp_path, ['-b', '4', '--channels-last'], tmp_path / 'none', torch.device('cpu'))
    machines = run_record.read_machines(tmp_path)
    assert len(machines) == 1 and machines[0].startswith('cpu: ') and 'cpu capability ' in machines[0]
    assert machines[0].endswith(', run with --channels-last')
    assert run_record.read_settings(tmp_path) == 'flags: -b 4\nworld: none\n'
    # a resume without --channels-last: the same settings, a second line
    run_record.write_record(tmp_path, ['-b', '4'], tmp_path / 'none', torch.device('cpu'))
    assert len(run_record.read_machines(tmp_path)) == 2 and run_record.read_settings(tmp_path) == 'flags: -b 4\nworld: none\n'


def test_seeds_are_the_numbered_seed_folders_in_numeric_order(tmp_path, capsys):
    assert ablation_results.seed_names({'10': {}, '2': {}, '0': {}}) == '0, 2, 10'
    assert ablation_results.seed_names(set()) == 'none'
    for name, abs_rel in (('seed10', 0.1), ('seed2', 0.2), ('seed2.old', 9.0), ('seedling', 9.0)):
        (tmp_path / 'runs' / 'full' / name).mkdir(parents=True)
        (tmp_path / 'runs' / 'full' / name / 'metrics.json').write_text(json.dumps(planted_metrics(abs_rel)))
    config = ablation_results.collect(tmp_path, ['full'])['configs']['full']
    assert list(config['seeds']) == ['2', '10'] and config['mean']['depth']['moving']['abs_rel'] == pytest.approx(0.15)
    assert config['std']['depth']['moving']['abs_rel'] == pytest.approx(0.05)         # population std (ddof 0)
    assert '| full | `` | 2, 10 | ' in ablation_results.format_markdown({'configs': {'full': config}})
    # a damaged metrics file: one line naming it
    (tmp_path / 'runs' / 'full' / 'seed2' / 'metrics.json').write_text('{"depth": ')
    assert ablation_results.main(['--out', str(tmp_path), '--configs', 'full']) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'runs' / 'full' / 'seed2' / 'metrics.json'}: not readable JSON "
                            "(JSONDecodeError: ") and error.count('\n') == 1
    (tmp_path / 'runs' / 'full' / 'seed2' / 'metrics.json').write_text('[]')
    assert ablation_results.main(['--out', str(tmp_path), '--configs', 'full']) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'runs' / 'full' / 'seed2' / 'metrics.json'}: "
                                       "not a JSON object (a list)\n")


def test_a_damaged_depth_of_the_figure_frame_is_one_line_naming_it(world, tmp_path, capsys):
    root, _ = world
    data = tmp_path / 'data'
    shutil.copytree(root, data)
    (tmp_path / 'runs' / 'full' / 'seed0').mkdir(parents=True)
    (tmp_path / 'runs' / 'full' / 'seed0' / 'metrics.json').write_text(json.dumps(planted_metrics(0.5)))
    _, _, frame = ablation_results.load_validation_frame(data)
    frame.with_suffix('.npy').write_bytes(b'\x93NUMPY')
    assert ablation_results.main(['--out', str(tmp_path), '--configs', 'full', '--data', str(data)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {frame.with_suffix('.npy')}: not a readable .npy array") and error.count('\n') == 1


def test_ablation_runner_stops_its_background_runs_on_sigterm(world, tmp_path):
    root, _ = world
    out, started = tmp_path / 'ablation', tmp_path / 'started'
    wrapper = tmp_path / 'python'
    wrapper.write_text(f"""#!/bin/sh
case "$*" in
    *train.py*) echo $$ >> {started}; exec sleep 300 ;;
esac
exec {sys.executable} "$@"
""")
    wrapper.chmod(0o755)
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': str(wrapper), 'CONFIGS': 'full rigid',
           'SEEDS': '0', 'JOBS': '2'}
    runner = subprocess.Popen(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if started.is_file() and len(started.read_text().split()) == 2:
            break
        time.sleep(0.1)
    trainings = [int(pid) for pid in started.read_text().split()]
    runner.send_signal(signal.SIGTERM)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 143 and 'stopped' in stderr
    for _ in range(100):
        alive = [pid for pid in trainings if os.path.exists(f'/proc/{pid}')
                 and 'zombie' not in open(f'/proc/{pid}/status').read()]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive


def test_ablation_runner_refuses_a_jobs_count_that_is_not_a_number(tmp_path):
    (tmp_path / 'val.txt').write_text('scene\n')
    env = {**os.environ, 'DATA': str(tmp_path), 'OUT': str(tmp_path / 'out'), 'JOBS': 'two', 'PY': sys.executable}
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and 'JOBS=two' in result.stderr


def test_ablation_runner_refuses_an_unknown_configuration(tmp_path):
    env = {**os.environ, 'DATA': str(tmp_path), 'OUT': str(tmp_path / 'out'), 'CONFIGS': 'full nonsense',
           'PY': sys.executable}
    (tmp_path / 'val.txt').write_text('scene\n')
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown configuration 'nonsense'" in result.stderr
    assert not (tmp_path / 'out' / 'runs').exists()


def test_ablation_runner_evaluates_a_finished_training_without_training_again(world, tmp_path):
    root, _ = world
    out = tmp_path / 'ablation'
    run_dir = out / 'runs' / 'full' / 'seed0' / 'checkpoints' / 'run' / 'finished'
    run_dir.mkdir(parents=True)
    for name, net in (('dispnet', DispResNet(18)), ('ego_pose', EgoPoseNet(18)), ('obj_pose', ObjPoseNet(18))):
        save_checkpoint(run_dir / f'{name}_checkpoint.pth.tar', net.state_dict(), 1)
    (run_dir / 'training_state.pth.tar').write_bytes(b'planted')
    (run_dir / 'checkpoint_set.json').write_text(json.dumps({'epoch': 1, 'n_iter': 1}))
    (run_dir / 'progress_log_summary.csv').write_text('epoch\ttrain_loss\tvalidation_loss\n1\t0.5\t0.4\n')
    # a training interrupted after its last save: its time counts until that save
    os.utime(run_dir / 'checkpoint_set.json', (1_700_000_000, 1_700_000_000))
    (run_dir.parents[2] / 'train_started.txt').write_text('1699999910\n')
    (run_dir.parents[2] / 'train_seconds.txt').write_text('10\n')
    calls = tmp_path / 'calls.txt'
    wrapper = tmp_path / 'python'
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': str(wrapper), 'CONFIGS': 'full', 'SEEDS': '0',
           'STEPS': '1', 'DEVICE': 'cpu', 'OMP_NUM_THREADS': '1', 'TEST_DATA': str(root)}
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'full seed 0: trained' in result.stdout
    assert (run_dir.parents[2] / 'train_seconds.txt').read_text() == '100\n'
    assert not (run_dir.parents[2] / 'train_started.txt').exists()
    assert not [line for line in calls.read_text().splitlines() if line.startswith('train.py')]
    seed_dir = out / 'runs' / 'full' / 'seed0'
    assert json.loads((seed_dir / 'metrics.json').read_text())['depth']['all']['images'] == 3
    assert 'parked' in json.loads((seed_dir / 'car_kinds.json').read_text())['depth']
    assert not (seed_dir / 'eval').exists()
    # the held-out evaluation (here on the same world): the same numbers, aggregated into test_results.*
    held_out = json.loads((seed_dir / 'test' / 'metrics.json').read_text())
    assert held_out == json.loads((seed_dir / 'metrics.json').read_text())
    test_results = json.loads((out / 'test_results.json').read_text())['configs']['full']
    assert test_results['kinds']['seeds'] == ['0'] and 'parked' in test_results['kinds']['mean']['depth']
    report = (out / 'test_results.md').read_text()
    assert 'held out' in report and 'By car kind' in report and (out / 'test_results.png').is_file()
    # the run's record stays in the seed folder: its validation curve and its steps
    assert (seed_dir / 'validation_log.csv').read_text() == (run_dir / 'progress_log_summary.csv').read_text()
    assert (seed_dir / 'steps.txt').read_text().strip() == '1' and test_results['steps'] == {'0': 1}
    # a rerun evaluates nothing again; PRUNE=1 deletes the checkpoints and the steps are still known
    calls.write_text('')
    again = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env={**env, 'PRUNE': '1'}, cwd=REPO,
                           capture_output=True, text=True)
    assert again.returncode == 0 and not [line for line in calls.read_text().splitlines() if 'eval_synthetic' in line]
    assert 'checkpoints deleted (PRUNE=1)' in again.stdout and not (seed_dir / 'checkpoints').exists()
    assert json.loads((out / 'results.json').read_text())['configs']['full']['steps'] == {'0': 1}
    assert (seed_dir / 'validation_log.csv').is_file() and (seed_dir / 'test' / 'metrics.json').is_file()


def test_training_steps_read_steps_txt_else_the_runs_manifest(tmp_path):
    seed_dir, run_dir = tmp_path / 'seed0', tmp_path / 'run'
    seed_dir.mkdir()
    run_dir.mkdir()
    assert ablation_results.training_steps(seed_dir) is None
    (seed_dir / 'run_dir.txt').write_text(f'{run_dir}\n')
    (run_dir / 'checkpoint_set.json').write_text(json.dumps({'save_id': 'a', 'epoch': 3, 'n_iter': 60, 'files': []}))
    assert ablation_results.training_steps(seed_dir) == 60
    (seed_dir / 'steps.txt').write_text('1500\n')
    assert ablation_results.training_steps(seed_dir) == 1500
    (run_dir / 'checkpoint_set.json').write_text('[]')
    (seed_dir / 'steps.txt').unlink()
    assert ablation_results.training_steps(seed_dir) is None


def with_regions(moving, background):
    metrics = planted_metrics(0.2)
    metrics['depth']['moving']['abs_rel'], metrics['depth']['background']['abs_rel'] = moving, background
    return metrics


def test_bar_verdict_judges_all_seeds_and_the_paired_seeds():
    """Full seeds 1, 2 against rigid seeds 0, 1, 2: the unpaired means miss the bar, the paired ones meet it."""
    full = {'1': with_regions(0.30, 0.10), '2': with_regions(0.36, 0.12)}
    rigid = {'0': with_regions(0.36, 0.12), '1': with_regions(0.40, 0.10), '2': with_regions(0.48, 0.125)}
    results = {'configs': {name: {'seeds': seeds, 'mean': ablation_results.combine(list(seeds.values()), np.mean)}
                           for name, seeds in (('full', full), ('rigid', rigid))}}
    unpaired, paired = ablation_results.bar_verdict(results).split('\n\n')
    # all seeds: moving 1 - 0.33 / 0.41333 = 20.2 % lower; background 0.11 / 0.115 - 1 = -4.3 %: better
    assert unpaired.startswith('Bar (full vs rigid, all seeds): moving-car Abs Rel 20.2 % lower')
    assert 'background 4.3 % better' in unpaired and unpaired.endswith('NOT met.')
    # seeds 1, 2: moving 1 - 0.33 / 0.44 = 25.0 %, per seed 25 % and 25 %; background 0.11 / 0.1125 - 1 = -2.2 %
    assert paired.startswith('Paired on seeds 1, 2: moving-car Abs Rel 25.0 % lower (per seed: 25 %, 25 %)')
    assert 'background 2.2 % better' in paired and paired.endswith(': met.')
    full['2'] = with_regions(0.36, 0.13)      # background 0.115 / 0.1125 - 1 = +2.2 %: worse, within 5 %
    results['configs']['full']['mean'] = ablation_results.combine(list(full.values()), np.mean)
    assert 'background 2.2 % worse' in ablation_results.bar_verdict(results).split('\n\n')[1]
    del results['configs']['rigid']
    assert 'cannot be judged' in ablation_results.bar_verdict(results)


def test_ablation_runner_takes_an_object_size_weight_as_a_configuration(world, tmp_path):
    root, _ = world
    out = tmp_path / 'ablation'
    (out / 'runs' / 'obj_size_0.005' / 'seed0').mkdir(parents=True)
    (out / 'runs' / 'obj_size_0.005' / 'seed0' / 'metrics.json').write_text(json.dumps(planted_metrics(0.4)))
    env = {**os.environ, 'DATA': str(root), 'OUT': str(out), 'PY': sys.executable, 'CONFIGS': 'obj_size_0.005',
           'SEEDS': '0', 'MNI': '2', 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / 'results.json').read_text())['configs']['obj_size_0.005']['flags'] == '-mni 2 -o 0.005'
    refused = subprocess.run(['sh', str(REPO / 'scripts' / 'run_ablation.sh')], cwd=REPO, capture_output=True,
                             text=True, env={**env, 'CONFIGS': 'obj_size_heavy'})
    assert refused.returncode == 2 and "obj_size_W needs a number" in refused.stderr


def test_combine_averages_nested_metrics_and_skips_missing_values():
    mean = ablation_results.combine([{'a': {'x': 1.0, 'y': None}, 'n': 2}, {'a': {'x': 3.0, 'y': 4.0}, 'n': 4}],
                                    np.mean)
    assert mean == {'a': {'x': 2.0, 'y': 4.0}, 'n': 3.0}
    assert ablation_results.combine([None, None], np.mean) is None


def test_objective_is_lowest_at_the_true_depth_and_motion():
    """The photometric term at the exact depth and motion beats a wrong scale, rotation only and no motion."""
    from experiments import objective_at_truth
    scene = synthetic.render_scene(seed=0, index=4, height=HEIGHT, width=WIDTH, frames=3, min_cars=3, max_cars=4)
    pairs, depths, ego, fields = objective_at_truth.scene_inputs(scene)
    options = objective_at_truth.LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    photo = {name: objective_at_truth.objective(pairs, *case, options)[0]
             for name, case in objective_at_truth.variants(depths, ego, fields, scales=(0.1, 10.0)).items()}
    assert photo['truth + objects'] <= photo['truth, rigid'] + 1e-6
    for name in ('depth x 0.1', 'depth x 10', 'rotation only', 'identity'):
        assert photo['truth, rigid'] < photo[name], name


def test_depth_scale_option_divides_the_disparity():
    from projection import estimate_depths
    net = lambda x: torch.full((x.shape[0], 1, 2, 2), 4.0)  # noqa: E731
    depths, disparities = estimate_depths(net, torch.zeros(2, 3, 2, 2), depth_scale=0.1)
    assert depths.shape == (2, 1, 2, 2) and torch.allclose(depths, torch.full_like(depths, 0.025))
    assert torch.equal(disparities, torch.full_like(disparities, 4.0))


def test_depth_scale_of_the_evaluation_divides_the_disparity():
    net = eval_synthetic.ScaledDisparity(lambda img: torch.full((1, 1, 2, 2), 2.0), 0.1)
    assert torch.allclose(1 / net(torch.zeros(1, 3, 2, 2)), torch.full((1, 1, 2, 2), 0.05))


def test_probe_logs_disparity_parallax_and_mask_shares(world, tmp_path):
    from experiments import diagnose_objective
    root, _ = world
    rows = diagnose_objective.main([str(root), '--name', 'probe', '--checkpoint-root', str(tmp_path), '--with-pretrain',
                                    '0', '--device', 'cpu', '-b', '1', '-j', '0', '-mni', '0', '--with-auto-mask',
                                    '--probe-steps', '2', '--probe-every', '1', '--depth-scale', '0.5',
                                    '--probe-csv', str(tmp_path / 'probe.csv')])
    assert [row['step'] for row in rows] == [0, 1]
    for row in rows:
        assert 0 < row['auto_mask_kept'] <= 1 and 0 < row['first_valid'] <= 1 and row['disparity'] > 0
        assert row['parallax'] == pytest.approx(row['ego_translation'] * row['disparity'] / 0.5, rel=0.5)
    lines = (tmp_path / 'probe.csv').read_text().splitlines()
    assert lines[0].split(',') == list(diagnose_objective.COLUMNS) and len(lines) == 3


def test_forward_share_reads_the_sign_of_forward_driving():
    from experiments.diagnose_objective import forward_share
    from pairs import PairLayout
    # pairs (t,t-1), (t,t+1), (t-1,t), (t+1,t), batch 1: forward driving gives t_z +, -, -, +
    poses = torch.zeros(4, 6)
    poses[:, 2] = torch.tensor([1.0, -1.0, -1.0, 1.0])
    layout = PairLayout(2)
    assert forward_share(poses, layout) == 1.0 and forward_share(-poses, layout) == 0.0
    assert forward_share(poses.repeat_interleave(3, 0), layout) == 1.0


def test_antisymmetric_ego_pose_gives_the_two_directions_opposite_poses():
    from projection import estimate_ego_motion, make_directed_pairs
    torch.manual_seed(0)
    batch, num_refs = 2, 2
    tgt = torch.rand(batch, 3, 4, 6)
    refs = [torch.rand(batch, 3, 4, 6) for _ in range(num_refs)]
    insts = [torch.zeros(batch, 2, 4, 6) for _ in range(num_refs)]
    pairs = make_directed_pairs(tgt, refs, insts, insts, torch.eye(3).expand(batch, 3, 3))

    def biased_net(view, source):   # a pose that does not depend on the direction (bias) plus one that does
        return 0.3 + (view.mean((1, 2, 3)) - 2 * source.mean((1, 2, 3)))[:, None].expand(-1, 6)

    raw = estimate_ego_motion(biased_net, pairs)
    poses = estimate_ego_motion(biased_net, pairs, antisymmetric=True)
    forward, backward = pairs.layout.forward_half(poses), pairs.layout.backward_half(poses)
    torch.testing.assert_close(forward, -backward)
    raw_forward, raw_backward = pairs.layout.forward_half(raw), pairs.layout.backward_half(raw)
    torch.testing.assert_close(forward, (raw_forward - raw_backward) / 2)
    assert not torch.allclose(raw_forward, -raw_backward)
    # the evaluation (demo.infer_pair, t -> t+1) gives the step's pose for the same pair
    import demo
    nets = demo.Networks(disp=None, ego=biased_net, obj=None, antisymmetric_ego_pose=True)
    ones, no_insts = torch.ones(1, 1, 4, 6), torch.zeros(1, 2, 4, 6)
    ego_pose, _ = demo.infer_pair(nets, tgt[:1], refs[0][:1], no_insts, no_insts, ones, ones, torch.eye(3)[None])
    single = make_directed_pairs(tgt[:1], [refs[0][:1]], [no_insts], [no_insts], torch.eye(3)[None])
    torch.testing.assert_close(ego_pose, estimate_ego_motion(biased_net, single, antisymmetric=True)[0])
    assert not torch.allclose(ego_pose, estimate_ego_motion(biased_net, single)[0])
