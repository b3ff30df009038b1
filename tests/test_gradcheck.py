"""torch.autograd.gradcheck on the warps: analytic gradients equal finite differences (float64, tiny sizes).

Small sub-pixel motions of random images keep the samples away from the bilinear kinks at integer
pixel positions and from the image border, where the warps are not differentiable.
"""
import pytest
import torch
from torch.autograd import gradcheck

from inverse_warp import depth2flow, flow_warp, forward_warp, inverse_warp, inverse_warp_mof
from motion_field import MotionField

H, W = 6, 7
K = torch.tensor([[[8.0, 0.0, 3.1], [0.0, 7.5, 2.6], [0.0, 0.0, 1.0]]], dtype=torch.float64)
POSE = torch.tensor([[0.013, -0.008, 0.02, 0.004, -0.006, 0.003]], dtype=torch.float64)


def inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    img = torch.rand(1, 2, H, W, generator=generator, dtype=torch.float64)
    depth = 4 + torch.rand(1, 1, H, W, generator=generator, dtype=torch.float64)
    return img, depth


def leaf(tensor):
    return tensor.detach().clone().requires_grad_()


@pytest.mark.parametrize('rotation_mode', ['euler', 'quat'])
def test_inverse_warp_gradients(rotation_mode):
    img, depth = inputs()
    assert gradcheck(lambda i, d, p: inverse_warp(i, d, p, K, rotation_mode)[0],
                     (leaf(img), leaf(depth), leaf(POSE)), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('rotation_mode', ['euler', 'quat'])
def test_motion_field_warp_gradients(rotation_mode):
    img, depth = inputs(1)
    source_depth = depth.flip(-1)
    object_translation = torch.zeros(1, 3, H, W, dtype=torch.float64)
    object_translation[..., 2:4, 2:5] = torch.tensor([0.02, -0.01, 0.03], dtype=torch.float64).view(1, 3, 1, 1)
    translation = MotionField.with_objects(POSE, object_translation).translation

    def warp(i, d, s, rotation, t):
        projected, _, projected_depth, computed_depth, flow = inverse_warp_mof(
            i, d, s, MotionField(rotation, t), K, rotation_mode=rotation_mode)
        return projected, projected_depth, computed_depth, flow

    args = (leaf(img), leaf(depth), leaf(source_depth), leaf(POSE[:, 3:]), leaf(translation))
    assert gradcheck(warp, args, eps=1e-6, atol=1e-6)


def test_forward_warp_gradients_with_respect_to_the_image():
    """The splat rounds projected points to pixels: the forward warp is differentiable in the image only."""
    img, depth = inputs(2)
    assert gradcheck(lambda i: forward_warp(i, depth, POSE, K)[0], (leaf(img),), eps=1e-6, atol=1e-6)


def test_flow_warp_and_depth2flow_gradients():
    img, depth = inputs(3)
    flow = 0.3 * torch.rand(1, 2, H, W, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.1
    assert gradcheck(lambda i, f: flow_warp(i, f)[0], (leaf(img), leaf(flow)), eps=1e-6, atol=1e-6)
    assert gradcheck(lambda d, p: depth2flow(d, p, K), (leaf(depth), leaf(POSE)), eps=1e-6, atol=1e-6)
