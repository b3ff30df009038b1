"""Loss functions on constructed inputs with known answers."""
import math

import numpy as np
import pytest
import torch

from inverse_warp import euler2mat, mat2euler
from loss_functions import (MOF_ALPHA, masked_mean, motion_field_consistency_loss, object_size_loss, pairwise_masked_means,
                            photometric_and_geometry_maps, smooth_loss, ssim_loss)
from motion_field import MotionField
from pairs import PairLayout

H, W = 24, 32
PAIR = PairLayout(num_refs=1)   # one (target, reference) pair: rows 0 (forward) and 1 (backward)


def constant_field(pose, h=H, w=W):
    """The rigid MotionField of ``[N,6]`` poses, as writable copies (rotation ``[N,3]``, translation ``[N,3,H,W]``)."""
    field = MotionField.rigid(pose, h, w)
    return MotionField(field.rotation.clone(), field.translation.clone())


def test_identical_images_give_zero_photometric_and_ssim_loss():
    img = torch.rand(2, 3, H, W) * 2 - 1
    depth = torch.rand(2, 1, H, W) + 1
    valid = torch.ones(2, 1, H, W)
    diff_img, diff_depth, mask = photometric_and_geometry_maps(img, img.flip(-1), img, valid, depth, depth,
                                                               with_ssim=True, with_mask=True, with_auto_mask=False)
    assert diff_img.abs().max() < 1e-6 and diff_depth.abs().max() == 0
    assert masked_mean(diff_img, mask) < 1e-6


