"""The synthetic driving world: its ground truth agrees with the project's geometry and file formats."""
import hashlib
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import maximum_filter, minimum_filter

from data import synthetic
from datasets.sequence_folders import SequenceFolder
from inverse_warp import depth2flow, euler2mat, flow_warp, inverse_warp_mof
from motion_field import MotionField

HEIGHT, WIDTH = 128, 416


@pytest.fixture(scope='module')
def moving_scene():
    """A 5-frame scene with four cars: two crossing, two driving ahead in the same direction (seed 1, scene 7)."""
    return synthetic.render_scene(seed=1, index=7, height=HEIGHT, width=WIDTH, frames=5, min_cars=4)


@pytest.fixture(scope='module')
def vis_root(tmp_path_factory, moving_scene):
    """KITTI-VIS folder with two scenes (the second, ``moving_scene``, is the val scene)."""
    root = tmp_path_factory.mktemp('vis')
    other = synthetic.render_scene(seed=1, index=0, height=HEIGHT, width=WIDTH, frames=5, min_cars=4)
    synthetic.write_kitti_vis([other, moving_scene], root)
    return root, [other, moving_scene]


@pytest.fixture(scope='module')
def raw_root(tmp_path_factory, moving_scene):
    root = tmp_path_factory.mktemp('raw')
    synthetic.write_raw_kitti([moving_scene], root)
    return root


def as_image(array):
    """``[H,W,3]`` uint8 -> ``[1,3,H,W]`` float64 in 0..1."""
    return torch.from_numpy(array).double().permute(2, 0, 1)[None] / 255


def as_map(array):
    """``[H,W]`` or ``[C,H,W]`` array -> ``[1,C,H,W]`` float64 tensor."""
    tensor = torch.from_numpy(np.asarray(array, np.float64))
    return tensor[None, None] if tensor.dim() == 2 else tensor[None]


def photometric_error(scene, a, b, field):
    """Per-pixel mean |frame a - frame b warped into a| ``[H,W]`` and the warp's valid mask."""
    warped, valid, _, _, _ = inverse_warp_mof(as_image(scene.images[b]), as_map(scene.depths[a]),
                                              as_map(scene.depths[b]), MotionField.from_channels(as_map(field)),
                                              torch.from_numpy(scene.K)[None])
    error = (warped - as_image(scene.images[a])).abs().mean(1)[0].numpy()
    return error, valid[0, 0].numpy() > 0


def moving_car_interiors(scene, frame, min_move=0.3):
    """``[H,W]`` pixels of cars moving more than ``min_move`` metres to the next frame, silhouettes excluded.

    At a silhouette the bilinear sample mixes the car and what is behind it, so these pixels do not
    tell whether the object motion is right.
    """
    moving = [j + 1 for j, obj in enumerate(scene.objects)
              if np.linalg.norm(obj.world_poses[frame + 1, :3, 3] - obj.world_poses[frame, :3, 3]) > min_move]
    ids = scene.instance_maps[frame]
    interior = minimum_filter(ids, 3) == maximum_filter(ids, 3)
    return np.isin(ids, moving) & interior


def test_warping_the_next_frame_with_gt_depth_pose_and_object_motion_reproduces_the_frame(moving_scene):
    scene, a, b = moving_scene, 0, 1
    field = synthetic.motion_field(scene, a, b)
    error, valid = photometric_error(scene, a, b, field)
    usable = valid & ~scene.occlusion_f[a] & (scene.depths[a] > 0)
    cars = usable & moving_car_interiors(scene, a)
    assert cars.sum() > 1000, 'the scene must show moving cars for this test to mean anything'
    # residual = illumination jitter (+-2 %), sensor noise (1 grey level), bilinear interpolation
    assert error[usable].mean() < 0.02
    assert error[cars].mean() < 0.02
    without_objects = field.copy()
    without_objects[:3] = synthetic.pose_to_vec(synthetic.relative_pose(scene, a, b))[:3, None, None]
    error_rigid, _ = photometric_error(scene, a, b, without_objects)
    assert error_rigid[cars].mean() > 3 * error[cars].mean()
    inverted = field.copy()
    inverted[:] = synthetic.pose_to_vec(synthetic.relative_pose(scene, b, a))[:, None, None]
    error_inverted, _ = photometric_error(scene, a, b, inverted)
    assert error_inverted[usable].mean() > 3 * error[usable].mean()


