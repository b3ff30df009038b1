"""test_pose.py and scripts/run_pose_test.sh end to end on a synthetic KITTI odometry drive; the synthetic layout."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import test_pose
from checkpoint_io import save_checkpoint
from data import synthetic
from data.synthetic_odometry import camera0_trajectory
from demo_odometry import pose_vectors_to_matrices
from kitti_eval.kitti_odometry import BUNDLED_GT_DIR, read_poses
from kitti_eval.odometry_metrics import chain_poses
from models import CONFIG_KEY, EgoPoseNet, ModelConfig
from test_eval_test_disp import one_line_error

HEIGHT, WIDTH, FRAMES = 64, 192, 8
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    """``(odometry root, scene)``: one synthetic drive of 8 frames as KITTI odometry sequence 00."""
    out = tmp_path_factory.mktemp('odometry')
    synthetic.generate(out, scenes=1, frames=FRAMES, height=HEIGHT, width=WIDTH, seed=3, layout='odometry')
    scene = synthetic.render_scene(seed=3, index=0, height=HEIGHT, width=WIDTH, frames=FRAMES, with_flows=False)
    return out / 'odometry', scene


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'ego_pose_checkpoint.pth.tar'
    save_checkpoint(path, EgoPoseNet(18, pretrained=False).state_dict(), epoch=1)
    return path


def test_synthetic_odometry_layout(drive):
    root, scene = drive
    frames = sorted((root / 'sequences' / '00' / 'image_2').iterdir())
    assert [f.name for f in frames] == [f'{k:06d}.png' for k in range(FRAMES)]
    calib = dict(line.split(':', 1) for line in (root / 'sequences' / '00' / 'calib.txt').read_text().splitlines())
    assert list(calib) == ['P0', 'P1', 'P2', 'P3', 'Tr']
    p2 = np.array(calib['P2'].split(), float).reshape(3, 4)
    np.testing.assert_allclose(p2[:, :3], synthetic.devkit_projection(scene.K))
    assert p2[0, 3] == pytest.approx(scene.K[0, 0] * synthetic.CAM2_FROM_CAM0[0])
    assert len((root / 'sequences' / '00' / 'times.txt').read_text().split()) == FRAMES
    gt = read_poses(root / 'poses' / '00.txt')
    np.testing.assert_allclose(gt[0], np.eye(4), atol=1e-12)
    # camera 0 sits 0.06 m right of the rendered camera 2, with its orientation
    cam2 = np.linalg.inv(scene.cam_to_world[0]) @ scene.cam_to_world
    offset = np.eye(4)
    offset[0, 3] = 0.06
    np.testing.assert_allclose(gt, np.linalg.inv(offset) @ cam2 @ offset, atol=1e-8)
    assert scene.flow_f.shape == (0, HEIGHT, WIDTH, 2)


def test_chaining_the_training_pose_direction_gives_the_camera_trajectory(drive):
    """The synthetic tests show ``pose_to_vec(relative_pose(t, t+1))`` is what a training step uses for
    target t, reference t+1; chained as test_pose.py chains EgoPoseNet's output it is the GT trajectory."""
    _, scene = drive
    vectors = np.stack([synthetic.pose_to_vec(synthetic.relative_pose(scene, k, k + 1)) for k in range(FRAMES - 1)])
    chained = chain_poses(pose_vectors_to_matrices(vectors))
    np.testing.assert_allclose(chained, camera0_trajectory(scene.cam_to_world, np.zeros(3)), atol=1e-9)


def run_test_pose(root, checkpoint, output_dir, *extra, sequences=('00',)):
    test_pose.main(['--pretrained-ego-pose', str(checkpoint), '--dataset-dir', str(root), '--sequences', *sequences,
                    '--output-dir', str(output_dir), '--img-height', str(HEIGHT), '--img-width', str(WIDTH),
                    '--device', 'cpu', '--no-progress', '--batch-size', '3', *extra])


