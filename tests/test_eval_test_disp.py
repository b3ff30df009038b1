"""test_disp.py and eval_depth.py end to end on a tiny raw drive with a random DispResNet."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import test_disp
from checkpoint_io import save_checkpoint
from kitti_eval import eval_depth, save_depth
from kitti_eval.kitti_raw import read_file_list
from models import CONFIG_KEY, DispResNet, EgoPoseNet, ModelConfig
from test_eval_fixtures import raw_drive  # noqa: F401  (fixture)

HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A randomly initialised DispResNet-18 checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'dispnet_checkpoint.pth.tar'
    save_checkpoint(path, DispResNet(18, pretrained=False).state_dict(), epoch=1)
    return path


def run_test_disp(root, checkpoint, output_dir, *extra):
    test_disp.main(['--pretrained-dispnet', str(checkpoint), '--dataset-dir', str(root),
                    '--dataset-list', str(root / 'test_files.txt'), '--output-dir', str(output_dir),
                    '--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--device', 'cpu',
                    '--no-progress', *extra])


def test_predictions_and_metrics_then_same_numbers_from_saved_predictions(raw_drive, checkpoint, tmp_path, capsys):
    root, entries = raw_drive
    out = tmp_path / 'out'
    run_test_disp(root, checkpoint, out, '--batch-size', '2')
    printed = capsys.readouterr().out
    predictions = np.load(out / 'predictions.npy')
    assert predictions.shape == (len(entries), HEIGHT, WIDTH) and predictions.dtype == np.float32
    assert (predictions > 0).all()
    assert 'frames/s' in printed and 'abs_rel' in printed
    metrics = json.loads((out / 'metrics.json').read_text())
    assert set(metrics) == {'abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'a1', 'a2', 'a3'}
    assert 0 < metrics['abs_rel'] < 10 and 0 <= metrics['a1'] <= 1
    assert f"{metrics['abs_rel']:10.4f}" in (out / 'metrics.txt').read_text()

    again = tmp_path / 'again'
    eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(out / 'predictions.npy'),
                     '--test_file_list', str(root / 'test_files.txt'), '--output_dir', str(again), '--no-progress'])
    assert json.loads((again / 'metrics.json').read_text()) == metrics
    assert (again / 'metrics.txt').read_text() == (out / 'metrics.txt').read_text()


def test_batch_size_does_not_change_predictions(raw_drive, checkpoint, tmp_path):
    root, _ = raw_drive
    run_test_disp(root, checkpoint, tmp_path / 'b1', '--batch-size', '1', '--no-eval')
    run_test_disp(root, checkpoint, tmp_path / 'b3', '--batch-size', '3', '--no-eval')
    np.testing.assert_allclose(np.load(tmp_path / 'b1' / 'predictions.npy'),
                               np.load(tmp_path / 'b3' / 'predictions.npy'), rtol=1e-4)
    assert not (tmp_path / 'b1' / 'metrics.json').exists()


def test_gt_file_is_written_and_reused(raw_drive, checkpoint, tmp_path):
    root, entries = raw_drive
    gt_file = tmp_path / 'gt.npz'
    run_test_disp(root, checkpoint, tmp_path / 'first', '--gt-file', str(gt_file))
    assert gt_file.is_file()
    for scan in (root / '2011_09_26' / '2011_09_26_drive_0001_sync' / 'velodyne_points' / 'data').iterdir():
        scan.unlink()
    eval_depth.main(['--pred-file', str(tmp_path / 'first' / 'predictions.npy'), '--gt-file', str(gt_file),
                     '--test-file-list', str(root / 'test_files.txt'), '--output-dir', str(tmp_path / 'second'),
                     '--no-progress'])
    assert (tmp_path / 'second' / 'metrics.json').read_text() == (tmp_path / 'first' / 'metrics.json').read_text()


def test_no_ground_truth_writes_predictions_only(raw_drive, checkpoint, tmp_path, capsys):
    root, entries = raw_drive
    for scan in (root / '2011_09_26' / '2011_09_26_drive_0001_sync' / 'velodyne_points' / 'data').iterdir():
        scan.unlink()
    run_test_disp(root, checkpoint, tmp_path / 'out')
    assert 'writing predictions only' in capsys.readouterr().out
    assert (tmp_path / 'out' / 'predictions.npy').is_file()
    assert not (tmp_path / 'out' / 'metrics.json').exists()


def one_line_error(call):
    """The message of the SystemExit raised by ``call`` (checked to be a single line)."""
    with pytest.raises(SystemExit) as info:
        call()
    message = str(info.value.code)
    assert message.startswith('error: ') and '\n' not in message
    return message


def test_missing_image(raw_drive, checkpoint, tmp_path):
    root, entries = raw_drive
    (root / entries[1]).unlink()
    message = one_line_error(lambda: run_test_disp(root, checkpoint, tmp_path / 'out'))
    assert message == f"error: {root / entries[1]}: listed image not found"


def test_file_list_not_in_utf8(raw_drive, checkpoint, tmp_path):
    """A list saved as UTF-16 (Windows PowerShell's ``>``) is refused naming the list, not a bare codec error."""
    root, _ = raw_drive
    listed = tmp_path / 'list.txt'
    listed.write_text((root / 'test_files.txt').read_text(), encoding='utf-16')
    message = one_line_error(lambda: run_test_disp(root, checkpoint, tmp_path / 'out', '--dataset-list', str(listed)))
    assert message.startswith(f"error: {listed}: not a UTF-8 text file")
    listed.write_text((root / 'test_files.txt').read_text(), encoding='utf-8-sig')   # Windows Notepad's BOM
    assert read_file_list(listed) == read_file_list(root / 'test_files.txt')


def test_some_velodyne_scans_missing(raw_drive, checkpoint, tmp_path):
    root, entries = raw_drive
    scan = root / entries[2].replace('image_02', 'velodyne_points').replace('.png', '.bin')
    scan.unlink()
    message = one_line_error(lambda: run_test_disp(root, checkpoint, tmp_path / 'out'))
    assert message == f"error: {scan}: velodyne scan not found"
    predictions = tmp_path / 'p.npy'
    np.save(predictions, np.ones((3, 8, 8), np.float32))
    message = one_line_error(lambda: eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(predictions),
                                                      '--test_file_list', str(root / 'test_files.txt')]))
    assert message == f"error: {scan}: velodyne scan not found"


