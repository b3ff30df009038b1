"""SequenceFolder: sample layout, association through the loader, cache, seeds, workers, bad inputs."""
import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from datasets import DatasetError, SequenceFolder, ValidationSet
from datasets.custom_transforms import train_transform, valid_transform
from datasets.io import read_image, read_segmentation, save_npy, write_flo, write_image
from datasets.toy_data import write_toy_kitti_vis
from datasets.validation_folders import check_depth_range

H, W = 64, 96


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return write_toy_kitti_vis(tmp_path_factory.mktemp('toy'), num_scenes=3, num_frames=6, num_objects=5, seed=1,
                               with_depth=True)


@pytest.fixture
def fresh(tmp_path):
    """A toy folder a test may damage."""
    return write_toy_kitti_vis(tmp_path / 'data', num_scenes=2, num_frames=4, seed=2)


def frame_path(truth, kind, scene, k, ext):
    return truth.root / kind / scene / f"{k:010d}.{ext}"


def object_of(mask, truth, scene, k):
    """Object id whose stored mask contains the packed ``mask`` [H,W]."""
    seg = read_segmentation(frame_path(truth, 'segmentation', scene, k, 'npy'))[1:] != 0
    overlap = (seg & (mask > 0)).sum(axis=(1, 2))
    assert overlap.max() == (mask > 0).sum()
    return int(truth.channel_objects[scene][k][overlap.argmax()])


def check_instances(tgt, ref, mni):
    for inst in (tgt, ref):
        assert inst.shape == (1 + mni, H, W)
    n = int(tgt[0, 0, 0])
    assert np.all(np.asarray(tgt[0]) == n) and np.all(np.asarray(ref[0]) == n) and n <= mni
    for inst in (tgt, ref):
        inst = np.asarray(inst)
        assert inst[1:].sum(axis=0).max() <= 1
        assert all(inst[k].any() for k in range(1, n + 1)) and not inst[n + 1:].any()
    return n


@pytest.mark.parametrize('sequence_length', [3, 5])
def test_unaugmented_samples_pair_the_same_objects(toy, sequence_length):
    dataset = SequenceFolder(toy.root, shuffle=False, sequence_length=sequence_length, max_num_instances=4, cache=False)
    demi = (sequence_length - 1) // 2
    scenes_in_train = toy.scenes[:-1]
    assert len(dataset) == len(scenes_in_train) * (6 - 2 * demi)
    shifts = [s for s in range(-demi, demi + 1) if s != 0]
    total = 0
    for index in range(len(dataset)):
        tgt_img, ref_imgs, K, K_inv, tgt_insts, ref_insts = dataset[index]
        scene_index, t = dataset.samples[index]
        scene = toy.scenes[scene_index]
        assert tgt_img.shape == (H, W, 3) and tgt_img.dtype == np.float32 and tgt_img.max() > 200
        assert len(ref_imgs) == len(tgt_insts) == len(ref_insts) == sequence_length - 1
        np.testing.assert_allclose(K, toy.intrinsics)
        np.testing.assert_allclose(K @ K_inv, np.eye(3), atol=1e-5)
        for shift, tgt, ref in zip(shifts, tgt_insts, ref_insts):
            n = check_instances(tgt, ref, 4)
            total += n
            for k in range(1, n + 1):
                assert object_of(tgt[k], toy, scene, t) == object_of(ref[k], toy, scene, t + shift)
    assert total > 0


def test_reference_order_and_images(toy):
    dataset = SequenceFolder(toy.root, shuffle=False, sequence_length=5, cache=False)
    tgt_img, ref_imgs, *_ = dataset[1]
    scene_index, t = dataset.samples[1]
    assert t == 3
    for k, image in zip([1, 2, 4, 5], ref_imgs):
        np.testing.assert_array_equal(image, read_image(frame_path(toy, 'image', toy.scenes[scene_index], k, 'jpg')))