def test_photometric_error_is_clamped_and_masked_mean_is_exact():
    view = torch.full((1, 3, H, W), -1.0)
    warped = torch.full((1, 3, H, W), 1.0)
    warped[..., :, : W // 2] = -0.5  # difference 0.5 on the left half, 2 (clamped to 1) on the right
    depth = torch.ones(1, 1, H, W)
    valid = torch.ones(1, 1, H, W)
    diff_img, _, _ = photometric_and_geometry_maps(view, view, warped, valid, depth, depth, False, False, False)
    assert masked_mean(diff_img, valid) == pytest.approx(0.75)
    left = torch.zeros(1, 1, H, W)
    left[..., : W // 2] = 1
    assert masked_mean(diff_img, left) == pytest.approx(0.5)
    assert masked_mean(diff_img, torch.zeros_like(valid)) == 0


def test_geometry_error_and_mask_weighting():
    img = torch.zeros(1, 3, H, W)
    warped = torch.full((1, 3, H, W), 0.4)
    computed, projected = torch.full((1, 1, H, W), 3.0), torch.full((1, 1, H, W), 1.0)
    diff_img, diff_depth, _ = photometric_and_geometry_maps(img, img, warped, torch.ones(1, 1, H, W), computed,
                                                            projected, with_ssim=False, with_mask=True,
                                                            with_auto_mask=False)
    assert torch.allclose(diff_depth, torch.full_like(diff_depth, 0.5))
    assert torch.allclose(diff_img, torch.full_like(diff_img, 0.4 * 0.5))


def test_auto_mask_keeps_only_pixels_the_warp_improves():
    view = torch.zeros(1, 3, H, W)
    source = torch.full((1, 3, H, W), 0.5)
    warped = torch.full((1, 3, H, W), 0.2)
    warped[..., :, :8] = 0.9  # worse than not warping at all
    ones = torch.ones(1, 1, H, W)
    _, _, valid = photometric_and_geometry_maps(view, source, warped, ones, ones, ones, False, False, True)
    assert valid[..., :8].sum() == 0 and valid[..., 8:].all()


def test_only_obj_restricts_to_instances():
    ones = torch.ones(1, 1, H, W)
    obj = torch.zeros(1, 1, H, W)
    obj[..., 5:10, 5:10] = 1
    img = torch.zeros(1, 3, H, W)
    _, _, valid = photometric_and_geometry_maps(img, img, img, ones, ones, ones, False, False, False, obj_mask=obj)
    assert torch.equal(valid, obj)


def test_ssim_symmetric_zero_for_identical_positive_otherwise():
    x, y = torch.rand(2, 3, H, W), torch.rand(2, 3, H, W)
    assert torch.allclose(ssim_loss(x, y), ssim_loss(y, x))
    assert ssim_loss(x, x).abs().max() < 1e-5
    assert ssim_loss(x, y).mean() > 0.1
    assert ssim_loss(x, y).shape == x.shape


def test_pairwise_masked_means_per_pair():
    values = torch.cat([torch.full((2, 1, H, W), 1.0), torch.full((2, 1, H, W), 3.0)])
    valid = torch.ones(4, 1, H, W)
    valid[2:, ..., :W // 2] = 0
    assert torch.allclose(pairwise_masked_means(values, valid, 2), torch.tensor([1.0, 3.0]))


def test_smoothness_zero_for_constant_and_positive_for_edges():
    img = torch.rand(2, 3, H, W)
    assert smooth_loss(torch.full((2, 1, H, W), 5.0), img) == 0
    step = torch.ones(2, 1, H, W)
    step[..., W // 2:] = 2
    flat_img = torch.zeros(2, 3, H, W)
    # edge-aware: the same depth edge costs less where the image has an edge too
    edge_img = torch.zeros(2, 3, H, W)
    edge_img[..., W // 2:] = 1
    assert smooth_loss(step, flat_img) > smooth_loss(step, edge_img) > 0


def test_object_size_loss_zero_when_depth_fits_height():
    fy, prior, rows = 100.0, torch.tensor(1.5), 20
    masks = torch.zeros(1, 2, H * 2, W)
    masks[0, 0, 10:10 + rows, 4:12] = 1
    depth = torch.full((1, 1, H * 2, W), 30.0)
    depth[masks[:, :1] > 0] = fy * 1.5 / rows
    assert object_size_loss(depth, masks, torch.tensor([fy]), prior) == pytest.approx(0.0, abs=1e-6)
    depth[masks[:, :1] > 0] = 2 * fy * 1.5 / rows
    expected = (fy * 1.5 / rows) / depth.mean()
    assert object_size_loss(depth, masks, torch.tensor([fy]), prior) == pytest.approx(expected.item(), rel=1e-5)


def test_object_size_loss_gradient_reaches_height_prior_and_is_zero_without_instances():
    prior = torch.tensor(0.02, requires_grad=True)
    masks = torch.zeros(1, 1, H, W)
    masks[0, 0, 2:8, 2:8] = 1
    loss = object_size_loss(torch.full((1, 1, H, W), 10.0), masks, torch.tensor([50.0]), prior)
    loss.backward()
    assert prior.grad is not None and prior.grad != 0
    empty = object_size_loss(torch.full((1, 1, H, W), 10.0), torch.zeros(1, 3, H, W), torch.tensor([50.0]), prior)
    assert empty == 0


def test_motion_field_consistency_zero_for_inverse_fields_and_positive_otherwise():
    pose = torch.tensor([[0.3, -0.1, 1.2, 0.02, -0.05, 0.03]], dtype=torch.float64)
    rot = euler2mat(pose[:, 3:])
    inverse_rot = rot.transpose(1, 2)
    inverse_t = -(inverse_rot @ pose[:, :3, None])[..., 0]
    inverse = torch.cat([inverse_t, mat2euler(inverse_rot)], 1)
    fields = constant_field(torch.cat([pose, inverse]))
    flows = torch.zeros(2, 2, H, W, dtype=torch.float64)
    ones = torch.ones(2, 1, H, W, dtype=torch.float64)
    zero_geometry_error = torch.zeros(2, 1, H, W, dtype=torch.float64)
    loss = motion_field_consistency_loss(fields, flows, zero_geometry_error, ones, PAIR)
    assert loss == pytest.approx(0.0, abs=1e-12)
    wrong = constant_field(torch.cat([pose, pose]))
    assert motion_field_consistency_loss(wrong, flows, zero_geometry_error, ones, PAIR) > 0.5


def official_smoothness(depth, img):
    """The official ``get_smooth_loss``: roll-based differences, first column/row zeroed, mean over H*W."""
    norm = depth / (depth.mean(dim=(2, 3), keepdim=True) + 1e-7)
    grad_x = (norm - torch.roll(norm, 1, dims=3)).abs()
    grad_y = (norm - torch.roll(norm, 1, dims=2)).abs()
    grad_x[..., 0] = 0
    grad_y[..., 0, :] = 0
    img_x = (img - torch.roll(img, 1, dims=3)).abs().mean(1, keepdim=True)
    img_y = (img - torch.roll(img, 1, dims=2)).abs().mean(1, keepdim=True)
    return (grad_x * torch.exp(-img_x)).mean() + (grad_y * torch.exp(-img_y)).mean()


def test_smoothness_equals_the_official_normalisation_on_a_known_map():
    depth = torch.tensor([[1., 2., 4.], [1., 1., 2.]], dtype=torch.float64).reshape(1, 1, 2, 3)
    img = torch.zeros(1, 3, 2, 3, dtype=torch.float64)
    img[..., 2] = 1.0
    # by hand: mean depth 11/6; x-differences |1-2|, |2-4|, |1-1|, |1-2| (weights 1, e^-1, 1, e^-1),
    # y-differences |1-1|, |2-1|, |4-2| (weight 1); each sum divided by all 6 pixels
    scale = 1 / (11 / 6 + 1e-7)
    expected = scale * ((1 + 2 * math.exp(-1) + 0 + math.exp(-1)) + (0 + 1 + 2)) / 6
    assert smooth_loss(depth, img).item() == pytest.approx(expected, rel=1e-12)
    maps, imgs = torch.rand(2, 1, 5, 7, dtype=torch.float64) + 0.5, torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert smooth_loss(maps, imgs).item() == pytest.approx(official_smoothness(maps, imgs).item(), rel=1e-12)




def test_motion_field_consistency_uses_the_official_cycle_order():
    pose_ab = torch.tensor([[0.3, -0.1, 1.2, 0.05, -0.08, 0.03]], dtype=torch.float64)
    pose_ba = torch.tensor([[-0.5, 0.2, -0.7, 0.02, 0.09, -0.04]], dtype=torch.float64)
    fields = constant_field(torch.cat([pose_ab, pose_ba]))
    flows = torch.zeros(2, 2, H, W, dtype=torch.float64)
    ones = torch.ones(2, 1, H, W, dtype=torch.float64)
    loss = motion_field_consistency_loss(fields, flows, torch.zeros_like(ones), ones, PAIR)

    rot_ab, rot_ba = euler2mat(pose_ab[:, 3:])[0].numpy(), euler2mat(pose_ba[:, 3:])[0].numpy()
    t_ab, t_ba = pose_ab[0, :3].numpy(), pose_ba[0, :3].numpy()
    eye = np.eye(3)
    rotation = ((rot_ab @ rot_ba - eye) ** 2).mean() / (((rot_ab - eye) ** 2).mean() + ((rot_ba - eye) ** 2).mean())
    translation = ((rot_ab @ t_ba + t_ab) ** 2).sum() / ((t_ab ** 2).sum() + (t_ba ** 2).sum())
    assert loss.item() == pytest.approx(rotation + MOF_ALPHA * translation, rel=1e-10)
    reversed_order = ((rot_ba @ t_ab + t_ba) ** 2).sum() / ((t_ab ** 2).sum() + (t_ba ** 2).sum())
    assert abs(translation - reversed_order) > 1e-3   # the test tells the two orders apart


def test_motion_field_consistency_sends_no_gradient_through_the_flow():
    pose_ab = torch.tensor([[0.3, -0.1, 1.2, 0.05, -0.08, 0.03]], dtype=torch.float64)
    pose_ba = torch.tensor([[-0.5, 0.2, -0.7, 0.02, 0.09, -0.04]], dtype=torch.float64)
    fields = constant_field(torch.cat([pose_ab, pose_ba]))
    fields.translation[1, :, :, W // 2:] += 0.3        # a field that varies, so where it is sampled matters
    fields.rotation.requires_grad_()
    fields.translation.requires_grad_()
    flows = torch.full((2, 2, H, W), 1.5, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(2, 1, H, W, dtype=torch.float64)
    motion_field_consistency_loss(fields, flows, torch.zeros_like(ones), ones, PAIR).backward()
    assert flows.grad is None
    assert fields.rotation.grad.abs().sum() > 0 and fields.translation.grad.abs().sum() > 0


def test_motion_field_consistency_is_taken_on_the_forward_pairs_only():
    pose_ab = torch.tensor([[0.3, -0.1, 1.2, 0.05, -0.08, 0.03]], dtype=torch.float64)
    pose_ba = torch.tensor([[-0.5, 0.2, -0.7, 0.02, 0.09, -0.04]], dtype=torch.float64)
    fields = constant_field(torch.cat([pose_ab, pose_ba]))
    fields.translation[1, :, :H // 2] += 0.4
    flows = torch.zeros(2, 2, H, W, dtype=torch.float64)
    valid = torch.ones(2, 1, H, W, dtype=torch.float64)
    errors = torch.zeros_like(valid)
    loss = motion_field_consistency_loss(fields, flows, errors, valid, PAIR)
    backward_changed = valid.clone()
    backward_changed[1, :, H // 2:] = 0            # the reverse (target -> reference) pair's own mask is not used
    assert motion_field_consistency_loss(fields, flows, errors, backward_changed, PAIR) == loss
    forward_changed = valid.clone()
    forward_changed[0, :, H // 2:] = 0
    assert motion_field_consistency_loss(fields, flows, errors, forward_changed, PAIR) != loss
