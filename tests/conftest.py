import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """A one-scene synthetic KITTI-VIS world at 64x96 (scene 4 of seed 0: a parked and a moving car visible in
    all 3 frames): ``(root, scene)``."""
    from data import synthetic
    root = tmp_path_factory.mktemp('world')
    scene = synthetic.render_scene(seed=0, index=4, height=64, width=96, frames=3, min_cars=3, max_cars=4)
    synthetic.write_kitti_vis([scene], root)
    return root, scene


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    """A toy KITTI-VIS folder (2 scenes x 5 frames, moving rectangles, GT depth) for the training tests."""
    from datasets.toy_data import write_toy_kitti_vis
    root = tmp_path_factory.mktemp('toy')
    write_toy_kitti_vis(str(root), num_frames=5, with_depth=True)
    return str(root)


@pytest.fixture(scope='module')
def toy_batch(toy_root):
    """The first two training samples of ``toy_root`` (no augmentation) as a step's inputs."""
    from datasets.custom_transforms import valid_transform
    from datasets.sequence_folders import SequenceFolder
    dataset = SequenceFolder(toy_root, seed=0, shuffle=False, max_num_instances=3, transform=valid_transform())
    tgt, refs, K, _, tgt_insts, ref_insts = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert tgt_insts[0][:, 0, 0, 0].sum() > 0, 'the toy samples should hold instances'
    return tgt, refs, K, tgt_insts, ref_insts
