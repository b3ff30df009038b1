"""Metric scale from the camera height: the robust road-plane fit and its use by test_disp.py."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import ground_plane
import test_disp
from data import synthetic
from kitti_eval.metric_scale import frame_intrinsics, scale_to_metric
from models import ModelConfig

HEIGHT, WIDTH = 64, 224


@pytest.fixture(scope='module')
def street():
    """A synthetic scene (renderer depth, exact camera poses) with cars on the road."""
    return synthetic.render_scene(seed=0, index=1, height=HEIGHT, width=WIDTH, frames=3, min_cars=3)


def plane_with_outliers(height, normal, count=3000, outlier_fraction=0.3, seed=0):
    """Points on ``normal . X = height`` (camera frame) ahead of the camera, plus boxes of outliers."""
    rng = np.random.default_rng(seed)
    u, w = rng.uniform(-6, 6, count), rng.uniform(4, 30, count)
    basis = np.linalg.svd(normal[None])[2][1:]  # two directions in the plane
    points = height * normal + u[:, None] * basis[0] + w[:, None] * basis[1]
    points = points[points[:, 2] > 1]
    outliers = rng.uniform([-6, -2, 4], [6, height * 0.6, 30], (int(outlier_fraction * len(points)), 3))
    return np.concatenate([points, outliers])


def test_ransac_recovers_a_tilted_plane_among_outliers():
    normal = Rotation.from_euler('xz', [4.0, -3.0], degrees=True).apply([0.0, 1.0, 0.0])
    fit = ground_plane.fit_ground_plane(plane_with_outliers(1.3, normal))
    assert fit is not None
    assert fit.height == pytest.approx(1.3, rel=1e-4)  # the few outliers that lie on the plane stay in
    np.testing.assert_allclose(fit.normal, normal, atol=1e-4)
    assert 0.7 < fit.inlier_fraction < 0.8  # the outliers are rejected


def test_depth_noise_along_the_rays_does_not_bias_the_height(street):
    """10 % per-pixel depth noise: the disparity fit stays within 2 % (a point-to-plane fit was 6 % low)."""
    noisy = street.depths * np.exp(np.random.default_rng(0).normal(0, 0.1, street.depths.shape))
    heights = [ground_plane.fit_ground_plane(ground_plane.road_points(d, street.K)).height for d in noisy]
    assert np.median(heights) == pytest.approx(np.median(-street.cam_to_world[:, 1, 3]), rel=0.02)


def test_planes_far_from_the_vertical_are_not_ground():
    wall = plane_with_outliers(10.0, np.array([0.0, 0.0, 1.0]), outlier_fraction=0.0)  # fronto-parallel wall
    assert ground_plane.fit_ground_plane(wall[wall[:, 1] > 0]) is None
    assert ground_plane.fit_ground_plane(np.zeros((10, 3))) is None  # too few points


def test_fit_recovers_the_synthetic_camera_height_from_gt_depth(street):
    for k in range(street.frames):
        camera_height = -street.cam_to_world[k, 1, 3]  # the road is the world plane y = 0
        fit = ground_plane.fit_ground_plane(ground_plane.road_points(street.depths[k], street.K))
        assert fit.height == pytest.approx(camera_height, rel=0.02)
        # the fitted normal is the world's vertical seen from the (pitched, yawed) camera
        vertical_in_camera = street.cam_to_world[k, :3, :3].T @ np.array([0.0, 1.0, 0.0])
        assert np.degrees(np.arccos(np.clip(fit.normal @ vertical_in_camera, -1, 1))) < 1.0


def test_scale_undoes_an_unknown_depth_scale(street):
    depth = street.depths[0] * 0.37
    scale = ground_plane.camera_height_scale(depth, street.K, camera_height=1.65)
    assert scale == pytest.approx(1 / 0.37, rel=0.02)
    assert np.isnan(ground_plane.camera_height_scale(np.zeros_like(depth), street.K))  # no valid pixel


def test_sequence_scales_are_group_medians_and_failed_fits_fall_back():
    per_image = np.array([1.0, 2.0, np.nan, 6.0, 5.0])
    groups = ['a', 'a', 'a', 'b', 'b']
    np.testing.assert_allclose(ground_plane.sequence_scales(per_image, groups), [1.5, 1.5, 1.5, 5.5, 5.5])
    assert np.isnan(ground_plane.sequence_scales([np.nan], ['c'])).all()


def test_metric_scales_per_image_and_per_sequence(street):
    depths = street.depths * np.array([0.5, 0.5, 2.0])[:, None, None]
    image_scales, per_image = ground_plane.metric_scales(depths, street.K, ['s'] * 3, mode='image')
    np.testing.assert_allclose(image_scales * depths.mean((1, 2)), street.depths.mean((1, 2)), rtol=0.02)
    sequence, _ = ground_plane.metric_scales(depths, street.K, ['s'] * 3, mode='sequence')
    np.testing.assert_allclose(sequence, np.median(per_image))
    with pytest.raises(ValueError, match='no ground plane found'):
        ground_plane.metric_scales(np.zeros_like(depths), street.K, ['s'] * 3)


@pytest.fixture(scope='module')
def raw_drive(tmp_path_factory):
    """A 3-frame synthetic raw-KITTI drive: (root, list entries)."""
    root = tmp_path_factory.mktemp('raw')
    synthetic.write_raw_kitti([synthetic.render_scene(seed=0, index=0, height=HEIGHT, width=WIDTH, frames=3)], root)
    return root, (root / 'test_files.txt').read_text().split()


def test_frame_intrinsics_rescale_the_calibration_to_the_network_size(raw_drive):
    root, entries = raw_drive
    K = synthetic.kitti_like_intrinsics(HEIGHT, WIDTH)
    np.testing.assert_allclose(frame_intrinsics(root, entries[0], HEIGHT, WIDTH), K, atol=1e-6)
    doubled = frame_intrinsics(root, entries[0], HEIGHT * 2, WIDTH * 2)
    np.testing.assert_allclose(doubled[:2, :2], 2 * K[:2, :2], atol=1e-6)
    np.testing.assert_allclose(doubled[:2, 2], 2 * K[:2, 2] + 0.5, atol=1e-6)  # pixel centres: (u + 0.5) * 2 - 0.5


def test_test_disp_camera_height_scaling_makes_depth_metric(raw_drive, tmp_path, monkeypatch):
    """test_disp.py with a stand-in network predicting the renderer's depth at a third of its scale."""
    root, entries = raw_drive
    dense = np.stack([np.load(synthetic.raw_gt_depth_path(root, e)) for e in entries])
    unscaled = np.where(dense > 0, dense, 200.0) / 3

    class ThirdScaleNet:
        calls = 0

        def __call__(self, images):
            start, ThirdScaleNet.calls = ThirdScaleNet.calls, ThirdScaleNet.calls + len(images)
            return torch.from_numpy(1 / unscaled[start:start + len(images), None]).float()

    monkeypatch.setattr(test_disp, 'load_depth_network',
                        lambda args, device: (ThirdScaleNet(), ModelConfig(img_height=HEIGHT, img_width=WIDTH)))
    out = tmp_path / 'out'
    test_disp.main(['--pretrained-dispnet', 'unused', '--dataset-dir', str(root), '--dataset-list',
                    str(root / 'test_files.txt'), '--output-dir', str(out), '--img-height', str(HEIGHT),
                    '--img-width', str(WIDTH), '--device', 'cpu', '--no-progress', '--scale-from', 'camera-height',
                    '--scale-per', 'image'])
    np.testing.assert_allclose(np.load(out / 'camera_height_scales.npy'), 3.0, rtol=0.02)
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['abs_rel'] < 0.03  # metric without median scaling (unscaled it would be 0.67)
    assert 'no median scaling' in (out / 'metrics.txt').read_text()


def test_scale_to_metric_refuses_a_non_positive_camera_height(raw_drive):
    root, entries = raw_drive
    with pytest.raises(ValueError, match='--camera-height'):
        scale_to_metric(np.ones((len(entries), HEIGHT, WIDTH), np.float32), entries, root, camera_height=0)
