"""Unified visual odometry demo: outputs, track ids against the synthetic ground truth, geometry, files, errors."""
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

import demo
import demo_files
import demo_odometry
import models
from datasets.io import read_image
from data import synthetic

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH, FRAMES = 128, 416, 5
SCENE = synthetic.scene_name(0)


@pytest.fixture(scope='module')
def vis_root(tmp_path_factory):
    """A synthetic KITTI-VIS scene of 5 frames with three cars visible in every frame (seed 0)."""
    root = tmp_path_factory.mktemp('vis')
    synthetic.write_kitti_vis([synthetic.render_scene(seed=0, index=0, height=HEIGHT, width=WIDTH, frames=FRAMES)],
                              root)
    return root


@pytest.fixture(scope='module')
def demo_run(vis_root, tmp_path_factory):
    """One demo run with figures on the synthetic scene; returns its output folder."""
    out = tmp_path_factory.mktemp('outputs')
    recording = ['--rerun', str(out / 'demo.rrd')] if rerun_installed() else []
    return demo.main(['--data', str(vis_root / 'image' / SCENE), '--output-dir', str(out), '--name', 'test',
                      '--save-fig', '--device', 'cpu', '--mni', '3'] + recording)


def rerun_installed():
    return importlib.util.find_spec('rerun') is not None


def ground_truth_objects(vis_root):
    return json.loads((vis_root / 'poses' / f'{SCENE}.json').read_text())['objects']


def test_demo_writes_figures_animation_clouds_and_files(demo_run):
    assert demo_run.parent.name == 'test'
    names = [f'{k:010d}' for k in range(FRAMES)]
    assert sorted(p.stem for p in (demo_run / 'figures').glob('*.png')) == names
    assert sorted(p.stem for p in (demo_run / 'pointclouds').glob('*.ply')) == names
    figure = imageio.imread(demo_run / 'figures' / f'{names[0]}.png')
    assert figure.ndim == 3 and figure.shape[0] > HEIGHT and figure.shape[1] > WIDTH
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(demo_run / 'demo.mp4'))
    assert frames == FRAMES
    reader = imageio_ffmpeg.read_frames(str(demo_run / 'demo.mp4'))
    width, height = next(reader)['size']
    reader.close()
    assert (height, width) == (figure.shape[0] + figure.shape[0] % 2, figure.shape[1] + figure.shape[1] % 2)
    trajectory = demo_files.read_kitti_trajectory(demo_run / 'trajectory.txt')
    assert trajectory.shape == (FRAMES, 4, 4)
    np.testing.assert_allclose(trajectory[0], np.eye(4), atol=1e-12)
    rotations = trajectory[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-6)
    assert not list(demo_run.rglob('.*.tmp')) and not list(demo_run.rglob('.anim.*'))


def test_track_ids_follow_the_cars_through_shuffled_mask_channels(vis_root, demo_run):
    """The generator shuffles the mask channels per frame; every car must keep one id in every frame."""
    tracks = json.loads((demo_run / 'tracks.json').read_text())['tracks']
    truth = ground_truth_objects(vis_root)
    visible = [obj['mask_index'][:FRAMES] for obj in truth if min(obj['mask_index'][:FRAMES]) > 0]
    assert len(visible) == 3 and any(len(set(channels)) > 1 for channels in visible)
    assert sorted(track['channels'] for track in tracks.values()) == sorted(visible)
    for track in tracks.values():
        assert track['frames'] == list(range(FRAMES))
        assert [m is None for m in track['motion']] == [False] * (FRAMES - 1) + [True]
        assert np.all(np.isfinite(track['positions']))
    assert len({tuple(track['colour']) for track in tracks.values()}) == len(tracks)


def test_point_cloud_of_the_first_frame_back_projects_its_pixels(vis_root, demo_run):
    """World = camera of frame 0: its cloud projects back onto the pixel grid with the frame's colours."""
    points, colours = demo_files.read_ply(demo_run / 'pointclouds' / f'{0:010d}.ply')
    K = np.loadtxt(vis_root / 'image' / SCENE / 'cam.txt')
    assert points.shape == (HEIGHT * WIDTH, 3) and np.all(points[:, 2] > 0)
    v, u = np.mgrid[:HEIGHT, :WIDTH]
    np.testing.assert_allclose(demo_odometry.project_points(K, points), np.stack([u.ravel(), v.ravel()], 1), atol=2e-3)
    np.testing.assert_array_equal(colours, read_image(vis_root / 'image' / SCENE / f'{0:010d}.jpg').reshape(-1, 3))


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    points = rng.normal(size=(1000, 3)).astype(np.float32)
    colours = rng.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    demo_files.write_ply(tmp_path / 'cloud.ply', points, colours)
    read_points, read_colours = demo_files.read_ply(tmp_path / 'cloud.ply')
    np.testing.assert_array_equal(read_points, points)
    np.testing.assert_array_equal(read_colours, colours)
    try:
        import open3d
    except ImportError:
        return
    cloud = open3d.io.read_point_cloud(str(tmp_path / 'cloud.ply'))
    np.testing.assert_allclose(np.asarray(cloud.points), points, rtol=1e-6)


