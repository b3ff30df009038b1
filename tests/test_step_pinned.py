"""One training step pinned to the numbers of the code before the issue-13 refactor.

The toy batch of ``conftest.toy_batch`` (two samples, two references, three instances each, so the
object terms and the motion-field consistency are non-zero) goes through ``projection.run_step`` with
seeded random networks; every loss term, the total and the gradient norm of each network must stay
what the step computed before its types and names were reorganised.  Float32 on CPU: the tolerance
covers round-off, not a change of the objective.  The numbers were pinned on an AVX2 host; an AVX-512 host
(oneDNN's other kernels and summation orders) differs by up to 2.7e-5 on a loss term (the geometry term, a
normalised difference of two depths) and 1.9e-4 on a gradient norm (EgoPoseNet's), so the tolerances are
about ten times that.
"""
import pytest
import torch

from models import DispResNet, EgoPoseNet, ObjPoseNet
from projection import LossOptions, run_step

LOSS_RELATIVE_TOLERANCE = 2e-4
GRADIENT_RELATIVE_TOLERANCE = 2e-3

CASES = {
    'euler_ssim_mask_auto_mask': (
        dict(with_ssim=True, with_mask=True, with_auto_mask=True, height_prior=0.1, mean_disparity=0.05),
        {'photo': 1.9068269729614258, 'geometry': 0.06882429867982864, 'smooth': 0.09997855126857758,
         'obj_size': 1.8980952501296997, 'mof_consistency': 11.909271240234375,
         'height_prior': 0.019999999552965164, 'mean_disparity': 0.7179257869720459},
        5.159261226654053,
        {'disp': 0.08371273428201675, 'ego': 2.394519090652466, 'obj': 0.3155161142349243}),
    'quat_border_only_obj': (
        dict(rotation_mode='quat', padding_mode='border', with_only_obj=True, height_prior=0.1, mean_disparity=0.05),
        {'photo': 1.2569483518600464, 'geometry': 0.06223129481077194, 'smooth': 0.09997855126857758,
         'obj_size': 1.8980952501296997, 'mof_consistency': 11.831670761108398,
         'height_prior': 0.019999999552965164, 'mean_disparity': 0.7179257869720459},
        3.84515118598938,
        {'disp': 0.6679992079734802, 'ego': 2.172091007232666, 'obj': 1.3003817796707153}),
}


def seeded_networks():
    torch.manual_seed(0)
    return {'disp': DispResNet(18), 'ego': EgoPoseNet(), 'obj': ObjPoseNet()}


def gradient_norm(net):
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]).norm().item()


@pytest.mark.parametrize('case', sorted(CASES))
def test_one_step_keeps_its_loss_terms_total_and_gradients(toy_batch, case):
    options, expected_terms, expected_total, expected_gradients = CASES[case]
    nets = seeded_networks()
    tgt, refs, K, tgt_insts, ref_insts = toy_batch
    outputs = run_step(nets['disp'], nets['ego'], nets['obj'], tgt, refs, K, tgt_insts, ref_insts,
                       LossOptions(**options))
    assert set(outputs.losses) == set(expected_terms)
    for name, value in expected_terms.items():
        assert outputs.losses[name].item() == pytest.approx(value, rel=LOSS_RELATIVE_TOLERANCE), name
    assert outputs.total.item() == pytest.approx(expected_total, rel=LOSS_RELATIVE_TOLERANCE)
    outputs.total.backward()
    for name, value in expected_gradients.items():
        assert gradient_norm(nets[name]) == pytest.approx(value, rel=GRADIENT_RELATIVE_TOLERANCE), name
