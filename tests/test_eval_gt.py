"""Ground truth from raw KITTI velodyne scans and its .npz cache."""
import numpy as np
import pytest

from kitti_eval import export_gt_depth
from kitti_eval.gt_cache import generate_gt_depths, ground_truth_depths, load_gt_depths, save_gt_depths
from kitti_eval.kitti_raw import KittiFormatError, camera_index, generate_depth_map, locate_frame, \
    read_calib_file, velodyne_to_image_matrix
from test_eval_fixtures import IMAGE_SHAPE, VELO_R, VELO_T, expected_depth_map, frame_points, \
    raw_drive, rect_rotation, write_raw_drive  # noqa: F401  (raw_drive is a fixture)


def reference_depth_map(points, P, shape, velodyne_depth=False):
    """Point-by-point devkit projection (a loop, for testing): nearest point per pixel."""
    depth_map = np.zeros(shape)
    for x, y, z, _ in points.astype(np.float64):
        if x < 0:
            continue
        u, v, w = P @ np.array([x, y, z, 1.0])
        col, row = int(np.round(u / w)) - 1, int(np.round(v / w)) - 1
        if w <= 0 or not (0 <= row < shape[0] and 0 <= col < shape[1]):
            continue
        value = x if velodyne_depth else w
        if depth_map[row, col] == 0 or value < depth_map[row, col]:
            depth_map[row, col] = value
    return depth_map


def full_matrix(P):
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3], velo_to_cam[:3, 3] = VELO_R, VELO_T
    rect = np.eye(4)
    rect[:3, :3] = rect_rotation()
    return P @ rect @ velo_to_cam


def test_gt_equals_known_depth_at_the_lidar_pixels(raw_drive):
    root, entries = raw_drive
    for index, entry in enumerate(entries):
        depth_map = generate_depth_map(locate_frame(root, entry))
        assert depth_map.shape == IMAGE_SHAPE and depth_map.dtype == np.float32
        expected = expected_depth_map(index)
        # every known pixel has its depth (the nearer of colliding points), nothing else is set
        np.testing.assert_array_equal(depth_map > 0, expected > 0)
        np.testing.assert_allclose(depth_map, expected, rtol=1e-6)


def test_camera_3_uses_its_own_projection_and_matches_a_point_loop(tmp_path):
    entries = write_raw_drive(tmp_path, frames=1, cameras=(2, 3))
    frame = locate_frame(tmp_path, entries[1])
    assert frame.camera == 3
    points = frame_points(0, 2)
    P3 = read_calib_file(tmp_path / '2011_09_26' / 'calib_cam_to_cam.txt')['P_rect_03'].reshape(3, 4)
    np.testing.assert_allclose(velodyne_to_image_matrix(frame.calib_dir, 3), full_matrix(P3), atol=1e-9)
    for velodyne_depth in (False, True):
        expected = reference_depth_map(points, full_matrix(P3), IMAGE_SHAPE, velodyne_depth)
        got = generate_depth_map(frame, velodyne_depth)
        assert (got > 0).sum() > 100
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.allclose(got, generate_depth_map(locate_frame(tmp_path, entries[0]), True))


def test_calibration_reader_skips_text_lines(raw_drive):
    root, _ = raw_drive
    calib = read_calib_file(root / '2011_09_26' / 'calib_velo_to_cam.txt')
    assert 'calib_time' not in calib
    np.testing.assert_allclose(calib['R'].reshape(3, 3), VELO_R)
    np.testing.assert_allclose(calib['T'], VELO_T)


def test_camera_from_path():
    assert camera_index('a/b/image_02/data/0.png') == 2
    assert camera_index('a/b/image_03/data/0.png') == 3
    with pytest.raises(KittiFormatError, match="cannot tell the camera"):
        camera_index('a/b/image_00/data/0.png')