def test_missing_calibration(raw_drive, tmp_path):
    root, _ = raw_drive
    (root / '2011_09_26' / 'calib_velo_to_cam.txt').unlink()
    predictions = tmp_path / 'p.npy'
    np.save(predictions, np.ones((3, 8, 8), np.float32))
    message = one_line_error(lambda: eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(predictions),
                                                      '--test_file_list', str(root / 'test_files.txt')]))
    assert message.endswith("calib_velo_to_cam.txt: velodyne calibration file not found")


def test_prediction_count_differs_from_list(raw_drive, tmp_path):
    root, _ = raw_drive
    predictions = tmp_path / 'p.npy'
    np.save(predictions, np.ones((2, 8, 8), np.float32))
    message = one_line_error(lambda: eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(predictions),
                                                      '--test_file_list', str(root / 'test_files.txt')]))
    assert message == f"error: {predictions}: holds 2 depth maps but the file list has 3"


def test_checkpoint_of_another_network(raw_drive, tmp_path):
    root, _ = raw_drive
    wrong = tmp_path / 'ego.pth.tar'
    save_checkpoint(wrong, EgoPoseNet(18, pretrained=False).state_dict(), epoch=1)
    message = one_line_error(lambda: run_test_disp(root, wrong, tmp_path / 'out'))
    assert message.startswith(f"error: {wrong}: does not fit DispResNet")


def test_sizes_the_network_cannot_take(raw_drive, checkpoint, tmp_path):
    root, _ = raw_drive
    message = one_line_error(lambda: run_test_disp(root, checkpoint, tmp_path / 'out', '--img-width', '100'))
    assert '--img-width 100: must be a positive multiple of 32' in message


def run_script(env, tmp_path):
    """Run scripts/run_eigen_test.sh with ``env`` added to the environment, in ``tmp_path``."""
    script = Path(__file__).resolve().parent.parent / 'scripts' / 'run_eigen_test.sh'
    full_env = {**os.environ, 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1', **env}
    return subprocess.run(['sh', str(script)], env=full_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def test_eigen_script_reports_a_missing_path(tmp_path):
    result = run_script({'DATA_ROOT': str(tmp_path / 'nowhere')}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: DATA_ROOT={tmp_path / 'nowhere'} is not a folder")


def test_eigen_script_on_the_tiny_drive(raw_drive, checkpoint, tmp_path):
    root, _ = raw_drive
    env = {'DATA_ROOT': str(root), 'DISP_NET': str(checkpoint), 'TEST_FILE': str(root / 'test_files.txt'),
           'IMG_HEIGHT': str(HEIGHT), 'IMG_WIDTH': str(WIDTH), 'DEVICE': 'cpu', 'RESULTS_DIR': 'results'}
    result = run_script(env, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'abs_rel' in result.stdout
    assert np.load(tmp_path / 'results' / 'predictions.npy').shape == (3, HEIGHT, WIDTH)
    assert (tmp_path / 'results' / 'metrics.json').is_file()
    assert (tmp_path / 'outputs' / 'gt_depths_test_files.npz').is_file()


def test_official_save_depth_command_writes_predictions_only(raw_drive, checkpoint, tmp_path):
    root, _ = raw_drive
    save_depth.main(['--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--pretrained-dispnet', str(checkpoint),
                     '--dataset-dir', str(root), '--dataset-list', str(root / 'test_files.txt'),
                     '--output-dir', str(tmp_path), '--device', 'cpu', '--no-progress'])
    assert np.load(tmp_path / 'predictions.npy').shape == (3, HEIGHT, WIDTH)
    assert not (tmp_path / 'metrics.json').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available on this machine"):
        test_disp.select_device('cuda')
    assert test_disp.select_device('auto') == torch.device('cpu')


def test_input_size_and_depth_are_read_from_the_checkpoint(raw_drive, tmp_path, capsys):
    """A checkpoint saved by train.py carries its frame size: test_disp.py uses it when no size is given."""
    root, entries = raw_drive
    torch.manual_seed(0)
    path = tmp_path / 'dispnet_checkpoint.pth.tar'
    config = ModelConfig(resnet_layers=18, img_height=HEIGHT, img_width=WIDTH)
    save_checkpoint(path, DispResNet(18, pretrained=False).state_dict(), epoch=1, **{CONFIG_KEY: config.as_dict()})
    common = ['--pretrained-dispnet', str(path), '--dataset-dir', str(root), '--dataset-list',
              str(root / 'test_files.txt'), '--device', 'cpu', '--no-progress', '--no-eval']
    test_disp.main(common + ['--output-dir', str(tmp_path / 'saved')])
    assert np.load(tmp_path / 'saved' / 'predictions.npy').shape == (len(entries), HEIGHT, WIDTH)
    test_disp.main(common + ['--output-dir', str(tmp_path / 'given'), '--img-height', '96', '--img-width', '128'])
    assert np.load(tmp_path / 'given' / 'predictions.npy').shape == (len(entries), 96, 128)
    assert f"warning: {path} was trained with img_height {HEIGHT}, using 96 as given" in capsys.readouterr().err
