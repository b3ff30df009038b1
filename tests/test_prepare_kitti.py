"""data/prepare_train_data.py on the synthetic world's raw-KITTI drives (exact flows, masks, depth known)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data import prepare_run, prepare_train_data
from data.synthetic import render_scene, write_kitti_vis, write_raw_kitti
from datasets.io import read_cam, read_flo, read_image
from datasets.sequence_folders import SequenceFolder
from datasets.validation_folders import ValidationSet
from kitti_eval.kitti_raw import read_calib_file

HEIGHT, WIDTH, FRAMES = 64, 192, 6
DRIVE = '2011_09_26_drive_{:04d}_sync'


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Three synthetic drives (0001-0003; 0002 is an Eigen test scene) in raw and KITTI-VIS layouts."""
    root = tmp_path_factory.mktemp('synthetic')
    scenes = [render_scene(0, i, HEIGHT, WIDTH, FRAMES) for i in range(3)]
    write_raw_kitti(scenes, root / 'raw')
    write_kitti_vis(scenes, root / 'vis')
    return {'root': root, 'raw': root / 'raw', 'vis': root / 'vis', 'scenes': scenes}


def run(world, out, *extra):
    argv = ['--source', 'kitti', '--input', str(world['raw']), '--output', str(out),
            '--img-width', str(WIDTH), '--img-height', str(HEIGHT), *extra]
    return prepare_train_data.main(argv)


def scene_dir(out, kind, index):
    return out / kind / f'{DRIVE.format(index + 1)}_02'


@pytest.fixture(scope='module')
def prepared(world, tmp_path_factory):
    """Default lists, masks from the synthetic ground truth, velodyne depth for the val scene."""
    out = tmp_path_factory.mktemp('prepared')
    assert run(world, out, '--masks-from', str(world['vis'] / 'segmentation'), '--val-depth') == 0
    return out


def test_test_scenes_are_left_out_and_lists_written(prepared):
    train = (prepared / 'train.txt').read_text().split()
    val = (prepared / 'val.txt').read_text().split()
    assert sorted(train + val) == [f'{DRIVE.format(1)}_02', f'{DRIVE.format(3)}_02']
    assert len(val) == 1
    assert not (prepared / 'image' / f'{DRIVE.format(2)}_02').exists()


def test_prepared_folder_loads_with_sequence_folder(prepared):
    dataset = SequenceFolder(prepared, train=True, shuffle=False, max_num_instances=4, cache=False)
    assert len(dataset) == FRAMES - 2
    tgt, refs, intrinsics, _, tgt_insts, ref_insts = dataset[1]
    assert tgt.shape == (HEIGHT, WIDTH, 3) and len(refs) == 2
    assert intrinsics.shape == (3, 3)
    assert tgt_insts[0].shape == (5, HEIGHT, WIDTH) and ref_insts[1].shape == (5, HEIGHT, WIDTH)
    assert ValidationSet(prepared)[0][1].shape == (HEIGHT, WIDTH)


def test_cam_txt_is_p_rect_as_in_the_calibration(prepared, world):
    p_rect = read_calib_file(world['raw'] / '2011_09_26' / 'calib_cam_to_cam.txt')['P_rect_02'].reshape(3, 4)
    np.testing.assert_allclose(read_cam(scene_dir(prepared, 'image', 0) / 'cam.txt'), p_rect[:, :3], rtol=1e-6)


def test_cam_txt_scales_with_the_frames(world, tmp_path):
    assert run(world, tmp_path, '--masks', 'none', '--img-width', '96', '--img-height', '48') == 0
    p_rect = read_calib_file(world['raw'] / '2011_09_26' / 'calib_cam_to_cam.txt')['P_rect_02'].reshape(3, 4)
    expected = p_rect[:, :3] * np.array([[0.5], [0.75], [1.0]])
    np.testing.assert_allclose(read_cam(scene_dir(tmp_path, 'image', 0) / 'cam.txt'), expected, rtol=1e-6)
    assert read_image(scene_dir(tmp_path, 'image', 0) / '0000000000.jpg').shape == (48, 96, 3)
    assert np.load(scene_dir(tmp_path, 'segmentation', 0) / '0000000003.npy').shape == (1, 48, 96)


