"""Geometry of inverse_warp.py against closed-form answers."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from inverse_warp import (depth2flow, euler2mat, flow_warp, forward_warp, inverse_warp, inverse_warp_mof,
                          mat2euler, pixel2cam, pose_vec2mat, quat2mat, splat_depth)
from motion_field import MotionField

H, W = 48, 64
FX, FY, CX, CY = 50.0, 48.0, 31.7, 23.4


def intrinsics(batch=1, dtype=torch.float64):
    K = torch.tensor([[FX, 0, CX], [0, FY, CY], [0, 0, 1]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def texture(u, v):
    """A smooth analytic texture: 3 channels of low-frequency sinusoids, values in [0, 1]."""
    return torch.stack([0.5 + 0.25 * torch.sin(0.31 * u + 0.17 * v) + 0.2 * torch.cos(0.23 * v),
                        0.5 + 0.4 * torch.sin(0.19 * u - 0.29 * v + 1.0),
                        0.5 + 0.3 * torch.cos(0.27 * u + 0.11 * v) * torch.sin(0.13 * v)], 0)


def pixel_coords(dtype=torch.float64):
    v, u = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing='ij')
    return u, v


def plane_views(depth, t):
    """Target and reference images of a fronto-parallel plane at ``depth`` seen from X_ref = X_tgt + t.

    The plane's colour at the point seen by target pixel (u, v) is texture(u, v).
    """
    u_ref, v_ref = pixel_coords()
    x = (u_ref - CX) * (depth + t[2]) / FX - t[0]
    y = (v_ref - CY) * (depth + t[2]) / FY - t[1]
    tgt = texture(*pixel_coords()).unsqueeze(0)
    ref = texture(FX * x / depth + CX, FY * y / depth + CY).unsqueeze(0)
    return tgt, ref


INTERIOR = (slice(None), slice(None), slice(6, H - 6), slice(6, W - 6))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_identity_pose_returns_input(dtype):
    img = torch.rand(2, 3, H, W, dtype=dtype)
    depth = torch.rand(2, 1, H, W, dtype=dtype) * 10 + 1
    K = intrinsics(2, dtype)
    tol = 1e-3 if dtype == torch.float32 else 1e-8  # random depths: round-off x steep neighbours
    warped, valid = inverse_warp(img, depth, torch.zeros(2, 6, dtype=dtype), K)
    assert warped.dtype == dtype
    assert torch.allclose(warped[INTERIOR], img[INTERIOR], atol=1e-5)
    assert valid[INTERIOR].all()
    projected, valid_mof, projected_depth, computed_depth, flow = inverse_warp_mof(
        img, depth, depth * 2, MotionField.rigid(torch.zeros(2, 6, dtype=dtype), H, W), K)
    assert torch.allclose(projected[INTERIOR], img[INTERIOR], atol=1e-5)
    assert torch.allclose(projected_depth[INTERIOR], 2 * depth[INTERIOR], atol=tol)
    assert torch.allclose(computed_depth, depth, atol=tol)
    assert flow.abs().max() < 1e-3


@pytest.mark.parametrize('t', [(0.3, -0.2, 0.0), (-0.25, 0.1, 0.6)])
def test_plane_with_known_translation(t):
    depth_value = 8.0
    tgt, ref = plane_views(depth_value, t)
    depth = torch.full((1, 1, H, W), depth_value, dtype=torch.float64)
    pose = torch.tensor([[*t, 0.0, 0.0, 0.0]], dtype=torch.float64)
    warped, valid = inverse_warp(ref, depth, pose, intrinsics())
    inside = valid.bool().expand_as(warped)
    assert valid.mean() > 0.8
    error = (warped - tgt).abs()[inside]
    assert error.max() < 0.02, error.max()
    # the warp is not the identity: the reference really differs from the target
    assert (ref - tgt).abs().mean() > 0.05


def test_out_of_image_samples_contribute_nothing():
    img = torch.ones(1, 1, H, W, dtype=torch.float64)
    depth = torch.full((1, 1, H, W), 5.0, dtype=torch.float64)
    shift_px = 10.3
    pose = torch.tensor([[shift_px * 5.0 / FX, 0, 0, 0, 0, 0]], dtype=torch.float64)
    warped, valid = inverse_warp(img, depth, pose, intrinsics())
    outside = W - 1 - math.floor(shift_px)
    assert valid[..., outside:].sum() == 0
    assert warped[..., outside:].abs().max() == 0
    assert valid[..., :outside - 1].all()


def test_euler_round_trip_and_scipy_agreement():
    angles = torch.tensor([[0.1, -0.2, 0.3], [-1.2, 0.7, 2.5], [0.0, 0.0, 0.0], [3.0, -1.4, -2.9]],
                          dtype=torch.float64)
    rot = euler2mat(angles)
    expected = Rotation.from_euler('XYZ', angles.numpy()).as_matrix()
    assert np.allclose(rot.numpy(), expected, atol=1e-12)
    assert torch.allclose(mat2euler(rot), angles, atol=1e-9)
    random_rot = torch.from_numpy(Rotation.random(20, random_state=1).as_matrix())
    assert torch.allclose(euler2mat(mat2euler(random_rot)), random_rot, atol=1e-9)


def test_mat2euler_gimbal_lock():
    angles = torch.tensor([[0.0, math.pi / 2, 0.4]], dtype=torch.float64)
    rot = euler2mat(angles)
    assert torch.allclose(euler2mat(mat2euler(rot)), rot, atol=1e-9)


def test_quat2mat_orthonormal_and_matches_scipy():
    quat = torch.randn(10, 3, dtype=torch.float64)
    rot = quat2mat(quat)
    identity = torch.eye(3, dtype=torch.float64).expand(10, 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(10, dtype=torch.float64))
    scipy_quat = np.concatenate([quat.numpy(), np.ones((10, 1))], axis=1)  # scalar-last
    assert np.allclose(rot.numpy(), Rotation.from_quat(scipy_quat).as_matrix(), atol=1e-12)


def test_pose_vec2mat_layout():
    vec = torch.tensor([[1.0, 2.0, 3.0, 0.1, 0.2, 0.3]], dtype=torch.float64)
    mat = pose_vec2mat(vec)
    assert mat.shape == (1, 3, 4)
    assert torch.equal(mat[0, :, 3], vec[0, :3])
    assert torch.allclose(mat[:, :, :3], euler2mat(vec[:, 3:]))
    assert torch.allclose(pose_vec2mat(vec, 'quat')[:, :, :3], quat2mat(vec[:, 3:]))


def test_mof_with_broadcast_ego_pose_equals_inverse_warp():
    img = torch.rand(2, 3, H, W, dtype=torch.float64)
    depth = torch.rand(2, 1, H, W, dtype=torch.float64) * 5 + 3
    pose = torch.tensor([[0.2, -0.05, 0.4, 0.02, -0.03, 0.01],
                         [-0.1, 0.02, -0.3, -0.01, 0.04, 0.02]], dtype=torch.float64)
    field = MotionField.rigid(pose, H, W)
    expected, expected_valid = inverse_warp(img, depth, pose, intrinsics(2))
    projected, valid, _, _, _ = inverse_warp_mof(img, depth, depth, field, intrinsics(2))
    assert torch.allclose(projected, expected, atol=1e-10)
    assert torch.equal(valid, expected_valid)


def test_object_translation_changes_only_its_mask():
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    depth = torch.full((1, 1, H, W), 6.0, dtype=torch.float64)
    pose = torch.tensor([[0.1, 0.0, 0.3, 0.0, 0.01, 0.0]], dtype=torch.float64)
    field = MotionField.rigid(pose, H, W)
    mask = torch.zeros(1, 1, H, W, dtype=torch.float64)
    mask[..., 15:30, 20:40] = 1
    moved = MotionField.with_objects(pose, torch.tensor([0.4, 0.0, -0.5], dtype=torch.float64).view(1, 3, 1, 1) * mask)
    base = inverse_warp_mof(img, depth, depth, field, intrinsics())
    with_object = inverse_warp_mof(img, depth, depth, moved, intrinsics())
    changed = (base[0] - with_object[0]).abs().amax(1, keepdim=True) > 1e-9
    assert changed.any()
    assert not (changed & (mask == 0)).any()
    assert torch.equal(base[4] * (1 - mask), with_object[4] * (1 - mask))


def test_forward_warp_plane_gives_analytic_depth():
    depth_value = 10.0
    depth = torch.full((1, 1, H, W), depth_value, dtype=torch.float64)
    img = texture(*pixel_coords()).unsqueeze(0)
    pose = torch.tensor([[0.4, 0.1, -1.5, 0.0, 0.0, 0.0]], dtype=torch.float64)
    img_w, depth_w, valid = forward_warp(img, depth, pose, intrinsics())
    valid = valid.bool()
    assert valid.float().mean() > 0.5
    assert torch.allclose(depth_w[valid], torch.full_like(depth_w[valid], depth_value - 1.5), atol=1e-9)
    assert (depth_w[~valid] == 0).all() and (img_w[~valid.expand_as(img_w)] == 0).all()


def splat_one_point_at_a_time(depth, transform, K, upscale):
    """Reference z-buffer: every sub-sample back-projected, moved, projected and kept if nearest."""
    h, w = depth.shape
    K_up = K.copy()
    K_up[:2] *= upscale
    K_up[:2, 2] += 0.5 * (upscale - 1)
    K_up_inv = np.linalg.inv(K_up)
    zbuffer = np.zeros((h, w))
    for row in range(h * upscale):
        for col in range(w * upscale):
            point = depth[row // upscale, col // upscale] * K_up_inv @ np.array([col, row, 1.0])
            x, y, z = K @ (transform[:, :3] @ point + transform[:, 3])
            if z <= 1e-3:
                continue
            u, v = np.round(x / z), np.round(y / z)
            if 0 <= u <= w - 1 and 0 <= v <= h - 1:
                zbuffer[int(v), int(u)] = max(zbuffer[int(v), int(u)], 1 / z)
    return np.where(zbuffer > 0, 1 / np.maximum(zbuffer, 1e-12), 0)


def test_splat_depth_matches_point_by_point_reference():
    generator = torch.Generator().manual_seed(3)
    h, w = 12, 16
    depth = 2 + 6 * torch.rand(1, 1, h, w, generator=generator, dtype=torch.float64)
    pose = torch.tensor([[0.3, -0.1, 0.8, 0.02, -0.05, 0.03]], dtype=torch.float64)
    K = torch.tensor([[[14.0, 0, 7.6], [0, 13.0, 5.3], [0, 0, 1]]], dtype=torch.float64)
    transform = pose_vec2mat(pose)
    depth_w, valid = splat_depth(depth, transform, K, upscale=3)
    expected = splat_one_point_at_a_time(depth[0, 0].numpy(), transform[0].numpy(), K[0].numpy(), 3)
    assert 0.3 < valid.mean() < 1
    np.testing.assert_allclose(depth_w[0, 0].numpy(), expected, rtol=1e-9)
    assert ((expected > 0) == valid[0, 0].bool().numpy()).all()


def test_forward_warp_keeps_nearer_surface_and_marks_holes():
    depth = torch.full((1, 1, H, W), 20.0, dtype=torch.float64)
    depth[..., 10:30, 20:36] = 4.0
    img = torch.zeros(1, 1, H, W, dtype=torch.float64)
    img[..., 10:30, 20:36] = 1.0
    tx = 0.4  # near patch moves by FX*tx/4 = 5 px, far background by 1 px
    pose = torch.tensor([[tx, 0, 0, 0, 0, 0]], dtype=torch.float64)
    img_w, depth_w, valid = forward_warp(img, depth, pose, intrinsics())
    # the patch lands 5 px to the right and hides the background there
    assert torch.allclose(depth_w[..., 12:28, 27:39], torch.full((1, 1, 16, 12), 4.0, dtype=torch.float64))
    assert torch.allclose(img_w[..., 12:28, 27:39], torch.ones(1, 1, 16, 12, dtype=torch.float64))
    # disocclusion behind the patch's left edge: background lands 1 px right, patch 5 px: a hole
    assert valid[..., 12:28, 21:24].sum() == 0
    # the left image border receives nothing
    assert valid[..., 0].sum() == 0


def test_flow_warp_integer_shift_is_exact():
    img = torch.rand(2, 3, H, W, dtype=torch.float64)
    flow = torch.zeros(2, 2, H, W, dtype=torch.float64)
    flow[:, 0] = 3
    flow[:, 1] = -2
    warped, valid = flow_warp(img, flow)
    assert torch.allclose(warped[:, :, 2:, :W - 3], img[:, :, :H - 2, 3:], rtol=0, atol=1e-12)
    assert valid[:, :, 2:, :W - 3].all()
    assert valid[:, :, :2].sum() == 0 and valid[:, :, :, W - 3:].sum() == 0


def test_depth2flow_matches_manual_projection():
    depth = torch.rand(1, 1, H, W, dtype=torch.float64) * 10 + 2
    pose = torch.tensor([[0.3, -0.1, 0.8, 0.02, -0.04, 0.03]], dtype=torch.float64)
    flow = depth2flow(depth, pose, intrinsics())
    K = intrinsics()[0].numpy()
    rot = Rotation.from_euler('XYZ', pose[0, 3:].numpy()).as_matrix()
    u, v = (c.numpy() for c in pixel_coords())
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    points = rot @ (rays * depth.numpy().ravel()) + pose[0, :3].numpy()[:, None]
    projected = K @ points
    expected_u = (projected[0] / projected[2]).reshape(H, W) - u
    expected_v = (projected[1] / projected[2]).reshape(H, W) - v
    assert np.allclose(flow[0, 0].numpy(), expected_u, atol=1e-9)
    assert np.allclose(flow[0, 1].numpy(), expected_v, atol=1e-9)


def test_gradients_reach_depth_and_pose_through_mof():
    img = texture(*pixel_coords()).unsqueeze(0)
    tgt_depth = torch.full((1, 1, H, W), 7.0, dtype=torch.float64, requires_grad=True)
    ref_depth = torch.full((1, 1, H, W), 7.0, dtype=torch.float64, requires_grad=True)
    pose = torch.tensor([[0.1, 0.05, 0.2, 0.01, 0.02, -0.01]], dtype=torch.float64, requires_grad=True)
    obj_t = torch.zeros(1, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    field = MotionField.with_objects(pose, obj_t.expand(1, 3, H, W))
    projected, valid, projected_depth, computed_depth, _ = inverse_warp_mof(
        img, tgt_depth, ref_depth, field, intrinsics())
    loss = ((projected - img).abs() * valid).mean() + ((computed_depth - projected_depth).abs() * valid).mean()
    loss.backward()
    for name, tensor in [('tgt_depth', tgt_depth), ('ref_depth', ref_depth), ('pose', pose), ('obj_t', obj_t)]:
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_pixel2cam_accepts_3d_depth():
    depth = torch.rand(2, H, W, dtype=torch.float64) + 1
    K_inv = torch.linalg.inv(intrinsics(2))
    points = pixel2cam(depth, K_inv)
    assert points.shape == (2, 3, H, W)
    assert torch.allclose(points[:, 2], depth)
    assert torch.allclose(points, pixel2cam(depth.unsqueeze(1), K_inv))


@pytest.mark.parametrize('call, message', [
    (lambda: inverse_warp(torch.rand(1, 3, H, W), torch.rand(1, 2, H, W), torch.zeros(1, 6), intrinsics(1, torch.float32)),
     r'depth must have shape \[\*,1,\*,\*\]'),
    (lambda: inverse_warp(torch.rand(1, 3, H, W), torch.rand(1, 1, H, W), torch.zeros(1, 7), intrinsics(1, torch.float32)),
     r'pose must have shape \[1,6\]'),
    (lambda: inverse_warp(torch.rand(1, 3, H, W - 1), torch.rand(1, 1, H, W), torch.zeros(1, 6), intrinsics(1, torch.float32)),
     r'img must have shape'),
    (lambda: inverse_warp_mof(torch.rand(1, 3, H, W), torch.rand(1, 1, H, W), torch.rand(1, 1, H, W),
                              MotionField(torch.zeros(1, 3), torch.zeros(1, 3, H, W - 1)), intrinsics(1, torch.float32)),
     r'motion_field.translation must have shape \[1,3,48,64\]'),
    (lambda: inverse_warp_mof(torch.rand(1, 3, H, W), torch.rand(1, 1, H, W), torch.rand(1, 1, H, W),
                              MotionField(torch.zeros(1, 6), torch.zeros(1, 3, H, W)), intrinsics(1, torch.float32)),
     r'motion_field.rotation must have shape \[1,3\]'),
    (lambda: flow_warp(torch.rand(1, 3, H, W), torch.zeros(1, 3, H, W)), r'flow must have shape'),
    (lambda: pose_vec2mat(torch.zeros(1, 6), 'axis-angle'), r'rotation_mode must be one of'),
])
def test_bad_shapes_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
