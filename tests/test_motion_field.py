"""MotionField: one rotation per pair and a translation per pixel."""
import pytest
import torch

from inverse_warp import inverse_warp, inverse_warp_mof
from motion_field import MotionField
from pairs import PairLayout

H, W = 5, 6


def test_rigid_and_with_objects_put_the_ego_rotation_on_the_pair_and_add_object_translations():
    poses = torch.tensor([[0.1, 0.2, 0.3, 0.01, 0.02, 0.03], [-0.1, 0.0, 0.5, -0.01, 0.0, 0.02]])
    rigid = MotionField.rigid(poses, H, W)
    assert rigid.shape == (2, H, W) and torch.equal(rigid.rotation, poses[:, 3:])
    assert torch.equal(rigid.translation, poses[:, :3, None, None].expand(2, 3, H, W))
    objects = torch.zeros(2, 3, H, W)
    objects[1, :, 1:3, 2:4] = torch.tensor([0.5, 0.0, -0.2]).view(3, 1, 1)
    field = MotionField.with_objects(poses, objects)
    assert torch.equal(field.rotation, poses[:, 3:])
    assert torch.equal(field.translation, rigid.translation + objects)


def test_from_channels_reads_the_six_channel_layout():
    pose = torch.tensor([[0.1, 0.2, 0.3, 0.01, 0.02, 0.03]])
    channels = pose[:, :, None, None].expand(1, 6, H, W).clone()
    channels[:, :3, 0, 0] += 1.0
    field = MotionField.from_channels(channels)
    assert torch.equal(field.rotation, pose[:, 3:]) and torch.equal(field.translation, channels[:, :3])


def test_apply_selects_the_same_rows_of_rotation_and_translation():
    layout = PairLayout(num_refs=1)
    poses = torch.arange(12.0).view(2, 6)
    field = MotionField.rigid(poses, H, W).apply(layout.reverse)
    assert torch.equal(field.rotation, poses.flip(0)[:, 3:])
    assert torch.equal(field.translation[:, :, 0, 0], poses.flip(0)[:, :3])
    forward = MotionField.rigid(poses, H, W).apply(layout.forward_half)
    assert forward.shape == (1, H, W) and torch.equal(forward.rotation, poses[:1, 3:])


def test_rigid_field_warps_as_the_pose():
    img = torch.rand(1, 3, H, W, dtype=torch.float64)
    depth = torch.full((1, 1, H, W), 5.0, dtype=torch.float64)
    K = torch.tensor([[[6.0, 0, 2.5], [0, 6.0, 2.0], [0, 0, 1]]], dtype=torch.float64)
    pose = torch.tensor([[0.05, -0.02, 0.1, 0.01, -0.02, 0.005]], dtype=torch.float64)
    for mode in ('euler', 'quat'):
        expected, expected_valid = inverse_warp(img, depth, pose, K, rotation_mode=mode)
        warped, in_image, _, _, _ = inverse_warp_mof(img, depth, depth, MotionField.rigid(pose, H, W), K,
                                                     rotation_mode=mode)
        assert torch.allclose(warped, expected, atol=1e-12) and torch.equal(in_image, expected_valid)


def test_a_tensor_in_place_of_a_motion_field_is_one_clear_error():
    img = torch.rand(1, 3, H, W)
    depth = torch.ones(1, 1, H, W)
    with pytest.raises(TypeError, match=r'^motion_field must be a MotionField, got Tensor$'):
        inverse_warp_mof(img, depth, depth, torch.zeros(1, 6, H, W), torch.eye(3)[None])