def test_gt_flow_is_depth2flow_on_static_pixels_and_the_motion_field_flow_on_cars(moving_scene):
    scene = moving_scene
    for a in range(scene.frames - 1):
        pose = torch.from_numpy(synthetic.pose_to_vec(synthetic.relative_pose(scene, a, a + 1)))[None]
        rigid = depth2flow(as_map(scene.depths[a]), pose, torch.from_numpy(scene.K)[None])[0].permute(1, 2, 0).numpy()
        static = (scene.depths[a] > 0) & (scene.instance_maps[a] == 0)
        assert np.abs(rigid - scene.flow_f[a])[static].max() < 1e-3
        field = MotionField.from_channels(as_map(synthetic.motion_field(scene, a, a + 1)))
        _, _, _, _, flow = inverse_warp_mof(as_image(scene.images[a + 1]), as_map(scene.depths[a]),
                                            as_map(scene.depths[a + 1]), field, torch.from_numpy(scene.K)[None])
        cars = scene.instance_maps[a] > 0
        assert cars.any()
        assert np.abs(flow[0].permute(1, 2, 0).numpy() - scene.flow_f[a])[cars].max() < 1e-3


def rotation_about(axis, angle):
    """``[3,3]`` rotation about the x (0), y (1) or z (2) axis, with exact zeros and ones off its plane."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot if axis != 1 else rot.T


@pytest.mark.parametrize('ry_matrix', [rotation_about(1, -0.4),
                                       np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])],
                         ids=['ry=-0.4', 'ry=pi/2 exactly (gimbal lock)'])
def test_pose_to_vec_inverts_the_step_pose_even_at_gimbal_lock(ry_matrix):
    transform = np.eye(4)
    transform[:3, :3] = rotation_about(0, 0.3) @ ry_matrix @ rotation_about(2, 0.1)
    transform[:3, 3] = (0.1, -0.2, 0.3)
    vec = synthetic.pose_to_vec(transform)
    assert np.allclose(vec[:3], (0.1, -0.2, 0.3))
    assert np.allclose(euler2mat(torch.from_numpy(vec[None, 3:]))[0].numpy(), transform[:3, :3], atol=1e-12)


def test_backward_flow_inverts_forward_flow_exactly_where_not_occluded(moving_scene):
    scene = moving_scene
    for a in range(scene.frames - 1):
        forward = torch.from_numpy(scene.flow_f[a]).permute(2, 0, 1)[None].double()
        backward = torch.from_numpy(scene.flow_b[a]).permute(2, 0, 1)[None].double()
        cycle = (forward + flow_warp(backward, forward)[0])[0].norm(dim=0).numpy()
        visible, hidden = ~scene.occlusion_f[a], scene.occlusion_f[a]
        assert visible.mean() > 0.5 and hidden.any()
        assert np.median(cycle[visible]) < 1e-3 and np.percentile(cycle[visible], 95) < 0.05
        # where the target is occluded or outside the image, the round trip fails
        inside_hidden = hidden & np.all(np.abs(scene.flow_f[a]) < 1e4, axis=2)
        assert np.median(cycle[inside_hidden]) > 1.0


def test_masks_and_pose_file_agree_with_the_instance_maps(vis_root):
    root, scenes = vis_root
    for scene in scenes:
        poses = json.loads((root / 'poses' / f'{scene.name}.json').read_text())
        assert np.allclose(poses['cam_to_world'], scene.cam_to_world)
        for k in range(scene.frames):
            masks = np.load(root / 'segmentation' / scene.name / f'{k:010d}.npy')
            assert masks.dtype == np.uint8 and masks.shape[1:] == (HEIGHT, WIDTH)
            assert not masks[0].any() and set(np.unique(masks)) <= {0, 1}
            assert masks.sum(0).max() <= 1
            for obj_id, obj in enumerate(poses['objects'], start=1):
                channel = obj['mask_index'][k]
                if channel >= 0:
                    assert np.array_equal(masks[channel] > 0, scene.instance_maps[k] == obj_id)
            listed = sorted(o['mask_index'][k] for o in poses['objects'] if o['mask_index'][k] >= 0)
            assert listed == list(range(1, len(masks)))


def read_flo(path):
    data = path.read_bytes()
    magic = np.frombuffer(data[:4], '<f4')[0]
    width, height = np.frombuffer(data[4:12], '<i4')
    return magic, np.frombuffer(data[12:], '<f4').reshape(height, width, 2)


def test_kitti_vis_layout(vis_root):
    root, (train_scene, val_scene) = vis_root
    assert (root / 'train.txt').read_text().split() == [train_scene.name]
    assert (root / 'val.txt').read_text().split() == [val_scene.name]
    for scene in (train_scene, val_scene):
        image_dir = root / 'image' / scene.name
        assert len(list(image_dir.glob('*.jpg'))) == scene.frames
        assert np.allclose(np.loadtxt(image_dir / 'cam.txt'), scene.K)
        for kind, flows in (('flow_f', scene.flow_f), ('flow_b', scene.flow_b)):
            files = sorted((root / kind / scene.name).glob('*.flo'))
            assert len(files) == scene.frames - 1
            magic, flow = read_flo(files[-1])
            assert magic == np.float32(202021.25) and np.array_equal(flow, flows[-1])
    assert not list((root / 'image' / train_scene.name).glob('*.npy'))
    depth = np.load(root / 'image' / val_scene.name / '0000000002.npy')
    assert depth.dtype == np.float32 and np.array_equal(depth, val_scene.depths[2])


def read_kitti_calib(path):
    """``{key: float array}`` of a KITTI calibration file (non-numeric lines skipped)."""
    entries = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(':')
        try:
            entries[key] = np.array(value.split(), float)
        except ValueError:
            continue
    return entries


def devkit_depth_samples(root, entry):
    """Velodyne points of one frame projected as the KITTI devkit does.

    Returns:
        ``(depth [M], rows [M], cols [M], u [M], v [M], points [N,4])``: camera depth of the points that
        land in the image, their devkit pixel (``round(u) - 1``), their exact 1-based projections, and
        the whole scan.
    """
    date_dir = root / entry.split('/')[0]
    cam = read_kitti_calib(date_dir / 'calib_cam_to_cam.txt')
    velo = read_kitti_calib(date_dir / 'calib_velo_to_cam.txt')
    velo_to_cam = np.vstack([np.column_stack([velo['R'].reshape(3, 3), velo['T']]), [0, 0, 0, 1]])
    rect = np.eye(4)
    rect[:3, :3] = cam['R_rect_00'].reshape(3, 3)
    projection = cam['P_rect_02'].reshape(3, 4) @ rect @ velo_to_cam
    bin_path = root / entry.replace('image_02', 'velodyne_points').replace('.png', '.bin')
    points = np.fromfile(bin_path, np.float32).reshape(-1, 4)
    front = points[points[:, 0] >= 0]
    projected = np.column_stack([front[:, :3], np.ones(len(front))]) @ projection.T
    cols = np.round(projected[:, 0] / projected[:, 2]).astype(int) - 1
    rows = np.round(projected[:, 1] / projected[:, 2]).astype(int) - 1
    inside = (projected[:, 2] > 0) & (cols >= 0) & (rows >= 0) & (cols < WIDTH) & (rows < HEIGHT)
    u, v = projected[:, 0] / projected[:, 2], projected[:, 1] / projected[:, 2]
    return projected[inside, 2], rows[inside], cols[inside], u[inside], v[inside], points


def bilinear(image, x, y):
    """``image`` ``[H,W]`` sampled bilinearly at 0-based pixel coordinates (clamped to the image)."""
    x = np.clip(x, 0, image.shape[1] - 1.001)
    y = np.clip(y, 0, image.shape[0] - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_lidar_points_land_on_pixels_with_their_depth(raw_root, moving_scene):
    entries = (raw_root / 'test_files.txt').read_text().split()
    assert entries[0] == '2011_09_26/2011_09_26_drive_0008_sync/image_02/data/0000000000.png'
    assert len(entries) == moving_scene.frames
    for frame, entry in enumerate(entries[:2]):
        depth, rows, cols, u, v, points = devkit_depth_samples(raw_root, entry)
        assert (points[:, 0] < 0).any() and (points[:, 3] >= 0).all()  # a full spin, with reflectance
        dense = np.load(synthetic.raw_gt_depth_path(raw_root, entry))
        assert np.array_equal(dense, moving_scene.depths[frame])
        assert len(depth) > 10000 and (dense[rows, cols] > 0).all()
        # nearest pixel (devkit): exact up to the depth change within half a pixel
        relative = np.abs(dense[rows, cols] - depth) / depth
        assert np.median(relative) < 0.006 and np.mean(relative < 0.05) > 0.98
        shifted = np.abs(dense[np.clip(rows + 1, 0, HEIGHT - 1), cols] - depth) / depth
        assert np.median(shifted) > 3 * np.median(relative)  # one pixel off is detected
        # inverse depth is affine in the pixel coordinates on a plane: sub-pixel comparison is exact
        inverse = np.where(dense > 0, 1 / np.maximum(dense, 1e-6), 0)
        sub_pixel = np.abs(bilinear(inverse, u - 1, v - 1) * depth - 1)
        assert np.median(sub_pixel) < 1e-4


def test_sequence_folder_associates_the_true_objects(vis_root):
    root, scenes = vis_root
    dataset = SequenceFolder(root, train=True, shuffle=False, max_num_instances=4, cache=False)
    scene = scenes[0]
    matched = 0
    for sample in range(len(dataset)):
        _, target = dataset.samples[sample]
        _, _, _, _, tgt_insts, ref_insts = dataset[sample]
        for ref_frame, tgt, ref in zip((target - 1, target + 1), tgt_insts, ref_insts):
            tgt, ref = np.asarray(tgt), np.asarray(ref)
            count = int(tgt[0].max())
            for channel in range(1, count + 1):
                tgt_ids = scene.instance_maps[target][tgt[channel] > 0]
                ref_ids = scene.instance_maps[ref_frame][ref[channel] > 0]
                assert np.bincount(tgt_ids).argmax() == np.bincount(ref_ids).argmax() > 0
                matched += 1
    assert matched >= 4


def tree_digest(root):
    """``{relative path: sha1}`` of every file below ``root``."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_scenes(tmp_path):
    args = ['--scenes', '2', '--frames', '3', '--height', '64', '--width', '192', '--layout', 'both']
    for name, seed in (('a', '5'), ('b', '5'), ('c', '6')):
        assert synthetic.main(['--out', str(tmp_path / name), '--seed', seed] + args) == 0
    first, second, other = (tree_digest(tmp_path / name) for name in 'abc')
    assert first == second and len(first) > 40
    images = [k for k in first if k.endswith('.jpg') or k.endswith('.png') or k.endswith('.bin')]
    assert images and all(first[k] != other[k] for k in images)