def test_test_pose_end_to_end(drive, checkpoint, tmp_path, capsys):
    root, _ = drive
    run_test_pose(root, checkpoint, tmp_path, '--sequence-length', '3')
    printed = capsys.readouterr().out
    out = tmp_path / '00'
    pred = read_poses(out / '00.txt')
    assert pred.shape == (FRAMES, 4, 4)
    np.testing.assert_allclose(pred[0], np.eye(4))
    metrics = json.loads((out / 'odometry_metrics.json').read_text())
    assert list(metrics) == ['t_err', 'r_err', 'ate', 'rpe_trans', 'rpe_rot']
    assert metrics['t_err'] is None and metrics['ate'] > 0        # a few metres: no 100 m segment
    snippets = json.loads((out / 'snippet_ate.json').read_text())
    assert snippets['snippet_length'] == 3 and snippets['snippets'] == FRAMES - 2 and snippets['mean'] > 0
    assert (out / 'trajectory.png').is_file() and (out / 'aligned_poses.txt').is_file()
    assert 'shorter than the shortest segment' in printed and 'snippet ATE (3 frames, 6 snippets)' in printed

    # the same frames batched differently give the same trajectory
    run_test_pose(root, checkpoint, tmp_path / 'again', '--batch-size', '1')
    np.testing.assert_allclose(read_poses(tmp_path / 'again' / '00' / '00.txt'), pred, atol=1e-5)


def test_test_pose_bad_input(drive, checkpoint, tmp_path):
    root, _ = drive
    message = one_line_error(lambda: run_test_pose(root, checkpoint, tmp_path, sequences=('00', '07')))
    assert message.startswith(f"error: {root / 'sequences' / '07'}: sequence 07 not found")
    message = one_line_error(lambda: run_test_pose(root, tmp_path / 'none.pth.tar', tmp_path))
    assert message == f"error: {tmp_path / 'none.pth.tar'}: checkpoint file not found"
    assert '--img-width 100' in one_line_error(lambda: run_test_pose(root, checkpoint, tmp_path, '--img-width', '100'))
    # a sequence 09 without poses/ falls back to the bundled KITTI GT, whose length does not fit
    other = tmp_path / 'other'
    shutil.copytree(root / 'sequences' / '00', other / 'sequences' / '09')
    message = one_line_error(lambda: run_test_pose(other, checkpoint, tmp_path, sequences=('09',)))
    assert message == f"error: {BUNDLED_GT_DIR / '09.txt'}: 1591 poses, but sequence 09 has {FRAMES} frames"


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(drive, checkpoint, tmp_path):
    root, _ = drive
    blocker = tmp_path / 'results'
    blocker.write_text('my notes\n')
    message = one_line_error(lambda: run_test_pose(root, checkpoint, blocker))
    assert message == f"error: --output-dir {blocker}: {blocker} is an existing file, not a folder"
    assert blocker.read_text() == 'my notes\n'


def test_a_sequence_without_ground_truth_gives_the_prediction_only(drive, checkpoint, tmp_path, capsys):
    root, _ = drive
    other = tmp_path / 'data'
    shutil.copytree(root / 'sequences' / '00', other / 'sequences' / '11')
    run_test_pose(other, checkpoint, tmp_path / 'out', sequences=('11',))
    assert 'no ground truth' in capsys.readouterr().out
    assert read_poses(tmp_path / 'out' / '11' / '11.txt').shape == (FRAMES, 4, 4)
    assert not (tmp_path / 'out' / '11' / 'odometry_metrics.json').exists()


