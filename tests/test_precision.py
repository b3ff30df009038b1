"""How the networks run: --amp, --channels-last, --compile (CPU; the CUDA versions are in test_cuda.py)."""
import json
import os

import pytest
import torch

import precision
import train
from models import DispResNet, EgoPoseNet, InstaDM, ObjPoseNet
from loss_terms import LOSS_NAMES
from projection import LossOptions

FAST = ['--with-pretrain', '0', '-b', '1', '-j', '0', '-mni', '3', '--epoch-size', '1', '--device', 'cpu']
# bf16 keeps 8 bits of mantissa; on the toy batch every loss term stayed within 0.1% of float32
BF16_RELATIVE_TOLERANCE = 0.01


def make_model(run=precision.NetworkPrecision()):
    torch.manual_seed(0)
    nets = {'disp': DispResNet(18), 'ego': EgoPoseNet(), 'obj': ObjPoseNet()}
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    return InstaDM(nets['disp'], nets['ego'], nets['obj'], options, run).train(), nets


def test_bf16_networks_keep_every_loss_term_close_and_the_geometry_in_float32(toy_batch):
    reference, _ = make_model()
    mixed, _ = make_model(precision.NetworkPrecision('cpu', torch.bfloat16))
    with torch.no_grad():
        expected, outputs = reference(*toy_batch), mixed(*toy_batch)
    for name in LOSS_NAMES:
        assert outputs.losses[name].dtype == torch.float32, name
        assert outputs.losses[name].item() == pytest.approx(expected.losses[name].item(),
                                                            rel=BF16_RELATIVE_TOLERANCE, abs=1e-4), name
    for name in ('depths', 'ego_source_from_view', 'object_motion', 'ego_warped'):
        assert getattr(outputs, name).dtype == torch.float32, name
    assert outputs.motion_field.rotation.dtype == outputs.motion_field.translation.dtype == torch.float32
    assert outputs.second.warped.dtype == torch.float32
    # the networks did run in bf16: their outputs are not the float32 ones bit for bit
    assert not torch.equal(outputs.depths, expected.depths)


def test_channels_last_networks_give_the_float32_step(toy_batch):
    reference, _ = make_model()
    channels_last, nets = make_model(precision.NetworkPrecision('cpu', None, channels_last=True))
    precision.prepare_networks(nets, channels_last=True)
    assert nets['disp'].encoder.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, outputs = reference(*toy_batch), channels_last(*toy_batch)
    for name in LOSS_NAMES:
        assert outputs.losses[name].item() == pytest.approx(expected.losses[name].item(), rel=1e-4, abs=1e-6), name


def test_grad_scaler_only_for_fp16():
    assert precision.make_grad_scaler('fp16', torch.device('cpu')).is_enabled()
    assert not precision.make_grad_scaler('bf16', torch.device('cpu')).is_enabled()
    assert not precision.make_grad_scaler('off', torch.device('cpu')).is_enabled()


def test_cpu_capability_names_the_vector_units():
    line = precision.cpu_capability()
    assert line.startswith(f'cpu capability {torch.backends.cpu.get_cpu_capability()}') and 'amx_bf16' in line


def test_compile_without_a_backend_is_one_clear_line(toy_root, tmp_path, monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError('InvalidCxxCompiler: No working C++ compiler found\nlong details')
    monkeypatch.setattr(torch, 'compile', broken_compile)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: --compile: torch.compile is not available here "
                                         r"\(InvalidCxxCompiler: No working C\+\+ compiler found\); train without"):
        train.main([toy_root, '--name', 'compile', '--compile'] + FAST)


def test_train_with_bf16_and_channels_last_end_to_end(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([toy_root, '--name', 'amp', '--epochs', '1', '--amp', 'bf16', '--channels-last'] + FAST)
    with open(os.path.join(run_dir, 'args.json')) as f:
        saved = json.load(f)
    assert saved['amp'] == 'bf16' and saved['channels_last'] is True
    state = torch.load(os.path.join(run_dir, 'training_state.pth.tar'), weights_only=True)
    assert state['skipped_steps'] == 0 and state['n_iter'] == 1
    weights = torch.load(os.path.join(run_dir, 'dispnet_checkpoint.pth.tar'), weights_only=True)['state_dict']
    assert all(value.dtype in (torch.float32, torch.int64) for value in weights.values())
    assert DispResNet(18).load_state_dict(weights, strict=True)