def test_cli_refuses_foreign_folders_and_bad_settings(tmp_path, capsys):
    foreign = tmp_path / 'out' / 'vis'
    foreign.mkdir(parents=True)
    (foreign / 'precious.txt').write_text('keep me')
    tiny = ['--scenes', '1', '--frames', '2', '--height', '32', '--width', '96', '--layout', 'vis']
    assert synthetic.main(['--out', str(tmp_path / 'out'), '--overwrite'] + tiny) == 2
    message = capsys.readouterr().err.strip()
    assert 'not written by data.synthetic' in message and '\n' not in message
    assert (foreign / 'precious.txt').read_text() == 'keep me'
    assert synthetic.main(['--out', str(tmp_path / 'mine')] + tiny) == 0
    assert synthetic.main(['--out', str(tmp_path / 'mine')] + tiny) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert synthetic.main(['--out', str(tmp_path / 'mine'), '--overwrite', '--seed', '3'] + tiny) == 0
    assert json.loads((tmp_path / 'mine' / 'vis' / 'synthetic_config.json').read_text())['seed'] == 3
    assert [p.name for p in (tmp_path / 'mine').iterdir()] == ['vis']  # no staging folder left behind
    assert synthetic.main(['--out', str(tmp_path / 'x'), '--frames', '1']) == 2
    assert 'at least 2' in capsys.readouterr().err