def test_dis_flow_end_point_error_on_non_occluded_pixels(prepared, world):
    errors = []
    for index in (0, 2):
        scene = world['scenes'][index]
        for k in range(FRAMES - 1):
            for kind, exact, occluded in (('flow_f', scene.flow_f, scene.occlusion_f),
                                          ('flow_b', scene.flow_b, scene.occlusion_b)):
                flow = read_flo(scene_dir(prepared, kind, index) / f'{k:010d}.flo')
                errors.append(np.linalg.norm(flow - exact[k], axis=2)[~occluded[k]])
    mean_epe = np.concatenate(errors).mean()
    assert mean_epe < 1.5, mean_epe


def test_masks_from_npy_round_trip(prepared, world):
    for k in range(FRAMES):
        stored = np.load(scene_dir(prepared, 'segmentation', 0) / f'{k:010d}.npy')
        assert stored.dtype == np.uint8 and not stored[0].any()
        np.testing.assert_array_equal(stored, world['scenes'][0].masks[k])


def test_masks_from_png_instance_ids_resized_nearest(world, tmp_path):
    for index in (0, 2):
        masks_dir = tmp_path / 'ids' / f'{DRIVE.format(index + 1)}_02'
        masks_dir.mkdir(parents=True)
        for k in range(FRAMES):
            ids = world['scenes'][index].instance_maps[k] * 1000
            cv2.imwrite(str(masks_dir / f'{k:010d}.png'), ids.astype(np.uint16))
    scene = world['scenes'][0]
    out = tmp_path / 'out'
    assert run(world, out, '--masks-from', str(tmp_path / 'ids'), '--img-width', '96', '--img-height', '32') == 0
    for k in range(FRAMES):
        stored = np.load(scene_dir(out, 'segmentation', 0) / f'{k:010d}.npy')
        ids = scene.instance_maps[k][1::2, 1::2]
        expected = [ids == j for j in np.unique(ids) if j != 0]
        assert stored.shape == (1 + len(expected), 32, 96)
        np.testing.assert_array_equal(stored[1:].astype(bool), np.array(expected).reshape(-1, 32, 96))


def test_val_depth_matches_the_rendered_depth(prepared, world):
    val = (prepared / 'val.txt').read_text().split()[0]
    index = int(val.split('_drive_')[1][:4]) - 1
    depth = np.load(prepared / 'image' / val / '0000000002.npy')
    dense = world['scenes'][index].depths[2]
    hit = (depth > 0) & (dense > 0)
    assert hit.sum() > 100
    assert np.median(np.abs(depth[hit] - dense[hit]) / dense[hit]) < 0.02
    train = (prepared / 'train.txt').read_text().split()[0]
    assert not list((prepared / 'image' / train).glob('*.npy'))


def test_static_frames_dropped_and_renumbered(world, tmp_path):
    static = tmp_path / 'static.txt'
    static.write_text(f'2011_09_26 {DRIVE.format(1)} 2\n2011_09_26 {DRIVE.format(1)} 3\n')
    out = tmp_path / 'out'
    assert run(world, out, '--masks', 'none', '--static-frames', str(static), '--test-scenes', 'none') == 0
    image_dir = scene_dir(out, 'image', 0)
    assert sorted(p.name for p in image_dir.glob('*.jpg')) == [f'{k:010d}.jpg' for k in range(FRAMES - 2)]
    assert len(list(scene_dir(out, 'flow_f', 0).glob('*.flo'))) == FRAMES - 3
    stored = read_image(image_dir / '0000000002.jpg').astype(float)
    assert np.abs(stored - world['scenes'][0].images[4]).mean() < 3
    assert len(list(scene_dir(out, 'image', 1).glob('*.jpg'))) == FRAMES


