"""Video-instance association against the exact ground truth of the toy data."""
import numpy as np
import pytest
import torch

from datasets.association import (accept_without_overlap, area_order, associate_pair, binary_instances,
                                  compose_flows, drop_empty_pairs, mutual_matches, non_occlusion_masks, pack_pairs,
                                  soft_iou)
from datasets.io import read_flo, read_segmentation
from datasets.toy_data import write_toy_kitti_vis

NUM_FRAMES = 5


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return write_toy_kitti_vis(tmp_path_factory.mktemp('toy'), num_scenes=3, num_frames=NUM_FRAMES, num_objects=5,
                               seed=3)


def load_pair(toy, scene, first, second):
    """Masks (stored channel order) and composed flows of frames ``first < second``."""
    root = toy.root
    masks = [binary_instances(read_segmentation(root / 'segmentation' / scene / f"{k:010d}.npy"))
             for k in (first, second)]
    forward = [read_flo(root / 'flow_f' / scene / f"{k:010d}.flo") for k in range(first, second)]
    backward = [read_flo(root / 'flow_b' / scene / f"{k:010d}.flo") for k in reversed(range(first, second))]
    return masks, compose_flows(forward), compose_flows(backward)


def associate_objects(toy, scene, first, second):
    """Associate two frames and return the matched (object in first, object in second) ids, in order."""
    (masks_a, masks_b), flow_ab, flow_ba = load_pair(toy, scene, first, second)
    order_a, order_b = area_order(masks_a), area_order(masks_b)
    pairs = associate_pair(masks_a[order_a], masks_b[order_b], flow_ab, flow_ba)
    objects_a = toy.channel_objects[scene][first][order_a]
    objects_b = toy.channel_objects[scene][second][order_b]
    return [(int(objects_a[i]), int(objects_b[j])) for i, j in pairs]


@pytest.mark.parametrize('gap', [1, 2])
def test_association_recovers_true_correspondences(toy, gap):
    """Every match is the same object; every object fully visible in both frames (and, for chained
    flows, in the frames between) is matched."""
    matched_total = 0
    for scene in toy.scenes:
        for first in range(NUM_FRAMES - gap):
            second = first + gap
            matches = associate_objects(toy, scene, first, second)
            assert all(a == b for a, b in matches), (scene, first, second, matches)
            matched = {a for a, _ in matches}
            expected = set.intersection(*(set(toy.fully_visible(scene, k)) for k in range(first, second + 1)))
            assert expected <= matched, (scene, first, second, matches)
            matched_total += len(matches)
    assert matched_total > 0


def test_hidden_object_and_object_leaving_the_frame_are_not_matched(toy):
    half = (NUM_FRAMES - 1) // 2
    for scene in toy.scenes:
        assert toy.visible_area[scene][half, 1] == 0
        assert toy.visible_area[scene][NUM_FRAMES - 1, 0] == 0
        matches = associate_objects(toy, scene, half - 1, half)
        assert 1 not in {a for a, _ in matches} and (2, 2) in matches
        matches = associate_objects(toy, scene, NUM_FRAMES - 2, NUM_FRAMES - 1)
        assert 0 not in {a for a, _ in matches}


def test_matches_follow_the_area_order_of_the_earlier_frame(toy):
    (masks_a, masks_b), flow_ab, flow_ba = load_pair(toy, toy.scenes[0], 0, 1)
    order_a, order_b = area_order(masks_a), area_order(masks_b)
    pairs = associate_pair(masks_a[order_a], masks_b[order_b], flow_ab, flow_ba)
    assert len(pairs) >= 2
    assert np.all(np.diff(pairs[:, 0]) > 0)
    areas = masks_a[order_a].sum(axis=(1, 2))
    assert np.all(np.diff(areas) <= 0)


@pytest.mark.parametrize('mni', [0, 1, 2, 20])
def test_packing_respects_cap_and_leaves_no_overlap(toy, mni):
    (masks_a, masks_b), flow_ab, flow_ba = load_pair(toy, toy.scenes[0], 0, 1)
    order_a, order_b = area_order(masks_a), area_order(masks_b)
    pairs = associate_pair(masks_a[order_a], masks_b[order_b], flow_ab, flow_ba)
    inst_a, inst_b = pack_pairs(pairs, masks_a[order_a], masks_b[order_b], mni)
    n = min(mni, len(pairs))
    for inst in (inst_a, inst_b):
        assert inst.shape == (1 + mni, 64, 96) and inst.dtype == np.float32
        assert np.all(inst[0] == n)
        assert inst[1:].sum(axis=0).max() <= 1
        assert all(inst[k].any() for k in range(1, n + 1))
        assert not inst[n + 1:].any()


