"""RAFT and Mask R-CNN paths of data/prepare_train_data.py with random weights in a temporary hub cache."""
import cv2
import numpy as np
import pytest
import torch

from data import prepare_train_data
from data.prepare_models import MASKRCNN_WEIGHTS, RAFT_WEIGHTS, MaskRcnnMasks, WeightsChoice
from datasets.io import read_flo

HEIGHT, WIDTH = 36, 60  # not multiples of 8: RAFT pads


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache: ``TORCH_HOME/hub/checkpoints``."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    folder = tmp_path / 'torch' / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def clip(tmp_path):
    """Three frames of a shifting random texture."""
    texture = cv2.resize(np.random.default_rng(0).uniform(0, 255, (12, 24, 3)).astype(np.float32),
                         (WIDTH + 8, HEIGHT), interpolation=cv2.INTER_CUBIC).astype(np.uint8)
    folder = tmp_path / 'clip'
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f'{k}.png'), texture[:, 2 * k:2 * k + WIDTH])
    return folder


def argv(clip, out, *extra):
    return ['--source', 'frames', '--input', str(clip), '--output', str(out), '--img-width', str(WIDTH),
            '--img-height', str(HEIGHT), '--intrinsics', '50', '50', '30', '18', '--device', 'cpu', *extra]


def test_raft_with_random_weights_writes_flows(hub, clip, tmp_path):
    from torchvision.models.optical_flow import raft_small
    torch.save(raft_small(weights=None).state_dict(), hub / RAFT_WEIGHTS['small'])
    out = tmp_path / 'out'
    assert prepare_train_data.main(argv(clip, out, '--flow', 'raft', '--masks', 'none')) == 0
    for kind in ('flow_f', 'flow_b'):
        flows = sorted((out / kind / 'clip').glob('*.flo'))
        assert len(flows) == 2
        flow = read_flo(flows[0])
        assert flow.shape == (HEIGHT, WIDTH, 2) and np.isfinite(flow).all()


def test_maskrcnn_with_random_weights_writes_uint8_masks(hub, clip, tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(),
               hub / MASKRCNN_WEIGHTS['v1'])
    out = tmp_path / 'out'
    assert prepare_train_data.main(argv(clip, out, '--mask-score', '0', '--mask-min-size', '64')) == 0
    segmentations = sorted((out / 'segmentation' / 'clip').glob('*.npy'))
    assert len(segmentations) == 3
    for path in segmentations:
        seg = np.load(path)
        assert seg.dtype == np.uint8 and seg.ndim == 3 and seg.shape[1:] == (HEIGHT, WIDTH)
        assert not seg[0].any() and set(np.unique(seg)) <= {0, 1}
        assert all(channel.any() for channel in seg[1:])


def test_maskrcnn_keeps_movable_classes_above_the_threshold(monkeypatch, tmp_path, hub):
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict(),
               hub / MASKRCNN_WEIGHTS['v1'])
    detector = MaskRcnnMasks(WeightsChoice('v1', str(hub / MASKRCNN_WEIGHTS['v1'])), 0.5, torch.device('cpu'))
    masks = torch.zeros(5, 1, 4, 6)
    masks[:, 0, 1, 1] = 0.9
    masks[4] = 0.2
    found = {'labels': torch.tensor([3, 5, 1, 8, 6]), 'scores': torch.tensor([0.9, 0.99, 0.4, 0.6, 0.95]),
             'masks': masks}
    monkeypatch.setattr(detector, 'model', lambda images: [found])
    kept = detector(np.zeros((4, 6, 3), np.uint8), 'scene', 'stem', None)
    assert kept.shape == (2, 4, 6) and kept.dtype == bool  # car 0.9 and truck 0.6; bus 0.95 has an empty mask


@pytest.mark.parametrize('option, name, missing', [
    (('--flow', 'raft', '--masks', 'none'), 'RAFT', RAFT_WEIGHTS),
    ((), 'Mask R-CNN', MASKRCNN_WEIGHTS),
])
def test_missing_weights_name_the_exact_path(hub, clip, tmp_path, capsys, option, name, missing):
    assert prepare_train_data.main(argv(clip, tmp_path / 'out', *option)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f'error: {name} weights not found')
    for file_name in missing.values():
        assert str(hub / file_name) in err
    assert not (tmp_path / 'out').exists()


def test_weights_that_do_not_fit_give_one_line_error(hub, clip, tmp_path, capsys):
    torch.save({'not': torch.zeros(1)}, hub / RAFT_WEIGHTS['large'])
    assert prepare_train_data.main(argv(clip, tmp_path / 'out', '--flow', 'raft', '--masks', 'none')) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'cannot load these weights into RAFT' in errors[0]