def test_cli_refuses_unwritable_outputs_before_rendering(tmp_path, capsys):
    blocker = tmp_path / 'notes.txt'
    blocker.write_text('keep me')
    tiny = ['--scenes', '1', '--frames', '2', '--height', '32', '--width', '96', '--layout', 'vis']
    assert synthetic.main(['--out', str(blocker / 'out')] + tiny) == 2
    assert f'--out {blocker / "out"}: {blocker} is an existing file' in capsys.readouterr().err
    assert synthetic.main(['--out', str(tmp_path / 'a'), '--preview', str(tmp_path)] + tiny) == 2
    assert f'--preview {tmp_path}: is a folder' in capsys.readouterr().err
    assert synthetic.main(['--out', str(tmp_path / 'b'), '--preview', str(blocker / 'p.png')] + tiny) == 2
    assert f'{blocker} is an existing file' in capsys.readouterr().err
    assert blocker.read_text() == 'keep me' and sorted(p.name for p in tmp_path.iterdir()) == ['notes.txt']


def test_preview_is_a_contact_sheet(tmp_path):
    scene = synthetic.render_scene(seed=2, index=0, height=32, width=96, frames=3)
    sheet = synthetic.contact_sheet(scene, rows=2)
    assert sheet.shape == (2 * 32, 4 * 96, 3) and sheet.dtype == np.uint8
    assert np.array_equal(sheet[:32, :96], scene.images[0])
    synthetic.save_preview(scene, tmp_path / 'sheet.png')
    assert (tmp_path / 'sheet.png').stat().st_size > 1000