def test_overlapping_instances_are_made_disjoint():
    masks = np.zeros((2, 6, 6), bool)
    masks[0, :4, :4] = True
    masks[1, 2:, 2:] = True
    pairs = accept_without_overlap(np.array([[0, 0], [1, 1]]), masks, masks)
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1]])
    inst, _ = pack_pairs(pairs, masks, masks, 2)
    assert inst[1].sum() == 16 and inst[2].sum() == 16 - 4
    inside = np.zeros((2, 6, 6), bool)
    inside[0] = True
    inside[1, 1, 1] = True
    np.testing.assert_array_equal(accept_without_overlap(np.array([[0, 0], [1, 1]]), inside, inside), [[0, 0]])


def test_mutual_best_match_and_threshold():
    iou_ab = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    iou_ba = torch.tensor([[0.8, 0.7], [0.0, 0.45]])
    np.testing.assert_array_equal(mutual_matches(iou_ab, iou_ba), [[0, 0]])
    iou_ab = torch.tensor([[0.9, 0.0], [0.0, 0.51]])
    iou_ba = torch.tensor([[0.9, 0.0], [0.0, 0.49]])
    np.testing.assert_array_equal(mutual_matches(iou_ab, iou_ba), [[0, 0]])


def test_soft_iou_known_values():
    warped = torch.zeros(1, 4, 4)
    warped[0, :2, :2] = 0.5
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 3, 3] = True
    valid = torch.ones(4, 4, dtype=torch.bool)
    iou = soft_iou(warped, masks, valid)
    torch.testing.assert_close(iou, torch.tensor([[0.5, 0.0]]))
    assert soft_iou(torch.zeros(1, 4, 4), masks, torch.zeros(4, 4, dtype=torch.bool)).sum() == 0


def test_compose_flows_known_answer():
    h, w = 6, 10
    shift = np.zeros((h, w, 2), np.float32)
    shift[..., 0] = 2
    ramp = np.zeros((h, w, 2), np.float32)
    ramp[..., 0] = 0.1 * np.arange(w)
    ramp[..., 1] = 1
    composed = compose_flows([shift, ramp])
    u = np.arange(w - 2)
    np.testing.assert_allclose(composed[:, :w - 2, 0], 2 + 0.1 * (u + 2) + np.zeros((h, 1)), atol=1e-5)
    np.testing.assert_allclose(composed[..., 1], 1, atol=1e-6)


def test_non_occlusion_masks_flag_inconsistent_and_outgoing_pixels():
    h, w = 8, 12
    forward = torch.zeros(1, 2, h, w)
    forward[:, 0] = 2.0
    backward = -forward.clone()
    backward[:, :, :, 6:] = 5.0
    noc_a, noc_b = non_occlusion_masks(forward, backward)
    assert noc_a[:, :4].all()
    assert not noc_a[:, 10:].any()
    assert not noc_a[:, 5:10].any()
    assert noc_b[:, 2:6].all() and not noc_b[:, 6:].any()


def test_empty_frames_give_no_pairs():
    flow = np.zeros((4, 4, 2), np.float32)
    assert associate_pair(np.zeros((0, 4, 4), bool), np.ones((1, 4, 4), bool), flow, flow).shape == (0, 2)
    inst_a, inst_b = pack_pairs(np.zeros((0, 2), np.int64), np.zeros((0, 4, 4), bool), np.ones((1, 4, 4), bool), 0)
    assert inst_a.shape == (1, 4, 4) and not inst_a.any() and not inst_b.any()


@pytest.mark.parametrize('as_tensor', [False, True])
def test_drop_empty_pairs_repacks(as_tensor):
    inst_a = np.zeros((4, 3, 3), np.float32)
    inst_b = np.zeros((4, 3, 3), np.float32)
    inst_a[0] = inst_b[0] = 3
    inst_a[1, 0, 0] = inst_b[1, 0, 0] = 1
    inst_a[2, 1, 1] = 1
    inst_a[3, 2, 2] = inst_b[3, 2, 2] = 1
    if as_tensor:
        inst_a, inst_b = torch.from_numpy(inst_a), torch.from_numpy(inst_b)
    out_a, out_b = drop_empty_pairs(inst_a, inst_b)
    assert torch.is_tensor(out_a) == as_tensor
    out_a, out_b = np.asarray(out_a), np.asarray(out_b)
    assert np.all(out_a[0] == 2) and np.all(out_b[0] == 2)
    assert out_a[1, 0, 0] == 1 and out_a[2, 2, 2] == 1 and not out_a[3].any()
    assert out_b[1, 0, 0] == 1 and out_b[2, 2, 2] == 1 and not out_b[3].any()
