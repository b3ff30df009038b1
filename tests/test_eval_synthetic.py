"""Evaluation on the synthetic raw-KITTI drive of ``data.synthetic`` (its renderer gives dense depth)."""
import json

import numpy as np
import pytest

from checkpoint_io import save_checkpoint
from data import synthetic
from kitti_eval import eval_depth
from kitti_eval.kitti_raw import generate_depth_map, locate_frame
from models import DispResNet
import test_disp  # noqa: E402

HEIGHT, WIDTH = 128, 416


@pytest.fixture(scope='module')
def synthetic_drive(tmp_path_factory):
    """(root, entries) of a 2-frame synthetic raw drive at 128x416."""
    root = tmp_path_factory.mktemp('synthetic_raw')
    synthetic.write_raw_kitti([synthetic.render_scene(seed=0, index=0, height=HEIGHT, width=WIDTH, frames=2)], root)
    return root, (root / 'test_files.txt').read_text().split()


def test_gt_equals_the_renderer_depth_at_the_lidar_pixels(synthetic_drive):
    root, entries = synthetic_drive
    for entry in entries:
        gt = generate_depth_map(locate_frame(root, entry))
        dense = np.load(synthetic.raw_gt_depth_path(root, entry))
        lidar = gt > 0
        assert lidar.sum() > 10000 and (dense[lidar] > 0).all()  # every lidar pixel hits a rendered surface
        relative = np.abs(gt[lidar] - dense[lidar]) / dense[lidar]
        # lidar rays do not pass through pixel centres and the lidar sits 0.27 m behind the camera, so
        # the match is exact up to the depth change within a pixel (and a few occlusion edges);
        # landing one pixel off (a wrong rounding convention) fails both bounds
        assert np.median(relative) < 0.005
        assert np.mean(relative < 0.01) > 0.8 and np.mean(relative < 0.05) > 0.99


def test_test_disp_end_to_end_and_reevaluation(synthetic_drive, tmp_path):
    root, entries = synthetic_drive
    checkpoint = tmp_path / 'dispnet.pth.tar'
    save_checkpoint(checkpoint, DispResNet(18, pretrained=False).state_dict(), epoch=0)
    out = tmp_path / 'out'
    test_disp.main(['--pretrained-dispnet', str(checkpoint), '--dataset-dir', str(root),
                    '--dataset-list', str(root / 'test_files.txt'), '--output-dir', str(out),
                    '--img-height', str(HEIGHT), '--img-width', str(WIDTH), '--device', 'cpu', '--no-progress'])
    assert np.load(out / 'predictions.npy').shape == (len(entries), HEIGHT, WIDTH)
    metrics = json.loads((out / 'metrics.json').read_text())
    eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(out / 'predictions.npy'),
                     '--test_file_list', str(root / 'test_files.txt'), '--output_dir', str(tmp_path / 'again'),
                     '--no-progress'])
    assert json.loads((tmp_path / 'again' / 'metrics.json').read_text()) == metrics


def test_renderer_depth_as_prediction_scores_almost_perfectly(synthetic_drive, tmp_path):
    root, entries = synthetic_drive
    dense = np.stack([np.load(synthetic.raw_gt_depth_path(root, e)) for e in entries])
    predictions = tmp_path / 'predictions.npy'
    np.save(predictions, np.where(dense > 0, dense, 100.0) * 0.3)  # right up to scale; sky far away
    eval_depth.main(['--kitti_dir', str(root), '--pred_file', str(predictions), '--test_file_list',
                     str(root / 'test_files.txt'), '--output_dir', str(tmp_path), '--no-progress'])
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['abs_rel'] < 0.02 and metrics['a1'] > 0.98
