"""data/prepare_train_data.py on Cityscapes, frame folders and videos; resizing, cropping and mask files."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data import prepare_train_data
from data.prepare_models import read_instance_file
from data.prepare_sources import FrameGeometry, PrepareError, read_name_list
from datasets.io import read_cam, read_flo, read_image
from datasets.sequence_folders import SequenceFolder

CITYSCAPES_K = {'fx': 100.0, 'fy': 110.0, 'u0': 60.0, 'v0': 30.0}


def textured(seed, height, width):
    """A smooth random RGB texture ``[H,W,3]`` uint8 with a bright bottom quarter (a 'car hood')."""
    noise = np.random.default_rng(seed).uniform(0, 255, (height // 8, width // 8, 3)).astype(np.float32)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image[height * 3 // 4:] = 250
    return np.clip(image, 0, 255).astype(np.uint8)


def luma(rgb):
    """Grey levels of an RGB image as float (JPEG keeps them; colour is subsampled)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(float)


def save_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_cityscapes(root, split='train'):
    """Fake Cityscapes: aachen_000000 frames 0-3, bochum_000000 frames 100-102 and 200-203 (two snippets)."""
    frames = {('aachen', 0): range(0, 4), ('bochum', 0): list(range(100, 103)) + list(range(200, 204))}
    for (city, seq), numbers in frames.items():
        for number in numbers:
            save_rgb(root / 'leftImg8bit_sequence' / split / city / f'{city}_{seq:06d}_{number:06d}_leftImg8bit.png',
                     textured(number, 64, 128))
        camera = root / 'camera' / split / city / f'{city}_{seq:06d}_{numbers[-1]:06d}_camera.json'
        camera.parent.mkdir(parents=True, exist_ok=True)
        camera.write_text(json.dumps({'extrinsic': {}, 'intrinsic': CITYSCAPES_K}))


