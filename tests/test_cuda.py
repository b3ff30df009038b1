"""The CUDA path: the step on the GPU against the CPU, mixed precision, the scripts end to end, resume across devices.

Every test here needs a CUDA GPU and is skipped without one (`scripts/gpu_check.sh` runs them on a GPU machine).
"""
import json
import os

import pytest
import torch

import demo
import precision
import test_disp
import train
from data import synthetic
from models import DispResNet, EgoPoseNet, InstaDM, ObjPoseNet
from loss_terms import LOSS_NAMES
from projection import LossOptions
from test_eval_fixtures import raw_drive  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

CUDA_FAST = ['--with-pretrain', '0', '-b', '2', '-j', '0', '-mni', '3', '--epoch-size', '2', '--device', 'cuda']
LOSS_RELATIVE_TOLERANCE = 1e-3      # float32 on both devices; the GPU sums in another order
GRADIENT_RELATIVE_TOLERANCE = 1e-2  # relative L2 distance of each network's gradient
BF16_RELATIVE_TOLERANCE = 0.01


@pytest.fixture
def exact_float32():
    """No TF32 in convolutions and matrix products while a test compares float32 on CPU and GPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def batch_to(batch, device):
    return [x.to(device) if torch.is_tensor(x) else [t.to(device) for t in x] for x in batch]


def model_on(device, run=None):
    torch.manual_seed(0)
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    run = run or precision.NetworkPrecision(torch.device(device).type)
    return InstaDM(DispResNet(18), EgoPoseNet(), ObjPoseNet(), options, run).to(device).train()


def gradients(model):
    return {name: p.grad.detach().cpu() for name, p in model.named_parameters() if p.grad is not None}


def test_step_on_cuda_equals_the_step_on_cpu(toy_batch, exact_float32):
    cpu_model, cuda_model = model_on('cpu'), model_on('cuda')
    cpu_out = cpu_model(*toy_batch)
    cuda_out = cuda_model(*batch_to(toy_batch, 'cuda'))
    for name in LOSS_NAMES:
        assert cuda_out.losses[name].item() == pytest.approx(cpu_out.losses[name].item(),
                                                             rel=LOSS_RELATIVE_TOLERANCE, abs=1e-6), name
    cpu_out.total.backward()
    cuda_out.total.backward()
    cpu_grads, cuda_grads = gradients(cpu_model), gradients(cuda_model)
    assert cpu_grads.keys() == cuda_grads.keys()
    for prefix in ('disp_net.', 'ego_pose_net.', 'obj_pose_net.'):
        names = [n for n in cpu_grads if n.startswith(prefix)]
        cpu_flat = torch.cat([cpu_grads[n].flatten() for n in names])
        cuda_flat = torch.cat([cuda_grads[n].flatten() for n in names])
        distance = (cpu_flat - cuda_flat).norm() / cpu_flat.norm()
        assert distance < GRADIENT_RELATIVE_TOLERANCE, (prefix, distance.item())


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_mixed_precision_on_cuda_keeps_every_loss_term_close(toy_batch, amp):
    batch = batch_to(toy_batch, 'cuda')
    with torch.no_grad():   # training mode: BatchNorm on the batch statistics, as in a training step
        expected = model_on('cuda')(*batch)
        run = precision.NetworkPrecision.from_flags(amp, True, torch.device('cuda'))
        outputs = model_on('cuda', run)(*batch)
    for name in LOSS_NAMES:
        assert outputs.losses[name].dtype == torch.float32
        assert outputs.losses[name].item() == pytest.approx(expected.losses[name].item(),
                                                            rel=BF16_RELATIVE_TOLERANCE, abs=1e-4), name


def test_train_fp16_with_gradient_scaling(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([toy_root, '--name', 'fp16', '--epochs', '1', '--amp', 'fp16', '--channels-last'] + CUDA_FAST)
    state = torch.load(os.path.join(run_dir, 'training_state.pth.tar'), weights_only=True)
    assert state['n_iter'] == 2 and state['skipped_steps'] == 0


def test_train_test_disp_and_demo_on_cuda(toy_root, raw_drive, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([toy_root, '--name', 'cuda', '--epochs', '1', '--with-gt'] + CUDA_FAST)
    root = raw_drive
    out = tmp_path / 'eigen'
    test_disp.main(['--pretrained-dispnet', os.path.join(run_dir, 'dispnet_checkpoint.pth.tar'),
                    '--dataset-dir', str(root), '--dataset-list', str(root / 'test_files.txt'),
                    '--output-dir', str(out), '--img-height', '64', '--img-width', '96', '--device', 'cuda',
                    '--no-progress'])
    assert (out / 'predictions.npy').is_file()
    assert 'abs_rel' in json.loads((out / 'metrics.json').read_text())
    scene_root = tmp_path / 'vis'
    synthetic.write_kitti_vis([synthetic.render_scene(seed=0, index=0, height=128, width=416, frames=4)], scene_root)
    demo_out = demo.main(['--data', str(scene_root / 'image' / synthetic.scene_name(0)),
                          '--output-dir', str(tmp_path / 'demo'), '--name', 'cuda', '--device', 'cuda', '--mni', '3'])
    assert os.path.isfile(os.path.join(demo_out, 'trajectory.txt'))


def test_resume_a_cuda_run_on_cpu_and_back(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cuda_args = [toy_root, '--name', 'across'] + CUDA_FAST
    cpu_args = [arg if arg != 'cuda' else 'cpu' for arg in cuda_args]
    run_dir = train.main(cuda_args + ['--epochs', '1'])
    train.main(cpu_args + ['--epochs', '2', '--resume', run_dir])
    train.main(cuda_args + ['--epochs', '3', '--resume', run_dir])
    state = torch.load(os.path.join(run_dir, 'training_state.pth.tar'), weights_only=True)
    assert (state['epoch'], state['n_iter']) == (3, 6)
    weights = torch.load(os.path.join(run_dir, 'dispnet_checkpoint.pth.tar'), weights_only=True)
    assert weights['epoch'] == 3 and all(v.device.type == 'cpu' for v in weights['state_dict'].values())


def test_compiled_networks_train_on_cuda(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([toy_root, '--name', 'compiled', '--epochs', '1', '--compile'] + CUDA_FAST)
    weights = torch.load(os.path.join(run_dir, 'dispnet_checkpoint.pth.tar'), weights_only=True)['state_dict']
    assert DispResNet(18).load_state_dict(weights, strict=True)    # compiled networks keep their parameter names