@pytest.mark.parametrize('victim, message', [
    ('velodyne', 'velodyne scan not found'),
    ('calib_cam_to_cam.txt', 'camera calibration file not found'),
    ('calib_velo_to_cam.txt', 'velodyne calibration file not found'),
    ('image', 'listed image not found'),
])
def test_missing_raw_file_is_one_clear_line(raw_drive, victim, message):
    root, entries = raw_drive
    frame = locate_frame(root, entries[1])
    path = {'velodyne': frame.velodyne, 'image': frame.image}.get(victim, frame.calib_dir / victim)
    path.unlink()
    with pytest.raises(FileNotFoundError) as info:
        generate_gt_depths(root, entries, progress=False)
    assert str(info.value) == f"{path}: {message}"


def test_truncated_scan_and_missing_calibration_key(raw_drive):
    root, entries = raw_drive
    frame = locate_frame(root, entries[0])
    frame.velodyne.write_bytes(frame.velodyne.read_bytes()[:-3])
    with pytest.raises(KittiFormatError, match=r"0000000000\.bin: .* not a whole number"):
        generate_depth_map(frame)
    calib = frame.calib_dir / 'calib_cam_to_cam.txt'
    calib.write_text(calib.read_text().replace('P_rect_02', 'P_rect_99'))
    with pytest.raises(KittiFormatError, match="calib_cam_to_cam.txt: no 'P_rect_02' entry"):
        velodyne_to_image_matrix(frame.calib_dir, 2)


def test_gt_cache_round_trip_and_checks(raw_drive, tmp_path):
    root, entries = raw_drive
    maps = generate_gt_depths(root, entries, progress=False)
    cache = tmp_path / 'gt.npz'
    save_gt_depths(cache, entries, maps)
    for stored, original in zip(load_gt_depths(cache, entries), maps):
        np.testing.assert_array_equal(stored, original)
    with pytest.raises(KittiFormatError, match="holds ground truth for 3 images but the list has 2"):
        load_gt_depths(cache, entries[:2])
    with pytest.raises(KittiFormatError, match="entry 0 is .* but the list has"):
        load_gt_depths(cache, entries[::-1])
    with pytest.raises(KittiFormatError, match="holds camera depth ground truth"):
        load_gt_depths(cache, entries, velodyne_depth=True)


def test_cache_is_written_once_then_used_without_raw_data(raw_drive, tmp_path):
    root, entries = raw_drive
    cache = tmp_path / 'cache' / 'gt.npz'
    first = ground_truth_depths(root, entries, cache, progress=False)
    assert cache.is_file()
    for frame in (locate_frame(root, e) for e in entries):
        frame.velodyne.unlink()
    second = ground_truth_depths(root, entries, cache, progress=False)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_export_command(raw_drive, tmp_path, capsys):
    root, entries = raw_drive
    output = tmp_path / 'gt_depths.npz'
    export_gt_depth.main(['--kitti_dir', str(root), '--test_file_list', str(root / 'test_files.txt'),
                          '--output', str(output), '--no-progress'])
    assert f'wrote {output}: ground truth of 3 images' in capsys.readouterr().out
    np.testing.assert_allclose(load_gt_depths(output, entries)[2], expected_depth_map(2), rtol=1e-6)
    with pytest.raises(SystemExit, match="error: .*missing.txt: file list not found"):
        export_gt_depth.main(['--kitti-dir', str(root), '--test-file-list', str(root / 'missing.txt'),
                              '--output', str(output)])
    with pytest.raises(SystemExit, match=f"error: {tmp_path / 'nowhere'}: raw KITTI folder not found"):
        export_gt_depth.main(['--kitti_dir', str(tmp_path / 'nowhere'), '--output', str(output)])


def test_eigen_list_is_the_reference_one():
    from pathlib import Path
    lines = (Path(__file__).resolve().parent.parent / 'kitti_eval' / 'test_files_eigen.txt').read_text().splitlines()
    assert len(lines) == 697
    assert lines[0] == '2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png'
    assert all(camera_index(line) in (2, 3) for line in lines)