def test_ply_reader_rejects_a_truncated_file(tmp_path):
    demo_files.write_ply(tmp_path / 'cloud.ply', np.zeros((10, 3)), np.zeros((10, 3), np.uint8))
    data = (tmp_path / 'cloud.ply').read_bytes()
    (tmp_path / 'cloud.ply').write_bytes(data[:-5])
    with pytest.raises(ValueError, match='cloud.ply: PLY body is truncated'):
        demo_files.read_ply(tmp_path / 'cloud.ply')


def test_chained_trajectory_inverts_the_relative_poses():
    """Pose t -> t+1 maps camera-t points into camera t+1, so cam_to_world[t+1] = cam_to_world[t] @ inv(T)."""
    forward = np.array([[0, 0, -1.0, 0, 0, 0]] * 3)  # the scene comes 1 m closer: the camera drives 1 m forward
    centres = demo_odometry.chain_trajectory(forward)[:, :3, 3]
    np.testing.assert_allclose(centres, [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3]], atol=1e-12)
    rng = np.random.default_rng(0)
    poses = np.concatenate([rng.normal(size=(4, 3)), rng.normal(scale=0.2, size=(4, 3))], 1)
    cam_to_world = demo_odometry.chain_trajectory(poses)
    for t, pose in enumerate(poses):
        relative = np.linalg.inv(cam_to_world[t + 1]) @ cam_to_world[t]
        np.testing.assert_allclose(relative[:3, :3], Rotation.from_euler('XYZ', pose[3:]).as_matrix(), atol=1e-9)
        np.testing.assert_allclose(relative[:3, 3], pose[:3], atol=1e-9)


def test_kitti_trajectory_round_trip(tmp_path):
    cam_to_world = demo_odometry.chain_trajectory(np.random.default_rng(1).normal(scale=0.3, size=(3, 6)))
    demo_files.write_kitti_trajectory(tmp_path / 'poses.txt', cam_to_world)
    lines = (tmp_path / 'poses.txt').read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split()) == 12 for line in lines)
    np.testing.assert_allclose(demo_files.read_kitti_trajectory(tmp_path / 'poses.txt'), cam_to_world, atol=1e-8)


def test_object_centroid_is_the_mean_back_projected_point():
    K = np.array([[100.0, 0, 20], [0, 100, 10], [0, 0, 1]])
    depth = np.full((24, 40), 5.0)
    points = demo.camera_points(depth, K)
    masks = np.zeros((2, 24, 40), bool)
    masks[0, 4:9, 30:35] = True  # centre pixel (32, 6)
    centroids = demo_odometry.object_centroids(points, masks)
    np.testing.assert_allclose(centroids[0], [5 * (32 - 20) / 100, 5 * (6 - 10) / 100, 5])
    assert np.all(np.isnan(centroids[1]))


def test_track_ids_chain_through_channel_changes():
    ids = demo_odometry.assign_track_ids([np.array([[2, 1], [1, 3]]), np.array([[3, 2]]), np.zeros((0, 2))], 4)
    assert ids == [{2: 1, 1: 2}, {1: 1, 3: 2}, {2: 2}, {}]


def _copy_scene(vis_root, dest, kinds, frames=3):
    """Copy the first ``frames`` frames of the scene with the companion folders in ``kinds``."""
    for kind in ('image',) + tuple(kinds):
        (dest / kind / SCENE).mkdir(parents=True)
    for k in range(frames):
        shutil.copy(vis_root / 'image' / SCENE / f'{k:010d}.jpg', dest / 'image' / SCENE)
        if 'segmentation' in kinds:
            shutil.copy(vis_root / 'segmentation' / SCENE / f'{k:010d}.npy', dest / 'segmentation' / SCENE)
    shutil.copy(vis_root / 'image' / SCENE / 'cam.txt', dest / 'image' / SCENE)
    return dest / 'image' / SCENE


