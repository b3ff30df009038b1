"""export.py (ONNX, TorchScript) and test_disp.py --onnx: the exported networks reproduce PyTorch."""
import json

import numpy as np
import onnx
import pytest
import torch

import export
import exported_models
import models
import test_disp
from checkpoint_io import save_checkpoint
from data import synthetic

HEIGHT, WIDTH = 64, 224


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Randomly initialised DispResNet and EgoPoseNet checkpoints (seeded)."""
    folder = tmp_path_factory.mktemp('checkpoints')
    torch.manual_seed(3)
    for name, net in (('disp', models.DispResNet(18)), ('ego', models.EgoPoseNet(18))):
        save_checkpoint(folder / f'{name}.pth.tar', net.state_dict(), epoch=1)
    return folder


@pytest.fixture(scope='module')
def onnx_export(checkpoints, tmp_path_factory):
    """export.py --format onnx of DispResNet (the slowest export: one is enough); returns the output folder."""
    out = tmp_path_factory.mktemp('onnx')
    export.main(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar'), '--format', 'onnx',
                 '--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--output-dir', str(out)])
    return out


def load(net, path):
    net.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    return net.eval()


def test_onnx_export_is_one_checked_file_with_a_dynamic_batch_that_equals_pytorch(checkpoints, onnx_export):
    summary = json.loads((onnx_export / 'export.json').read_text())
    assert sorted(summary['networks']) == ['dispnet']
    assert sorted(p.name for p in onnx_export.iterdir()) == ['dispnet.onnx', 'export.json']  # weights inside
    onnx.checker.check_model(str(onnx_export / 'dispnet.onnx'), full_check=True)
    entry = summary['networks']['dispnet']
    assert entry['relative_difference_random'] <= 1e-4 and entry['relative_difference_real'] <= 1e-4
    disp = load(models.DispResNet(18), checkpoints / 'disp.pth.tar')
    images = torch.rand(5, 3, HEIGHT, WIDTH) * 2 - 1  # a batch size the export never saw
    onnx_disp = exported_models.OnnxNetwork(onnx_export / 'dispnet.onnx')
    assert onnx_disp.image_hw == (HEIGHT, WIDTH) and onnx_disp.input_names == ['image']
    with torch.no_grad():
        torch.testing.assert_close(onnx_disp(images), disp(images), rtol=1e-4, atol=1e-5)


def test_torchscript_export_of_depth_and_pose_networks_equals_pytorch(checkpoints, tmp_path, capsys):
    export.main(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar'), '--pretrained-ego-pose',
                 str(checkpoints / 'ego.pth.tar'), '--format', 'torchscript', '--img-height', str(HEIGHT),
                 '--img-width', str(WIDTH), '--output-dir', str(tmp_path)])
    printed = capsys.readouterr().out
    assert 'dispnet.pt: random inputs (batch 3): max |exported - PyTorch|' in printed
    assert 'ego_pose.pt: real inputs (batch 1): max |exported - PyTorch|' in printed  # two synthetic frames
    disp = load(models.DispResNet(18), checkpoints / 'disp.pth.tar')
    ego = load(models.EgoPoseNet(18), checkpoints / 'ego.pth.tar')
    images = torch.rand(4, 3, HEIGHT, WIDTH) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(exported_models.load_torchscript(tmp_path / 'dispnet.pt')(images), disp(images),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(exported_models.load_torchscript(tmp_path / 'ego_pose.pt')(images[:2], images[2:]),
                                   ego(images[:2], images[2:]), rtol=1e-5, atol=1e-7)


def test_an_export_that_differs_from_pytorch_is_refused_and_not_written(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(export, 'compare_outputs', lambda *a: exported_models.Difference(2e-3, 1.0))
    with pytest.raises(SystemExit, match=r'differs from PyTorch by 0.002 \(0.002 relative > 0.0001\): refused'):
        export.main(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar'), '--format', 'torchscript',
                     '--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--output-dir', str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_export_arguments_are_checked(checkpoints, tmp_path):
    with pytest.raises(SystemExit, match='nothing to export'):
        export.main(['--output-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='--img-width 100: must be a positive multiple of 32'):
        export.main(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar'), '--img-width', '100'])
    with pytest.raises(SystemExit, match='checkpoint file not found'):
        export.main(['--pretrained-dispnet', str(tmp_path / 'missing.tar'), '--output-dir', str(tmp_path)])


def test_export_output_dir_that_is_a_file_is_refused(checkpoints, tmp_path):
    blocker = tmp_path / 'exports'
    blocker.write_text('my notes\n')
    for out in (blocker, blocker / 'sub'):
        with pytest.raises(SystemExit) as info:
            export.main(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar'), '--output-dir', str(out)])
        assert str(info.value.code) == f"error: --output-dir {out}: {blocker} is an existing file, not a folder"
    assert blocker.read_text() == 'my notes\n'


@pytest.fixture(scope='module')
def raw_drive(tmp_path_factory):
    root = tmp_path_factory.mktemp('raw')
    synthetic.write_raw_kitti([synthetic.render_scene(seed=0, index=0, height=HEIGHT, width=WIDTH, frames=3)], root)
    return root


def run_test_disp(network_flags, root, out, *extra):
    test_disp.main(network_flags + ['--dataset-dir', str(root), '--dataset-list', str(root / 'test_files.txt'),
                                    '--output-dir', str(out), '--img-height', str(HEIGHT), '--img-width', str(WIDTH),
                                    '--device', 'cpu', '--no-progress', '--batch-size', '2', *extra])
    return json.loads((out / 'metrics.json').read_text()), np.load(out / 'predictions.npy')


def test_test_disp_onnx_gives_the_metrics_of_the_pytorch_path(checkpoints, onnx_export, raw_drive, tmp_path):
    torch_metrics, torch_depth = run_test_disp(['--pretrained-dispnet', str(checkpoints / 'disp.pth.tar')],
                                               raw_drive, tmp_path / 'torch')
    onnx_metrics, onnx_depth = run_test_disp(['--onnx', str(onnx_export / 'dispnet.onnx')], raw_drive,
                                             tmp_path / 'onnx')
    np.testing.assert_allclose(onnx_depth, torch_depth, rtol=1e-4)
    assert onnx_metrics.keys() == torch_metrics.keys()
    for name, value in torch_metrics.items():
        assert onnx_metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_test_disp_onnx_refuses_another_image_size(onnx_export, raw_drive, tmp_path):
    with pytest.raises(SystemExit, match=f'exported for {HEIGHT}x{WIDTH} \\(HxW\\) images, asked for 128x{WIDTH}'):
        test_disp.main(['--onnx', str(onnx_export / 'dispnet.onnx'), '--dataset-dir', str(raw_drive),
                        '--dataset-list', str(raw_drive / 'test_files.txt'), '--output-dir', str(tmp_path),
                        '--img-height', '128', '--img-width', str(WIDTH), '--device', 'cpu'])
    with pytest.raises(SystemExit, match='ONNX model not found'):
        test_disp.main(['--onnx', str(tmp_path / 'missing.onnx'), '--dataset-dir', str(raw_drive),
                        '--dataset-list', str(raw_drive / 'test_files.txt'), '--output-dir', str(tmp_path),
                        '--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--device', 'cpu'])