def test_cityscapes_snippets_cropped_and_intrinsics_scaled(tmp_path):
    write_cityscapes(tmp_path / 'cs')
    out = tmp_path / 'out'
    argv = ['--source', 'cityscapes', '--input', str(tmp_path / 'cs'), '--output', str(out),
            '--img-width', '64', '--img-height', '24', '--masks', 'none', '--val-scenes', '1']
    assert prepare_train_data.main(argv) == 0
    scenes = sorted(p.name for p in (out / 'image').iterdir())
    assert scenes == ['aachen_000000_000000', 'bochum_000000_000100', 'bochum_000000_000200']
    lists = (out / 'train.txt').read_text().split() + (out / 'val.txt').read_text().split()
    assert sorted(lists) == scenes
    assert (out / 'val.txt').read_text().split() in (['aachen_000000_000000'],
                                                      ['bochum_000000_000100', 'bochum_000000_000200'])
    expected_k = np.array([[50, 0, 30], [0, 55, 15], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(read_cam(out / 'image' / 'aachen_000000_000000' / 'cam.txt'), expected_k)
    stored = read_image(out / 'image' / 'bochum_000000_000200' / '0000000003.jpg')
    source = cv2.resize(textured(203, 64, 128), (64, 32), interpolation=cv2.INTER_AREA)[:24]
    assert stored.shape == (24, 64, 3)
    assert np.abs(luma(stored) - luma(source)).mean() < 2
    assert len(list((out / 'flow_b' / 'bochum_000000_000100').glob('*.flo'))) == 2
    SequenceFolder(out, cache=False)[0]


def test_cityscapes_default_size_is_832x342_cropped_to_832x256():
    geometry = FrameGeometry((1024, 2048), (256, 832), keep_fraction=0.75)
    assert geometry.resized_hw == (342, 832)
    k = geometry.intrinsics([[2262.5, 0, 1096.98], [0, 2265.3, 513.137], [0, 0, 1]])
    np.testing.assert_allclose(k[0], [2262.5 * 832 / 2048, 0, 1096.98 * 832 / 2048])
    np.testing.assert_allclose(k[1], [0, 2265.3 * 342 / 1024, 513.137 * 342 / 1024])
    assert geometry.image(np.zeros((1024, 2048, 3), np.uint8)).shape == (256, 832, 3)


def test_cityscapes_missing_camera_file_is_named(tmp_path, capsys):
    write_cityscapes(tmp_path / 'cs')
    for camera in (tmp_path / 'cs' / 'camera' / 'train' / 'bochum').iterdir():
        camera.unlink()
    argv = ['--source', 'cityscapes', '--input', str(tmp_path / 'cs'), '--output', str(tmp_path / 'out'),
            '--masks', 'none']
    assert prepare_train_data.main(argv) == 1
    assert "camera/train/bochum/bochum_000000_*_camera.json: no Cityscapes camera file found" in capsys.readouterr().err


def test_frame_folder_natural_order_intrinsics_and_no_masks_note(tmp_path, capsys):
    clip = tmp_path / 'my_clip'
    for k in range(1, 12):
        save_rgb(clip / f'frame{k}.png', textured(k, 40, 80))
    out = tmp_path / 'out'
    argv = ['--source', 'frames', '--input', str(clip), '--output', str(out), '--img-width', '160',
            '--img-height', '64', '--intrinsics', '50', '40', '39.5', '19.5', '--masks', 'none']
    assert prepare_train_data.main(argv) == 0
    assert 'learns no object motion' in capsys.readouterr().out
    scene = out / 'image' / 'my_clip'
    np.testing.assert_allclose(read_cam(scene / 'cam.txt'), [[100, 0, 79], [0, 64, 31.2], [0, 0, 1]], rtol=1e-6)
    second = read_image(scene / '0000000001.jpg')
    expected = cv2.resize(textured(2, 40, 80), (160, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(luma(second) - luma(expected)).mean() < 2
    assert np.load(out / 'segmentation' / 'my_clip' / '0000000010.npy').shape == (1, 64, 160)
    assert read_flo(out / 'flow_f' / 'my_clip' / '0000000009.flo').shape == (64, 160, 2)
    assert (out / 'train.txt').read_text() == (out / 'val.txt').read_text() == 'my_clip\n'


def test_frame_folder_of_folders_and_masks_from_stems(tmp_path):
    for clip in ('a', 'b', 'c'):
        for k in range(3):
            save_rgb(tmp_path / 'clips' / clip / f'{k:03d}.jpg', textured(k, 32, 64))
    ids = np.zeros((32, 64), np.uint8)
    ids[4:10, 8:20], ids[20:30, 40:60] = 7, 3
    (tmp_path / 'masks').mkdir()
    for k in range(3):
        cv2.imwrite(str(tmp_path / 'masks' / f'{k:03d}.png'), ids)
    np.save(tmp_path / 'masks' / '001.npy', np.zeros((2, 32, 64), np.uint8))
    out = tmp_path / 'out'
    argv = ['--source', 'frames', '--input', str(tmp_path / 'clips'), '--output', str(out), '--img-width', '64',
            '--img-height', '32', '--intrinsics', '50', '50', '32', '16', '--masks-from', str(tmp_path / 'masks')]
    assert prepare_train_data.main(argv) == 0
    assert sorted(p.name for p in (out / 'image').iterdir()) == ['a', 'b', 'c']
    first = np.load(out / 'segmentation' / 'b' / '0000000000.npy')
    np.testing.assert_array_equal(first, np.stack([np.zeros_like(ids), ids == 3, ids == 7]).astype(np.uint8))
    assert np.load(out / 'segmentation' / 'b' / '0000000001.npy').shape == (1, 32, 64)


def test_video_file_with_frame_step(tmp_path):
    video = tmp_path / 'drive.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (96, 48))
    for k in range(7):
        writer.write(cv2.cvtColor(textured(k, 48, 96), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / 'out'
    argv = ['--source', 'video', '--input', str(video), '--output', str(out), '--img-width', '64',
            '--img-height', '32', '--intrinsics', '60', '60', '48', '24', '--masks', 'none', '--frame-step', '3']
    assert prepare_train_data.main(argv) == 0
    frames = sorted((out / 'image' / 'drive').glob('*.jpg'))
    assert [p.name for p in frames] == ['0000000000.jpg', '0000000001.jpg', '0000000002.jpg']
    stored = luma(read_image(frames[2]))
    errors = [np.abs(stored - luma(cv2.resize(textured(k, 48, 96), (64, 32), interpolation=cv2.INTER_AREA))).mean()
              for k in range(7)]
    assert np.argmin(errors) == 6
    np.testing.assert_allclose(read_cam(out / 'image' / 'drive' / 'cam.txt'),
                               [[40, 0, 32], [0, 40, 16], [0, 0, 1]], rtol=1e-6)


@pytest.mark.parametrize('masks, expected', [
    (np.stack([np.zeros((4, 5)), np.eye(4, 5), np.ones((4, 5))]), 2),
    (np.stack([np.eye(4, 5), np.zeros((4, 5))]), 1),
    (np.array([[0, 1, 1, 0, 2]] * 4), 2),
])
def test_instance_npy_layouts(tmp_path, masks, expected):
    np.save(tmp_path / 'm.npy', masks)
    assert read_instance_file(tmp_path / 'm.npy').shape == (expected, 4, 5)


def test_colour_instance_png_and_bad_files(tmp_path):
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[:2, :2] = (255, 0, 0)
    colour[3:, 5:] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / 'c.png'), colour)
    masks = read_instance_file(tmp_path / 'c.png')
    assert masks.shape == (2, 6, 8) and sorted(masks.sum(axis=(1, 2))) == [4, 9]
    (tmp_path / 'bad.png').write_bytes(b'not a png')
    with pytest.raises(PrepareError, match='bad.png: cannot decode'):
        read_instance_file(tmp_path / 'bad.png')
    np.save(tmp_path / 'bad.npy', np.zeros((1, 2, 3, 4)))
    with pytest.raises(PrepareError, match=r'bad.npy: masks must be .* got \[1, 2, 3, 4\]'):
        read_instance_file(tmp_path / 'bad.npy')


def test_mask_nearest_resize_with_crop():
    geometry = FrameGeometry((8, 8), (3, 4), keep_fraction=0.75)
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 1, 1] = masks[0, 7, 7] = True
    resized = geometry.masks(masks)
    assert resized.shape == (1, 3, 4)
    assert resized[0, 0, 0] and resized.sum() == 1


def test_argument_errors_are_one_line(tmp_path, capsys):
    clip = tmp_path / 'clip'
    for k in range(3):
        save_rgb(clip / f'{k}.png', textured(k, 16 + 8 * (k == 2), 32))
    base = ['--source', 'frames', '--input', str(clip), '--output', str(tmp_path / 'out')]
    cases = [
        (base + ['--masks', 'none'], '--source frames needs --intrinsics FX FY CX CY'),
        (base + ['--intrinsics', '1', '1', '1', '1', '--masks', 'none', '--masks-from', str(clip)],
         'use either --masks or --masks-from'),
        (base + ['--intrinsics', '1', '1', '1', '1', '--masks', 'none', '--val-depth'], 'only for --source kitti'),
        (base + ['--intrinsics', '0', '1', '1', '1', '--masks', 'none'], 'FX and FY must be positive'),
        (base + ['--intrinsics', '1', '1', '1', '1', '--masks', 'none'], '2.png: frame is 24x32 (HxW)'),
        (['--source', 'video', '--input', str(tmp_path / 'none.mp4'), '--output', str(tmp_path / 'o'),
          '--intrinsics', '1', '1', '1', '1', '--masks', 'none'], 'none.mp4: video file not found'),
    ]
    for argv, message in cases:
        assert prepare_train_data.main(argv) == 1, message
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
        assert len(errors) == 1 and message in errors[0], (message, errors)


def test_prepare_cityscapes_script_runs_and_checks_its_input(tmp_path):
    write_cityscapes(tmp_path / 'cs')
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts',
                          'prepare_cityscapes_vis.sh')
    env = dict(os.environ, CITYSCAPES=str(tmp_path / 'cs'), OUTPUT=str(tmp_path / 'out'), MASKS='none',
               WORKERS='1', OMP_NUM_THREADS='1', PYTHON=sys.executable)
    result = subprocess.run(['sh', script, '--img-width', '64', '--img-height', '24'], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / 'out' / 'image' / 'aachen_000000_000000' / '0000000000.jpg').shape == (24, 64, 3)
    env['CITYSCAPES'] = str(tmp_path / 'missing')
    result = subprocess.run(['sh', script], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and 'has no leftImg8bit_sequence/ folder' in result.stderr


def test_short_sub_folders_are_skipped(tmp_path, capsys):
    for clip, count in (('long', 4), ('short', 2)):
        for k in range(count):
            save_rgb(tmp_path / 'clips' / clip / f'{k}.png', textured(k, 32, 64))
    argv = ['--source', 'frames', '--input', str(tmp_path / 'clips'), '--output', str(tmp_path / 'out'),
            '--img-width', '64', '--img-height', '32', '--intrinsics', '50', '50', '32', '16', '--masks', 'none']
    assert prepare_train_data.main(argv) == 0
    assert 'short skipped: 2 frames' in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / 'out' / 'image').iterdir()) == ['long']


def test_an_output_holding_a_dataset_it_did_not_write_is_left_alone(tmp_path, capsys):
    """A downloaded KITTI-VIS in --output (no .prepare/) is refused: its frames, masks and lists would be replaced."""
    for k in range(3):
        save_rgb(tmp_path / 'clips' / 'scene' / f'{k}.png', textured(k, 32, 64))
    theirs = tmp_path / 'kitti_256'
    (theirs / 'segmentation' / 'scene').mkdir(parents=True)
    np.save(theirs / 'segmentation' / 'scene' / '0000000000.npy', np.ones((2, 4, 4), np.uint8))
    (theirs / 'train.txt').write_text('scene\nother\n')
    files = {path: path.read_bytes() for path in theirs.rglob('*') if path.is_file()}
    argv = ['--source', 'frames', '--input', str(tmp_path / 'clips'), '--img-width', '64', '--img-height', '32',
            '--intrinsics', '50', '50', '32', '16', '--masks', 'none', '--output']
    assert prepare_train_data.main(argv + [str(theirs)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and f'--output {theirs}: holds a dataset (segmentation)' in errors[0], errors
    assert {path: path.read_bytes() for path in theirs.rglob('*') if path.is_file()} == files
    # its own output is prepared again (and resumed) as before
    assert prepare_train_data.main(argv + [str(tmp_path / 'mine')]) == 0
    assert prepare_train_data.main(argv + [str(tmp_path / 'mine')]) == 0
    assert '1 already prepared' in capsys.readouterr().out


def test_a_reference_list_not_in_utf8_is_one_line_and_a_bom_is_dropped(tmp_path):
    path = tmp_path / 'static_frames.txt'
    path.write_text('2011_09_26_drive_0001_sync 02 0000000001\n', encoding='utf-16')
    with pytest.raises(PrepareError, match=f'^{path}: not a UTF-8 text file \\(byte 0: '):
        read_name_list(path, 'static frames')
    path.write_text('2011_09_26 02\r\n\r\n', encoding='utf-8-sig')
    assert read_name_list(path, 'static frames') == ['2011_09_26 02']