def test_without_flows_instances_are_tracked_by_plain_mask_iou(vis_root, tmp_path, capsys):
    scene = _copy_scene(vis_root, tmp_path / 'data', ['segmentation'])
    out = demo.main(['--data', str(tmp_path / 'data'), '--scene', SCENE, '--output-dir', str(tmp_path / 'out'),
                     '--device', 'cpu'])
    assert 'plain mask IoU' in capsys.readouterr().out
    tracks = json.loads((out / 'tracks.json').read_text())['tracks']
    visible = [obj['mask_index'][:3] for obj in ground_truth_objects(vis_root) if min(obj['mask_index'][:3]) > 0]
    assert sorted(track['channels'] for track in tracks.values()) == sorted(visible)
    assert str(scene) == json.loads((out / 'tracks.json').read_text())['scene']


def test_checkpoints_are_loaded_and_untrained_networks_announced(vis_root, tmp_path, capsys):
    """Networks saved from seed 5 and loaded give the same trajectory as random networks drawn with seed 5."""
    torch.manual_seed(5)
    nets = {'disp': models.DispResNet(18), 'ego': models.EgoPoseNet(18), 'obj': models.ObjPoseNet(18)}
    for key, net in nets.items():
        torch.save({'epoch': 1, 'state_dict': net.state_dict()}, tmp_path / f'{key}.pth.tar')
    scene = str(vis_root / 'image' / SCENE)
    common = ['--data', scene, '--max-frames', '2', '--device', 'cpu', '--output-dir', str(tmp_path / 'out')]
    loaded = demo.main(common + ['--pretrained-disp', str(tmp_path / 'disp.pth.tar'), '--pretrained-ego-pose',
                                 str(tmp_path / 'ego.pth.tar'), '--pretrained-obj-pose', str(tmp_path / 'obj.pth.tar')])
    assert 'untrained' not in capsys.readouterr().out
    drawn = demo.main(common + ['--seed', '5'])
    assert capsys.readouterr().out.count('untrained (randomly initialised)') == 3
    np.testing.assert_allclose(np.loadtxt(loaded / 'trajectory.txt'), np.loadtxt(drawn / 'trajectory.txt'),
                               rtol=1e-5, atol=1e-9)
    assert np.abs(np.loadtxt(drawn / 'trajectory.txt')[1] - np.eye(4)[:3].ravel()).max() > 0


def _error_of(argv):
    with pytest.raises(SystemExit) as info:
        demo.main(argv)
    message = str(info.value.code)
    assert message.startswith('error: ') and '\n' not in message
    return message


def test_missing_scene_folder_is_one_clear_line(tmp_path):
    message = _error_of(['--data', str(tmp_path / 'nowhere' / 'image' / 'scene')])
    assert str(tmp_path / 'nowhere') in message and 'scene folder not found' in message


def test_output_dir_that_is_a_file_is_refused_before_any_work(vis_root, tmp_path):
    blocker = tmp_path / 'results'
    blocker.write_text('my notes\n')
    message = _error_of(['--data', str(vis_root / 'image' / SCENE), '--max-frames', '2', '--device', 'cpu',
                         '--output-dir', str(blocker)])
    assert f'--output-dir {blocker / "demo"}' in message and 'is an existing file, not a folder' in message
    assert blocker.read_text() == 'my notes\n'


def test_a_frame_rate_that_is_not_positive_is_refused_when_parsed(vis_root, capsys):
    """``--fps 0`` would end a --video gif run, after all its work, in a ZeroDivisionError."""
    for fps in ('0', '-2', 'nan'):
        with pytest.raises(SystemExit) as info:
            demo.main(['--data', str(vis_root / 'image' / SCENE), '--save-fig', '--video', 'gif', '--fps', fps])
        assert info.value.code == 2
        assert f"--fps: must be a finite number > 0, got '{fps}'" in capsys.readouterr().err


def test_scene_with_fewer_than_two_frames_is_one_clear_line(vis_root, tmp_path):
    scene = _copy_scene(vis_root, tmp_path, [], frames=1)
    message = _error_of(['--data', str(scene)])
    assert str(scene) in message and '1 frame(s)' in message and 'at least 2' in message


def test_scene_without_cam_txt_is_one_clear_line(vis_root, tmp_path):
    scene = _copy_scene(vis_root, tmp_path, [], frames=2)
    (scene / 'cam.txt').unlink()
    message = _error_of(['--data', str(scene)])
    assert str(scene / 'cam.txt') in message and 'intrinsics' in message


