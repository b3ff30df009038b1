"""Lean backward passes (models/lean_ops.py): the numbers of PyTorch's autograd, fewer saved tensors."""
import copy

import pytest
import torch

from models import DispResNet, EgoPoseNet, ObjPoseNet
from models.lean_ops import lean_enabled, set_lean_activations


def saved_bytes(net, fn):
    """``(fn(), bytes of the distinct storages autograd keeps for the backward pass, but ``net``'s parameters)``."""
    parameters = {p.untyped_storage().data_ptr() for p in net.parameters()}
    storages = {}

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in parameters:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return out, sum(storages.values())


def twin_runs(net, inputs):
    """Forward + backward of ``net`` and of a copy, lean and not: outputs, saved bytes, the two networks."""
    lean, plain = net, copy.deepcopy(net)
    set_lean_activations(lean, True)
    set_lean_activations(plain, False)
    results = []
    for model in (lean, plain):
        model.train()
        out, saved = saved_bytes(model, lambda: model(*inputs))
        torch.manual_seed(5)
        out.backward(torch.randn_like(out))
        results.append((out, saved))
    return results, lean, plain


def assert_identical(lean, plain):
    """Running statistics bit for bit (the forward kernels are the same); gradients to float rounding (the
    backward pass recomputes ReLU outputs with the CPU batch-norm kernel's formula, bit for bit on the hosts we
    measured, but a kernel built differently may round once more)."""
    for (name, a), b in zip(lean.named_parameters(), plain.parameters()):
        if a.grad is None:
            assert b.grad is None, name
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6 * float(b.grad.abs().max()),
                                       msg=lambda detail, name=name: f"gradient of {name}: {detail}")
    for (name, a), b in zip(lean.named_buffers(), plain.buffers()):
        assert torch.equal(a, b), f"buffer {name} differs"


@pytest.mark.parametrize('make, inputs, min_saving', [
    (lambda: DispResNet(18), lambda: (torch.randn(2, 3, 64, 96),), 0.35),
    (lambda: DispResNet(50), lambda: (torch.randn(1, 3, 64, 96),), 0.25),
    (EgoPoseNet, lambda: (torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)), 0.2),
    (ObjPoseNet, lambda: (torch.randn(3, 3, 64, 96), torch.randn(3, 3, 64, 96)), 0.2),
], ids=['disp18', 'disp50', 'ego', 'obj'])
def test_lean_networks_equal_autograd_and_save_less(make, inputs, min_saving):
    torch.manual_seed(0)
    net = make()
    ((lean_out, lean_saved), (plain_out, plain_saved)), lean, plain = twin_runs(net, inputs())
    assert torch.equal(lean_out, plain_out)
    assert_identical(lean, plain)
    assert lean_saved < (1 - min_saving) * plain_saved, (lean_saved, plain_saved)


def test_lean_path_runs_only_where_it_equals_the_modules():
    net = ObjPoseNet().encoder
    x = torch.randn(1, 6, 32, 32)
    assert not lean_enabled(net, x)                 # off unless asked for
    set_lean_activations(net, True)
    assert lean_enabled(net, x)
    with torch.no_grad():
        assert not lean_enabled(net, x)
    assert not lean_enabled(net.eval(), x)
    net.train()
    assert not lean_enabled(net, x.double())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not lean_enabled(net, x)
    set_lean_activations(net, False)
    assert not lean_enabled(net, x)


@pytest.mark.parametrize('channels_last', [False, True], ids=['contiguous', 'channels_last'])
def test_training_step_is_the_same_with_and_without_lean_activations(channels_last):
    """The whole step (projection.run_step, all losses, instances on): every loss term bit for bit, every gradient
    of the three networks as autograd's; what the forward pass keeps for the backward pass shrinks. Also with
    ``--channels-last`` (networks and inputs in NHWC: the batch norm runs its channels-last kernel)."""
    from benchmarks.batches import make_batch
    from benchmarks.bench_train_step import saved_for_backward_mib
    from models import ModelConfig, build_networks
    from precision import NetworkPrecision, prepare_networks
    from projection import LossOptions, run_step

    batch = make_batch(1, 64, 64, 2)
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    run = NetworkPrecision(device_type='cpu', channels_last=channels_last)
    runs = []
    for lean in (True, False):
        torch.manual_seed(0)
        nets = list(build_networks(ModelConfig(resnet_layers=18)).values())
        prepare_networks(dict(enumerate(nets)), channels_last=channels_last)
        for net in nets:
            set_lean_activations(net, lean)
        outputs = run_step(*nets, *batch, options, run)
        outputs.total.backward()
        runs.append((outputs, nets, sum(saved_for_backward_mib(nets, batch).values())))
    (lean_out, lean_nets, lean_saved), (plain_out, plain_nets, plain_saved) = runs
    assert lean_out.losses.keys() == plain_out.losses.keys()
    for name, value in lean_out.losses.items():
        assert torch.equal(value, plain_out.losses[name]), name
    for lean, plain in zip(lean_nets, plain_nets):
        assert_identical(lean, plain)
    assert lean_saved < 0.8 * plain_saved, (lean_saved, plain_saved)


@pytest.mark.parametrize('flag, expected', [([], False), (['--lean-activations', 'on'], True)])
def test_train_flag_sets_the_networks_lean_path(flag, expected):
    import train
    from models import ModelConfig, build_networks
    from train_distributed import Distributed
    from train_model import build_model

    args = train.build_parser().parse_args(['unused', '--name', 'lean'] + flag)
    nets = build_networks(ModelConfig(resnet_layers=18))
    build_model(args, nets, torch.device('cpu'), Distributed('cpu'))
    flags = {module.lean_activations for net in nets.values() for module in net.modules()
             if hasattr(module, 'lean_activations')}
    assert flags == {expected}


def test_sync_batch_norm_keeps_its_own_forward():
    """Under --sync-bn the batch statistics are gathered over the processes: the lean path must not replace
    SyncBatchNorm by a local batch norm, so the converted encoder keeps what PyTorch's modules keep."""
    torch.manual_seed(0)
    net = ObjPoseNet().encoder
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(net))
    set_lean_activations(synced, True)
    set_lean_activations(net, False)
    x = torch.randn(2, 6, 64, 96)
    _, synced_saved = saved_bytes(synced.train(), lambda: synced(x)[-1])
    _, plain_saved = saved_bytes(net.train(), lambda: net(x)[-1])
    assert synced_saved == plain_saved