def test_augmented_samples_are_normalised_tensors_and_a_function_of_seed_epoch_and_index(toy):
    kwargs = dict(seed=7, max_num_instances=3, transform=train_transform(), cache=False)
    first = SequenceFolder(toy.root, **kwargs)
    second = SequenceFolder(toy.root, **kwargs)
    assert first.samples == second.samples
    for index in range(3):
        a, b = first[index], second[index]
        tgt_img, ref_imgs, K, K_inv, tgt_insts, ref_insts = a
        assert tgt_img.shape == (3, H, W) and tgt_img.min() >= -1 and tgt_img.max() <= 1
        assert K.dtype == np.float32 and K_inv.dtype == np.float32
        for tgt, ref in zip(tgt_insts, ref_insts):
            assert torch.is_tensor(tgt)
            check_instances(tgt, ref, 3)
        torch.testing.assert_close(a[0], b[0])
        np.testing.assert_array_equal(a[2], b[2])
        for x, y in zip(a[4] + a[5], b[4] + b[5]):
            torch.testing.assert_close(x, y)
    different_seed = SequenceFolder(toy.root, **dict(kwargs, seed=8, shuffle=False))
    same_seed = SequenceFolder(toy.root, **dict(kwargs, shuffle=False))
    np.testing.assert_array_equal(same_seed[0][2], same_seed[0][2])
    intrinsics = []
    for epoch in range(4):
        same_seed.set_epoch(epoch)
        intrinsics.append(same_seed[0][2])
    assert any(not np.array_equal(intrinsics[0], k) for k in intrinsics[1:])
    assert not np.array_equal(different_seed[0][2], SequenceFolder(toy.root, **dict(kwargs, shuffle=False))[0][2])


def test_zero_instances_is_the_rigid_setting(toy):
    dataset = SequenceFolder(toy.root, max_num_instances=0, transform=train_transform(), seed=0, cache=False)
    *_, tgt_insts, ref_insts = dataset[0]
    assert all(inst.shape == (1, H, W) and not inst.any() for inst in tgt_insts + ref_insts)


def test_cached_and_uncached_samples_are_identical(toy, tmp_path):
    uncached = SequenceFolder(toy.root, shuffle=False, max_num_instances=3, cache=False)
    cached = SequenceFolder(toy.root, shuffle=False, max_num_instances=3, cache_dir=tmp_path / 'cache')
    for _ in range(2):
        for index in range(len(uncached)):
            for x, y in zip(uncached[index][4] + uncached[index][5], cached[index][4] + cached[index][5]):
                np.testing.assert_array_equal(x, y)
    entries = sorted((tmp_path / 'cache').glob('*.npy'))
    assert len(entries) == len(toy.scenes[:-1]) * 5
    wider = SequenceFolder(toy.root, shuffle=False, max_num_instances=20, cache_dir=tmp_path / 'cache')
    reference = SequenceFolder(toy.root, shuffle=False, max_num_instances=20, cache=False)
    for x, y in zip(wider[0][4], reference[0][4]):
        np.testing.assert_array_equal(x, y)
    assert sorted((tmp_path / 'cache').glob('*.npy')) == entries
    for entry in entries:
        entry.write_bytes(b'corrupt')
    for x, y in zip(cached[0][5], uncached[0][5]):
        np.testing.assert_array_equal(x, y)


def test_default_cache_location_and_invalidation(fresh):
    scene = fresh.scenes[0]
    dataset = SequenceFolder(fresh.root, shuffle=False, max_num_instances=5)
    before = dataset[0]
    assert int(before[4][0][0, 0, 0]) > 0
    cache_dir = fresh.root / '.cache' / 'association'
    count = len(list(cache_dir.glob('*.npy')))
    assert count == 2
    seg_path = frame_path(fresh, 'segmentation', scene, 0, 'npy')
    save_npy(seg_path, np.zeros((1, H, W), np.uint8))
    after = dataset[0]
    assert int(after[4][0][0, 0, 0]) == 0 and int(after[4][1][0, 0, 0]) > 0
    assert len(list(cache_dir.glob('*.npy'))) == count + 1
    flow_path = frame_path(fresh, 'flow_f', scene, 1, 'flo')
    os.utime(flow_path, ns=(0, 12345))
    dataset[0]
    assert len(list(cache_dir.glob('*.npy'))) == count + 2


def test_two_workers_reproducible_and_cache_safe(toy, tmp_path):
    def batches():
        dataset = SequenceFolder(toy.root, seed=3, max_num_instances=2, transform=train_transform(),
                                 cache_dir=tmp_path / 'cache')
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
        torch.manual_seed(0)
        return [batch for batch in loader]

    first, second = batches(), batches()
    assert len(first) == 4
    for a, b in zip(first, second):
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[2], b[2])
        for x, y in zip(a[4] + a[5], b[4] + b[5]):
            torch.testing.assert_close(x, y)
    assert first[0][4][0].shape == (2, 3, H, W)
    assert len(list((tmp_path / 'cache').glob('*.npy'))) == 10
    assert not list((tmp_path / 'cache').glob('*.tmp'))


