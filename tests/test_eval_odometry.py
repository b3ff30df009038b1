"""Ego-motion metrics against closed-form cases, evo, and eval_odometry.py end to end (files, bad input)."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kitti_eval import eval_odometry
from kitti_eval.kitti_odometry import BUNDLED_GT_DIR, read_poses, write_poses
from kitti_eval.odometry_metrics import ALIGNMENTS, METRIC_NAMES, align_trajectory, chain_poses, \
    kitti_segment_metrics, odometry_errors, rotation_angle, snippet_ate, umeyama
from test_eval_test_disp import one_line_error


def poses_from(rotations, positions):
    """``[F,4,4]`` from ``[F,3,3]`` rotations and ``[F,3]`` positions."""
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = positions
    return poses


def straight_drive(frames, step=1.0, lateral=0.0, yaw_per_frame=0.0):
    """Camera driving along +z, ``step`` m per frame (plus ``lateral`` m along x), optionally turning its head."""
    k = np.arange(frames)
    rotations = Rotation.from_euler('y', yaw_per_frame * k[:, None]).as_matrix()
    return poses_from(rotations, np.column_stack([lateral * k, np.zeros(frames), step * k]))


@pytest.fixture(scope='module')
def kitti_09():
    """The first 400 frames of the official ground truth of sequence 09 (curves, hills, about 400 m)."""
    return read_poses(BUNDLED_GT_DIR / '09.txt')[:400]


def similarity_transform(poses, scale, rotation, translation):
    moved = np.array(poses)
    moved[:, :3, :3] = rotation @ poses[:, :3, :3]
    moved[:, :3, 3] = scale * poses[:, :3, 3] @ rotation.T + translation
    return moved


def assert_all_zero(errors):
    for name in METRIC_NAMES:
        assert getattr(errors, name) == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize('align', ALIGNMENTS)
def test_a_perfect_prediction_scores_zero_with_every_alignment(kitti_09, align):
    aligned, similarity = align_trajectory(kitti_09, kitti_09.copy(), align)
    assert similarity.scale == pytest.approx(1.0)
    assert_all_zero(odometry_errors(kitti_09, aligned))


@pytest.mark.parametrize('align', ['scale', '7dof'])
def test_a_half_scale_prediction_scores_zero_after_scale_alignment(kitti_09, align):
    half = similarity_transform(kitti_09, 0.5, np.eye(3), np.zeros(3))
    aligned, similarity = align_trajectory(kitti_09, half, align)
    assert similarity.scale == pytest.approx(2.0)
    assert_all_zero(odometry_errors(kitti_09, aligned))
    assert odometry_errors(kitti_09, half).t_err > 40   # unaligned: about half of every segment is missing


def test_a_rotated_and_shifted_prediction_scores_zero_after_6dof_only(kitti_09):
    rotation = Rotation.from_euler('xyz', [0.2, -0.7, 0.4]).as_matrix()
    moved = similarity_transform(kitti_09, 1.0, rotation, np.array([5.0, -2.0, 30.0]))
    for align in ('6dof', '7dof'):
        aligned, similarity = align_trajectory(kitti_09, moved, align)
        np.testing.assert_allclose(similarity.rotation, rotation.T, atol=1e-9)
        assert_all_zero(odometry_errors(kitti_09, aligned))
    assert odometry_errors(kitti_09, align_trajectory(kitti_09, moved, 'none')[0]).ate > 10
    # relative motion does not see a global rigid motion: segment errors and RPE are zero even unaligned
    unaligned = odometry_errors(kitti_09, moved)
    assert unaligned.t_err == pytest.approx(0, abs=1e-6) and unaligned.rpe_trans == pytest.approx(0, abs=1e-6)


def test_rotation_angle_is_the_angle_of_the_axis_angle_form():
    angles = np.array([0.0, 1e-7, 1e-3, 0.5, 2.0, np.pi - 1e-6])
    axes = np.random.default_rng(0).normal(size=(len(angles), 3))
    rotvecs = axes / np.linalg.norm(axes, axis=1, keepdims=True) * angles[:, None]
    np.testing.assert_allclose(rotation_angle(Rotation.from_rotvec(rotvecs).as_matrix()), angles, rtol=1e-6,
                               atol=1e-12)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    rotation = Rotation.from_rotvec([0.3, 1.1, -0.5]).as_matrix()
    target = 2.5 * points @ rotation.T + [1.0, 2.0, 3.0]
    found = umeyama(points, target, with_scale=True)
    assert found.scale == pytest.approx(2.5)
    np.testing.assert_allclose(found.rotation, rotation, atol=1e-12)
    np.testing.assert_allclose(found.translation, [1.0, 2.0, 3.0], atol=1e-12)
    assert umeyama(points, target, with_scale=False).scale == 1.0


def test_constant_scale_drift_gives_the_hand_computed_segment_error():
    """GT 1 m/frame along z for 300 m; prediction 1.1 m/frame (no alignment).

    A segment of length L from frame f ends at frame f + L + 1 (the first frame *beyond* L metres);
    its error is 0.1 (L + 1) m, i.e. 0.1 (L + 1) / L per metre.  Segments: L = 100 from frames
    0, 10, ..., 190 (20 of them), L = 200 from 0, ..., 90 (10); none of 300 m.
    """
    gt, pred = straight_drive(301), straight_drive(301, step=1.1)
    t_err, r_err = kitti_segment_metrics(gt, pred)
    expected = (20 * 0.1 * 101 / 100 + 10 * 0.1 * 201 / 200) / 30 * 100
    assert t_err == pytest.approx(expected, rel=1e-9)
    assert r_err == pytest.approx(0.0, abs=1e-9)


def test_constant_heading_drift_gives_the_hand_computed_rotation_error():
    """The prediction turns its head by 0.001 rad per frame: a segment of frames f..f+L+1 is off by 0.001 (L+1) rad."""
    gt = straight_drive(301)
    pred = straight_drive(301, yaw_per_frame=0.001)
    _, r_err = kitti_segment_metrics(gt, pred)
    expected = np.degrees((20 * 0.001 * 101 / 100 + 10 * 0.001 * 201 / 200) / 30) * 100
    assert r_err == pytest.approx(expected, rel=1e-9)


def test_ate_and_rpe_of_a_constant_sideways_drift():
    """Prediction drifts 0.1 m sideways per frame: frame-to-frame error 0.1 m, position error 0.1 k."""
    gt, pred = straight_drive(21), straight_drive(21, lateral=0.1)
    errors = odometry_errors(gt, pred)
    assert errors.rpe_trans == pytest.approx(0.1) and errors.rpe_rot == pytest.approx(0.0, abs=1e-12)
    assert errors.ate == pytest.approx(np.sqrt(np.mean((0.1 * np.arange(21)) ** 2)))
    assert errors.t_err is None and errors.r_err is None   # 20 m: no 100 m segment


def test_snippet_ate_is_zero_for_a_scaled_prediction_and_closed_form_for_a_skewed_one(kitti_09):
    scaled = similarity_transform(kitti_09, 0.3, np.eye(3), np.zeros(3))
    np.testing.assert_allclose(snippet_ate(kitti_09, scaled, 5), 0.0, atol=1e-9)
    # GT j (0,0,1), prediction j (1,0,1): scale 1/2, error sqrt(sum_j j^2 * a^2/(1+a^2)) / n with a = 1
    errors = snippet_ate(straight_drive(10), straight_drive(10, lateral=1.0), 3)
    np.testing.assert_allclose(errors, np.sqrt(5 * 0.5) / 3)
    assert len(errors) == 8


def test_chaining_relative_poses_reproduces_the_trajectory(kitti_09):
    relative = np.linalg.inv(kitti_09[1:]) @ kitti_09[:-1]          # X_{k+1} = T X_k
    chained = chain_poses(relative)
    np.testing.assert_allclose(chained, np.linalg.inv(kitti_09[0]) @ kitti_09, atol=1e-8)


def test_ate_and_rpe_agree_with_evo(kitti_09):
    evo_trajectory = pytest.importorskip('evo.core.trajectory')
    from evo.core import metrics
    from evo.core.units import Unit
    rng = np.random.default_rng(1)
    noisy = kitti_09.copy()
    noisy[:, :3, 3] = 0.7 * noisy[:, :3, 3] + rng.normal(0, 0.3, (len(noisy), 3))
    noisy[:, :3, :3] = noisy[:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, 0.01, (len(noisy), 3))).as_matrix()
    ours = odometry_errors(kitti_09, align_trajectory(kitti_09, noisy, '7dof')[0])
    reference = evo_trajectory.PosePath3D(poses_se3=list(kitti_09))
    estimate = evo_trajectory.PosePath3D(poses_se3=list(noisy))
    estimate.align(reference, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((reference, estimate))
    assert ours.ate == pytest.approx(ape.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)
    for relation, value in ((metrics.PoseRelation.translation_part, ours.rpe_trans),
                            (metrics.PoseRelation.rotation_angle_deg, ours.rpe_rot)):
        rpe = metrics.RPE(relation, delta=1, delta_unit=Unit.frames, all_pairs=False)
        rpe.process_data((reference, estimate))
        assert value == pytest.approx(rpe.get_statistic(metrics.StatisticsType.mean), rel=1e-6)


# ------------------------------------------------------------------ eval_odometry.py

def run_cli(*argv):
    eval_odometry.main([str(a) for a in argv])


def test_cli_writes_the_five_metrics_the_plot_and_the_aligned_prediction(kitti_09, tmp_path, capsys):
    gt_path, pred_path, out = tmp_path / 'gt.txt', tmp_path / 'pred.txt', tmp_path / 'out'
    write_poses(gt_path, kitti_09)
    write_poses(pred_path, similarity_transform(kitti_09, 0.5, Rotation.from_euler('y', 0.3).as_matrix(),
                                                np.array([1.0, 0.0, 2.0])))
    run_cli('--gt', gt_path, '--pred', pred_path, '--output-dir', out)
    printed = capsys.readouterr().out
    assert 'alignment 7dof (scale 2.0000)' in printed and 'ATE (m)' in printed
    metrics = json.loads((out / 'odometry_metrics.json').read_text())
    assert list(metrics) == ['t_err', 'r_err', 'ate', 'rpe_trans', 'rpe_rot']
    assert all(abs(value) < 1e-5 for value in metrics.values())
    np.testing.assert_allclose(read_poses(out / 'aligned_poses.txt'), kitti_09, atol=1e-6)
    assert (out / 'trajectory.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    run_cli('--gt', gt_path, '--pred', pred_path, '--output-dir', out, '--align', 'none')
    assert json.loads((out / 'odometry_metrics.json').read_text())['ate'] > 1


def test_cli_on_a_trajectory_shorter_than_100_m_reports_the_other_metrics(tmp_path, capsys):
    write_poses(tmp_path / 'gt.txt', straight_drive(21))
    write_poses(tmp_path / 'pred.txt', straight_drive(21, lateral=0.1))
    run_cli('--gt', tmp_path / 'gt.txt', '--pred', tmp_path / 'pred.txt', '--output-dir', tmp_path, '--align', 'none')
    printed = capsys.readouterr().out
    assert (f"{tmp_path / 'gt.txt'}: the trajectory is 20.0 m long, shorter than the shortest segment (100 m): "
            f"t_err and r_err are not computed") in printed
    metrics = json.loads((tmp_path / 'odometry_metrics.json').read_text())
    assert metrics['t_err'] is None and metrics['r_err'] is None and metrics['rpe_trans'] == pytest.approx(0.1)


def test_cli_bad_input_gives_one_line_naming_the_file(tmp_path):
    good, short = tmp_path / 'good.txt', tmp_path / 'short.txt'
    write_poses(good, straight_drive(5))
    write_poses(short, straight_drive(4))
    bad = tmp_path / 'bad.txt'
    bad.write_text(good.read_text().replace('\n', ' 7\n', 3).replace(' 7\n', '\n', 2))   # third line: 13 numbers
    message = one_line_error(lambda: run_cli('--gt', good, '--pred', bad))
    assert message == f"error: {bad}:3: expected 12 numbers (the top 3x4 of a camera-to-world pose), found 13"
    message = one_line_error(lambda: run_cli('--gt', good, '--pred', short))
    assert message == f"error: {short}: 4 poses, but the ground truth {good} has 5"
    message = one_line_error(lambda: run_cli('--gt', tmp_path / 'none.txt', '--pred', good))
    assert message == f"error: {tmp_path / 'none.txt'}: pose file not found"
    words = tmp_path / 'words.txt'
    words.write_text('1 0 0 0 0 1 0 0 0 0 1 x\n')
    assert f"{words}:1: not a number" in one_line_error(lambda: run_cli('--gt', words, '--pred', good))
    still = tmp_path / 'still.txt'
    write_poses(still, straight_drive(5, step=0.0))
    assert 'cannot be aligned' in one_line_error(lambda: run_cli('--gt', good, '--pred', still, '--align', '6dof'))


def test_the_bundled_ground_truth_is_kittis():
    for sequence, frames in (('09', 1591), ('10', 1201)):
        poses = read_poses(Path(BUNDLED_GT_DIR) / f'{sequence}.txt')
        assert len(poses) == frames
        np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