def test_val_moving_cars_puts_moving_cars_in_view_in_every_validation_scene(tmp_path):
    names = synthetic.generate(tmp_path, scenes=3, frames=6, height=32, width=96, seed=4, layout='vis',
                               val_moving_cars=2)
    root = tmp_path / 'vis'
    val = (root / 'val.txt').read_text().split()
    assert val == names[-1:]
    for name in val:
        objects = json.loads((root / 'poses' / f'{name}.json').read_text())['objects']
        in_view = [obj for obj in objects
                   if obj['kind'] != 'parked' and np.mean(np.array(obj['mask_index']) >= 0) >= 0.8]
        assert len(in_view) >= 2
        for obj in in_view:  # it really moves, and its mask channel holds it
            positions = np.array(obj['world_pose'])[:, :3, 3]
            assert np.linalg.norm(positions[-1] - positions[0]) > 1.0
            frame = int(np.argmax(np.array(obj['mask_index']) >= 0))
            assert np.load(root / 'segmentation' / name / f'{frame:010d}.npy')[obj['mask_index'][frame]].any()
    config = json.loads((root / 'synthetic_config.json').read_text())
    assert config['val_moving_cars'] == 2
    # the training scenes are the ones rendered without the option (same seed, same bytes)
    plain = synthetic.render_scene(seed=4, index=0, height=32, width=96, frames=6)
    assert np.array_equal(np.load(root / 'segmentation' / names[0] / '0000000000.npy'), plain.masks[0])


def test_moving_car_kinds_are_forced_from_parked_cars_first():
    from data.synthetic_world import with_moving_cars
    assert with_moving_cars(['parked', 'same', 'parked'], 2) == ['same', 'same', 'parked']
    assert with_moving_cars([], 2) == ['same', 'opposite']
    assert with_moving_cars(['crossing', 'opposite'], 1) == ['crossing', 'opposite']


def test_val_moving_cars_is_checked(tmp_path, capsys):
    assert synthetic.main(['--out', str(tmp_path), '--max-cars', '1', '--val-moving-cars', '2']) == 2
    assert '--val-moving-cars must be between 0 and --max-cars (1)' in capsys.readouterr().err


def test_depth_colours_share_a_scale_when_given_one():
    """Inverse-depth colours: by default the frame's nearest pixel is the brightest; with ``max_inverse`` two maps
    are on one scale (a map drawn twice as far is darker, and nearer than the scale's top is clipped to it)."""
    near, far = np.array([[2.0, 4.0]]), np.array([[4.0, 8.0]])
    assert (synthetic.depth_to_colour(near) == synthetic.depth_to_colour(far)).all()       # each its own scale
    shared_near, shared_far = (synthetic.depth_to_colour(d, max_inverse=0.5) for d in (near, far))
    assert (shared_far[0, 0] == shared_near[0, 1]).all() and not (shared_far[0, 0] == shared_near[0, 0]).all()
    assert (synthetic.depth_to_colour(np.array([[1.0]]), max_inverse=0.5) == shared_near[0, 0]).all()
    assert (synthetic.depth_to_colour(np.array([[0.0, 2.0]]))[0, 0] == 0).all()          # no depth: black