def test_proportion_and_begin_idx(toy):
    full = SequenceFolder(toy.root, seed=5, cache=False)
    part = SequenceFolder(toy.root, seed=5, proportion=0.5, begin_idx=1, cache=False)
    assert part.samples == full.samples[:4][1:]


def assert_error(excinfo, path, fragment):
    message = str(excinfo.value)
    assert '\n' not in message and message.startswith(f"{path}: ") and fragment in message, message


def test_missing_scene_list_and_scene_folder(fresh):
    (fresh.root / 'val.txt').unlink()
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root, train=False)
    assert_error(excinfo, fresh.root / 'val.txt', 'not found')
    (fresh.root / 'train.txt').write_text('scene_00\nnowhere\n')
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / 'image' / 'nowhere', 'not found')
    (fresh.root / 'train.txt').write_text('scene_00\n')
    shutil.rmtree(fresh.root / 'flow_b' / 'scene_00')
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / 'flow_b' / 'scene_00', 'not found')


def test_scene_list_not_in_utf8(fresh):
    """A list saved as UTF-16 (Windows PowerShell's ``>``) is one line naming it, not a UnicodeDecodeError."""
    (fresh.root / 'train.txt').write_text('scene_00\n', encoding='utf-16')
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / 'train.txt', 'not a UTF-8 text file')


def test_scene_list_with_a_byte_order_mark(fresh):
    """A list saved as 'UTF-8 with BOM' (Windows Notepad) reads as the names it shows."""
    (fresh.root / 'train.txt').write_text('scene_00\r\nscene_01\r\n', encoding='utf-8-sig')
    assert [scene.name for scene in SequenceFolder(fresh.root, cache=False).scenes] == ['scene_00', 'scene_01']


def test_a_scene_listed_twice_is_refused(fresh):
    (fresh.root / 'train.txt').write_text('scene_00\nscene_01\nscene_00\n')
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / 'train.txt', "scene 'scene_00' is listed twice")


def test_missing_or_bad_cam(fresh):
    cam = fresh.root / 'image' / fresh.scenes[0] / 'cam.txt'
    cam.write_text('1 0 0\n0 1 0\n')
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, cam, '3x3')
    cam.unlink()
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, cam, 'not found')


def test_short_scene_is_skipped_with_warning_unless_none_left(fresh):
    (fresh.root / 'train.txt').write_text(''.join(f"{s}\n" for s in fresh.scenes))
    for kind, ext, frames in (('image', 'jpg', (2, 3)), ('segmentation', 'npy', (2, 3)), ('flow_f', 'flo', (1, 2)),
                              ('flow_b', 'flo', (1, 2))):
        for k in frames:
            frame_path(fresh, kind, fresh.scenes[1], k, ext).unlink()
    with pytest.warns(RuntimeWarning, match='2 frames, fewer than the sequence length 3; scene skipped'):
        dataset = SequenceFolder(fresh.root, cache=False)
    assert len(dataset) == 2 and {s for s, _ in dataset.samples} == {0}
    (fresh.root / 'train.txt').write_text(f"{fresh.scenes[1]}\n")
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(DatasetError) as excinfo:
            SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / 'train.txt', 'no listed scene has at least 3 frames')


@pytest.mark.parametrize('kind, ext, fragment', [
    ('segmentation', 'npy', '3 segmentation files for 4 frames'),
    ('flow_f', 'flo', '2 .flo files for 4 frames'),
    ('flow_b', 'flo', '2 .flo files for 4 frames'),
])
def test_different_numbers_of_files(fresh, kind, ext, fragment):
    frame_path(fresh, kind, fresh.scenes[0], 2, ext).unlink()
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root)
    assert_error(excinfo, fresh.root / kind / fresh.scenes[0], fragment)


def test_truncated_flow_in_a_scene(fresh):
    path = frame_path(fresh, 'flow_f', fresh.scenes[0], 1, 'flo')
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root, shuffle=False, cache=False)[0]
    assert_error(excinfo, path, 'truncated .flo')