def test_interrupted_run_resumes_without_recomputing_finished_scenes(world, tmp_path, monkeypatch, capsys):
    real_iter_frames = prepare_run.iter_frames

    def interrupted(job):
        for count, frame in enumerate(real_iter_frames(job)):
            if job.name.startswith(DRIVE.format(3)) and count == 2:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(prepare_run, 'iter_frames', interrupted)
    assert run(world, tmp_path, '--masks', 'none') == 130
    finished = scene_dir(tmp_path, 'flow_f', 0) / '0000000000.flo'
    stamp = os.stat(finished).st_mtime_ns
    assert not (tmp_path / 'train.txt').exists()
    monkeypatch.setattr(prepare_run, 'iter_frames', real_iter_frames)
    prepared_scenes = []
    real_prepare_scene = prepare_run.prepare_scene

    def counting(root, job, *args):
        prepared_scenes.append(job.name)
        return real_prepare_scene(root, job, *args)

    monkeypatch.setattr(prepare_run, 'prepare_scene', counting)
    capsys.readouterr()
    assert run(world, tmp_path, '--masks', 'none') == 0
    assert prepared_scenes == [f'{DRIVE.format(3)}_02']
    assert os.stat(finished).st_mtime_ns == stamp
    assert '1 already prepared, 1 to prepare' in capsys.readouterr().out
    assert len(list(scene_dir(tmp_path, 'image', 2).glob('*.jpg'))) == FRAMES
    (scene_dir(tmp_path, 'flow_b', 0) / '0000000001.flo').unlink()
    assert run(world, tmp_path, '--masks', 'none', '--jpeg-quality', '95') == 0
    assert prepared_scenes[1:] == [f'{DRIVE.format(1)}_02']
    assert run(world, tmp_path, '--masks', 'none', '--jpeg-quality', '90') == 0
    assert sorted(prepared_scenes[2:]) == [f'{DRIVE.format(1)}_02', f'{DRIVE.format(3)}_02']


def test_two_workers_write_the_same_files_as_one(world, tmp_path):
    args = ('--masks-from', str(world['vis'] / 'segmentation'), '--test-scenes', 'none', '--val-depth')
    assert run(world, tmp_path / 'one', *args) == 0
    assert run(world, tmp_path / 'two', *args, '--workers', '2') == 0
    one = sorted(p.relative_to(tmp_path / 'one') for p in (tmp_path / 'one').rglob('*') if p.is_file())
    two = sorted(p.relative_to(tmp_path / 'two') for p in (tmp_path / 'two').rglob('*') if p.is_file())
    assert one == two and len(one) > 50
    for rel in one:
        if rel.parts[0] != '.prepare':
            assert (tmp_path / 'one' / rel).read_bytes() == (tmp_path / 'two' / rel).read_bytes(), rel


def test_bad_kitti_inputs_give_one_line_errors(world, tmp_path, capsys):
    assert run({'raw': tmp_path / 'missing'}, tmp_path / 'out', '--masks', 'none') == 1
    assert f"{tmp_path / 'missing'}: raw KITTI folder not found" in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert run({'raw': tmp_path / 'empty'}, tmp_path / 'out', '--masks', 'none') == 1
    assert 'no raw KITTI drive found' in capsys.readouterr().err
    assert run(world, tmp_path / 'out', '--masks', 'none', '--val-scenes', '2') == 1
    assert 'only 2 recordings' in capsys.readouterr().err
    assert run(world, tmp_path / 'out', '--masks', 'none', '--intrinsics', '1', '1', '1', '1') == 1
    assert '--intrinsics is only for frames/video' in capsys.readouterr().err
    test_scenes = tmp_path / 'test_scenes.txt'
    test_scenes.write_text('2011_09_26_drive_0002\n2011_09_26_drive_0003\n')
    velodyne = world['raw'] / '2011_09_26' / DRIVE.format(1) / 'velodyne_points'
    velodyne.rename(velodyne.with_name('moved'))
    try:
        code = run(world, tmp_path / 'out2', '--masks', 'none', '--val-depth', '--test-scenes', str(test_scenes))
    finally:
        velodyne.with_name('moved').rename(velodyne)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert code == 1 and len(errors) == 1
    assert "velodyne_points/data/0000000000.bin: velodyne scan not found" in errors[0]


def test_prepare_kitti_script_runs_and_checks_its_input(world, tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts',
                          'prepare_kitti_vis.sh')
    env = dict(os.environ, KITTI_RAW=str(world['raw']), OUTPUT=str(tmp_path / 'out'), MASKS='none', WORKERS='1',
               OMP_NUM_THREADS='1', PYTHON=sys.executable)
    result = subprocess.run(['sh', script, '--img-width', '96', '--img-height', '32'], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / 'out' / 'train.txt').read_text().split()) == 1
    val = (tmp_path / 'out' / 'val.txt').read_text().split()
    assert len(val) == 1 and np.load(tmp_path / 'out' / 'image' / val[0] / '0000000000.npy').shape == (32, 96)
    env['KITTI_RAW'] = str(tmp_path / 'missing')
    result = subprocess.run(['sh', script], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and f"KITTI_RAW={tmp_path / 'missing'} is not a folder" in result.stderr