def run_script(env, cwd):
    full_env = {**os.environ, 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1', **env}
    return subprocess.run(['sh', str(ROOT / 'scripts' / 'run_pose_test.sh')], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_pose_script_reports_a_missing_path_and_runs(drive, checkpoint, tmp_path):
    result = run_script({'DATA_ROOT': str(tmp_path / 'nowhere')}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: DATA_ROOT={tmp_path / 'nowhere'} is not a folder")
    root, _ = drive
    result = run_script({'DATA_ROOT': str(root), 'EGO_POSE_NET': str(checkpoint), 'SEQUENCES': '00',
                         'IMG_HEIGHT': str(HEIGHT), 'IMG_WIDTH': str(WIDTH), 'DEVICE': 'cpu',
                         'RESULTS_DIR': 'results'}, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 'results' / '00' / 'odometry_metrics.json').is_file()


def test_rotation_mode_and_input_size_are_read_from_the_checkpoint(drive, tmp_path, capsys):
    root, _ = drive
    torch.manual_seed(1)
    net = EgoPoseNet(18, pretrained=False)
    with torch.no_grad():
        net.decoder.convs_pose[2].bias.copy_(torch.tensor([0., 0., 100., 10., 20., 30.]))
    path = tmp_path / 'ego_quat.pth.tar'
    config = ModelConfig(rotation_mode='quat', img_height=HEIGHT, img_width=WIDTH)
    save_checkpoint(path, net.state_dict(), epoch=1, **{CONFIG_KEY: config.as_dict()})
    common = ['--pretrained-ego-pose', str(path), '--dataset-dir', str(root), '--sequences', '00', '--device', 'cpu',
              '--no-progress']
    test_pose.main(common + ['--output-dir', str(tmp_path / 'saved')])
    test_pose.main(common + ['--output-dir', str(tmp_path / 'explicit'), '--rotation-mode', 'quat',
                             '--img-height', str(HEIGHT), '--img-width', str(WIDTH)])
    assert 'warning' not in capsys.readouterr().err
    test_pose.main(common + ['--output-dir', str(tmp_path / 'euler'), '--rotation-mode', 'euler'])
    assert f"warning: {path} was trained with rotation_mode 'quat', using 'euler' as given" in capsys.readouterr().err
    trajectory = {name: read_poses(tmp_path / name / '00' / '00.txt') for name in ('saved', 'explicit', 'euler')}
    np.testing.assert_allclose(trajectory['saved'], trajectory['explicit'], atol=1e-9)
    assert np.abs(trajectory['saved'] - trajectory['euler']).max() > 1e-2


def test_an_antisymmetric_ego_pose_network_is_evaluated_as_it_was_trained(drive, tmp_path):
    """A checkpoint saved with ``antisymmetric_ego_pose`` gives the trajectory of ``(f(k, k+1) - f(k+1, k)) / 2``,
    the pose its training used, not of ``f(k, k+1)`` alone (batches of 3: the pair across a batch boundary too)."""
    root, _ = drive
    torch.manual_seed(2)
    net = EgoPoseNet(18, pretrained=False).eval()
    with torch.no_grad():
        net.decoder.convs_pose[2].bias.copy_(torch.tensor([0.1, 0.0, 0.5, 0.01, 0.02, 0.0]))
    trajectories = {}
    for antisymmetric in (False, True):
        config = ModelConfig(img_height=HEIGHT, img_width=WIDTH, antisymmetric_ego_pose=antisymmetric)
        path = tmp_path / f'ego_{antisymmetric}.pth.tar'
        save_checkpoint(path, net.state_dict(), epoch=1, **{CONFIG_KEY: config.as_dict()})
        out = tmp_path / f'out_{antisymmetric}'
        test_pose.main(['--pretrained-ego-pose', str(path), '--dataset-dir', str(root), '--sequences', '00',
                        '--device', 'cpu', '--no-progress', '--batch-size', '3', '--output-dir', str(out)])
        trajectories[antisymmetric] = read_poses(out / '00' / '00.txt')
    frames = test_pose.sequence_frames(root, '00')
    images = next(iter(torch.utils.data.DataLoader(test_pose.ImageList(frames, HEIGHT, WIDTH),
                                                   batch_size=len(frames))))
    with torch.no_grad():
        vectors = 0.5 * (net(images[:-1], images[1:]) - net(images[1:], images[:-1]))
    expected = chain_poses(pose_vectors_to_matrices(vectors.double().numpy(), 'euler'))
    np.testing.assert_allclose(trajectories[True], expected, atol=1e-5)
    assert np.abs(trajectories[True] - trajectories[False]).max() > 1e-2