def test_flow_size_different_from_the_frames(fresh):
    path = frame_path(fresh, 'flow_b', fresh.scenes[0], 0, 'flo')
    write_flo(path, np.zeros((H, W - 2, 2), np.float32))
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root, shuffle=False, cache=False)[0]
    assert_error(excinfo, path, f'flow is {H}x{W - 2} (HxW), the frames are {H}x{W}')


def test_frames_of_another_size_than_the_scenes_first_frame(fresh):
    """A sample whose frames all have another size than frame 0 (whose size cam.txt is for) is refused, not
    batched with the others (torch.stack's 'stack expects each tensor to be equal size') or trained on silently."""
    for k in (1, 2, 3):
        path = frame_path(fresh, 'image', fresh.scenes[0], k, 'jpg')
        write_image(path, np.repeat(read_image(path), 2, axis=0))
    dataset = SequenceFolder(fresh.root, shuffle=False, cache=False, max_num_instances=0)
    assert [target for _, target in dataset.samples[:2]] == [1, 2]
    with pytest.raises(DatasetError) as excinfo:
        dataset[1]
    assert_error(excinfo, frame_path(fresh, 'image', fresh.scenes[0], 2, 'jpg'),
                 f'frame is {2 * H}x{W} (HxW), the first frame of its scene, 0000000000.jpg, is {H}x{W}')


@pytest.mark.parametrize('array, fragment', [
    (np.zeros((2, H, W + 1), np.uint8), f'the frame is {H}x{W}'),
    (np.ones((2, H, W), np.uint8), 'channel 0'),
    (np.zeros((H, W), np.uint8), '[1+N,H,W]'),
])
def test_bad_segmentation_in_a_sample(fresh, array, fragment):
    path = frame_path(fresh, 'segmentation', fresh.scenes[0], 1, 'npy')
    np.save(path, array)
    with pytest.raises(DatasetError) as excinfo:
        SequenceFolder(fresh.root, shuffle=False)[0]
    assert_error(excinfo, path, fragment)


def test_png_frames_are_accepted(tmp_path):
    truth = write_toy_kitti_vis(tmp_path, num_scenes=1, num_frames=3, image_ext='png')
    tgt_img, *_ = SequenceFolder(tmp_path, cache=False)[0]
    assert tgt_img.shape == (H, W, 3)


def test_validation_set_returns_depth_and_foreground(toy):
    dataset = ValidationSet(toy.root, transform=valid_transform())
    assert len(dataset) == 6
    img, depth, fg_mask = dataset[2]
    assert img.shape == (3, H, W) and img.min() >= -1 and img.max() <= 1
    assert depth.shape == (H, W) and depth.dtype == np.float32
    seg = read_segmentation(frame_path(toy, 'segmentation', toy.scenes[-1], 2, 'npy'))
    np.testing.assert_array_equal(fg_mask, seg[1:].any(axis=0))
    assert np.all(depth[~fg_mask] == 30) and np.all(depth[fg_mask] < 30)
    raw_img, *_ = ValidationSet(toy.root)[2]
    assert raw_img.shape == (H, W, 3) and raw_img.max() > 200


def test_validation_set_non_numeric_depth(fresh):
    for k in range(4):
        save_npy(frame_path(fresh, 'image', fresh.scenes[-1], k, 'npy'), np.full((H, W), 'x'))
    dataset = ValidationSet(fresh.root)
    with pytest.raises(DatasetError) as excinfo:
        dataset[0]
    assert_error(excinfo, frame_path(fresh, 'image', fresh.scenes[-1], 0, 'npy'), 'depth must be a numeric array')


def test_depth_in_other_units_than_metres_is_refused(toy, tmp_path):
    """Millimetres leave no pixel in (1e-3, 80): validation would end in a KeyError after a training epoch."""
    frame = frame_path(toy, 'image', toy.scenes[-1], 0, 'jpg')
    check_depth_range(frame.with_suffix('.npy'), frame)
    millimetres = tmp_path / 'depth.npy'
    save_npy(millimetres, np.load(frame.with_suffix('.npy')) * 1000)
    with pytest.raises(DatasetError) as excinfo:
        check_depth_range(millimetres, frame)
    assert_error(excinfo, millimetres, 'no depth value in (0.001, 80) inside the evaluation crop')


def test_validation_set_missing_depth(fresh):
    with pytest.raises(DatasetError) as excinfo:
        ValidationSet(fresh.root)
    assert_error(excinfo, frame_path(fresh, 'image', fresh.scenes[-1], 0, 'npy'), 'ground-truth depth')