def test_frame_size_not_a_multiple_of_32_is_one_clear_line(vis_root, tmp_path):
    scene = _copy_scene(vis_root, tmp_path, [], frames=2)
    Image.open(scene / f'{0:010d}.jpg').resize((400, HEIGHT)).save(scene / f'{0:010d}.jpg')
    message = _error_of(['--data', str(scene)])
    assert f'{0:010d}.jpg: frame is 128x400 (HxW)' in message and 'multiples of 32' in message


def test_segmentation_count_mismatch_and_bad_checkpoint_are_one_clear_line(vis_root, tmp_path):
    scene = _copy_scene(vis_root, tmp_path, ['segmentation'], frames=3)
    (tmp_path / 'segmentation' / SCENE / f'{2:010d}.npy').unlink()
    assert '2 segmentation files for 3 frames' in _error_of(['--data', str(scene)])
    (tmp_path / 'bad.pth.tar').write_bytes(b'not a checkpoint')
    message = _error_of(['--data', str(vis_root / 'image' / SCENE), '--pretrained-disp', str(tmp_path / 'bad.pth.tar')])
    assert 'bad.pth.tar' in message


def _run_script(env_overrides, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', **env_overrides)
    return subprocess.run(['sh', str(ROOT / 'scripts' / 'run_demo.sh')], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_run_demo_script_checks_its_paths(vis_root, tmp_path):
    result = _run_script({'SCENE': str(tmp_path / 'missing')}, tmp_path)
    assert result.returncode != 0 and 'SCENE=' in result.stderr and 'is not a folder' in result.stderr
    result = _run_script({'SCENE': str(vis_root / 'image' / SCENE), 'PRETRAINED': str(tmp_path / 'run')}, tmp_path)
    assert result.returncode != 0 and 'PRETRAINED=' in result.stderr
    (tmp_path / 'run').mkdir()
    result = _run_script({'SCENE': str(vis_root / 'image' / SCENE), 'PRETRAINED': str(tmp_path / 'run')}, tmp_path)
    assert result.returncode != 0 and 'dispnet_checkpoint.pth.tar: checkpoint not found' in result.stderr


def test_run_demo_script_runs_untrained(vis_root, tmp_path):
    result = _run_script({'SCENE': str(vis_root / 'image' / SCENE), 'PRETRAINED': '', 'MAX_FRAMES': '2',
                          'DEVICE': 'cpu', 'OUTPUT_DIR': str(tmp_path / 'out')}, tmp_path)
    assert result.returncode == 0, result.stderr
    [run] = list((tmp_path / 'out' / 'demo').iterdir())
    assert len(list((run / 'figures').glob('*.png'))) == 2 and (run / 'demo.mp4').is_file()


@pytest.mark.parametrize('suffix', ['mp4', 'gif'])
def test_animation_writer_writes_every_frame_at_an_even_size(tmp_path, suffix):
    writer = demo_files.AnimationWriter(tmp_path / f'anim.{suffix}', fps=4)
    for value in range(6):
        writer.append(np.full((51, 75, 3), 40 * value, np.uint8))
    assert not (tmp_path / f'anim.{suffix}').exists()  # appears only when closed
    writer.close()
    if suffix == 'gif':
        frames = imageio.mimread(tmp_path / 'anim.gif')
        assert len(frames) == 6 and frames[0].shape[:2] == (51, 75)
    else:
        assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / 'anim.mp4'))[0] == 6
        reader = imageio_ffmpeg.read_frames(str(tmp_path / 'anim.mp4'))
        assert tuple(next(reader)['size']) == (76, 52)  # H.264 yuv420p: padded to even width and height
        reader.close()
    assert [p.name for p in tmp_path.iterdir()] == [f'anim.{suffix}']


def test_gif_animation_stays_an_option(vis_root, tmp_path):
    out = demo.main(['--data', str(vis_root / 'image' / SCENE), '--max-frames', '2', '--device', 'cpu',
                     '--output-dir', str(tmp_path), '--save-fig', '--video', 'gif'])
    assert len(imageio.mimread(out / 'demo.gif')) == 2 and not (out / 'demo.mp4').exists()


def test_summary_prints_tracked_objects_and_their_mean_speed(demo_run):
    summary = json.loads((demo_run / 'tracks.json').read_text())['summary']
    tracks = json.loads((demo_run / 'tracks.json').read_text())['tracks']
    assert summary['tracked_objects'] == len(tracks) > 0
    speeds = [np.mean([np.linalg.norm(m) for m in t['motion'] if m is not None]) for t in tracks.values()]
    assert summary['mean_speed'] == pytest.approx(np.mean(speeds))
    assert summary['speed_unit'] == 'network units/frame'


def test_mean_speed_skips_frames_without_motion():
    tracks = {1: {'motion': [[3.0, 4.0, 0.0], None, [0.0, 0.0, 1.0]]}, 2: {'motion': [None]},
              3: {'motion': [[0.0, 2.0, 0.0]]}}
    assert demo.mean_speed(tracks) == pytest.approx((3.0 + 2.0) / 2)
    assert np.isnan(demo.mean_speed({}))


def test_camera_height_scale_makes_depth_trajectory_and_object_motion_metric(vis_root):
    scene = synthetic.render_scene(seed=0, index=0, height=HEIGHT, width=WIDTH, frames=3)
    poses = np.array([[0.1, 0.0, 0.5, 0.01, 0.02, 0.0], [0.0, 0.1, 0.4, 0.0, 0.0, 0.03]])
    inference = demo.Inference(scene.depths / 4, poses, [np.zeros((1, 2), int)] * 2, [np.ones((1, 3))] * 2)
    metric, scale = demo.scale_to_metric(inference, scene.K, camera_height=1.65)
    assert scale == pytest.approx(4.0, rel=0.02)
    np.testing.assert_allclose(metric.depths, scene.depths / 4 * scale, rtol=1e-6)
    np.testing.assert_allclose(metric.poses[:, :3], poses[:, :3] * scale)
    np.testing.assert_allclose(metric.poses[:, 3:], poses[:, 3:])  # rotations have no scale
    np.testing.assert_allclose(metric.obj_motion[1], scale)


def test_rerun_recording_holds_every_frame(demo_run):
    rerun = pytest.importorskip('rerun', reason='rerun-sdk (optional) is not installed')
    recording = demo_run.parent.parent / 'demo.rrd'
    assert recording.stat().st_size > 10000
    store = rerun.chunk.RrdReader(str(recording)).store()  # readable back
    entities = {str(path) for path in store.schema().entity_paths()}
    assert {'/world/camera', '/world/camera/image/rgb', '/world/camera/image/depth', '/world/points',
            '/world/trajectory', '/world/objects/1/track', '/world/objects/1/motion'} <= entities
    chunks = [line.split() for line in str(store.summary()).splitlines()]  # one line per chunk: PATH rows=N ...
    rows = sum(int(words[1][len('rows='):]) for words in chunks if words[0] == '/world/camera/image/rgb')
    assert rows == FRAMES  # one image per frame


def test_missing_rerun_sdk_is_one_clear_line(vis_root, tmp_path, monkeypatch):
    def no_rerun(name):
        raise ImportError(name)
    monkeypatch.setattr(demo.rerun_recording.importlib, 'import_module', no_rerun)
    message = _error_of(['--data', str(vis_root / 'image' / SCENE), '--rerun', str(tmp_path / 'r.rrd')])
    assert 'pip install rerun-sdk' in message and not (tmp_path / 'r.rrd').exists()


def _quaternion_ego_checkpoint(path):
    """An EgoPoseNet whose pose vectors hold large rotations (0.1..0.3), saved as trained with quaternions."""
    torch.manual_seed(1)
    net = models.EgoPoseNet(18)
    with torch.no_grad():
        net.decoder.convs_pose[2].bias.copy_(torch.tensor([0., 0., 100., 10., 20., 30.]))
    torch.save({'epoch': 1, 'state_dict': net.state_dict(),
                models.CONFIG_KEY: models.ModelConfig(rotation_mode='quat').as_dict()}, path)
    return path


def test_a_quaternion_model_is_decoded_as_quaternion_without_the_flag(vis_root, tmp_path, capsys):
    ego = _quaternion_ego_checkpoint(tmp_path / 'ego.pth.tar')
    common = ['--data', str(vis_root / 'image' / SCENE), '--max-frames', '2', '--device', 'cpu', '--output-dir',
              str(tmp_path / 'out'), '--pretrained-ego-pose', str(ego)]
    trajectories = {}
    for mode in (None, 'quat', 'euler'):
        out = demo.main(common + ([] if mode is None else ['--rotation-mode', mode]))
        trajectories[mode] = np.loadtxt(out / 'trajectory.txt')
        warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning')]
        assert warnings == ([f"warning: {ego} was trained with rotation_mode 'quat', using 'euler' as given"]
                            if mode == 'euler' else [])
    np.testing.assert_allclose(trajectories[None], trajectories['quat'], rtol=1e-6, atol=1e-9)
    assert np.abs(trajectories[None] - trajectories['euler']).max() > 1e-2
