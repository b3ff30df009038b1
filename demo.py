"""Unified visual odometry: depth, ego-motion and object motion of a KITTI-VIS scene, headless.

For consecutive frames ``(t, t+1)`` of one scene the demo runs the networks exactly as one training
step does (``projection.py``): the instances of the two frames are associated as in training
(forward-backward flow IoU, at most ``--mni`` pairs), EgoPoseNet sees the background-only images,
the reference is forward-warped into the target with the ego-motion, and ObjPoseNet gives each
object's translation.  The ego-motion ``t -> t+1`` is chained into a camera trajectory; associated
instances keep one track id (and colour) across frames; an object's 3-D position is the mean of
its back-projected pixels.

Outputs in ``OUTPUT_DIR/NAME/TIMESTAMP/``:

* ``trajectory.txt``: camera-to-world pose of every frame, KITTI odometry format (12 numbers a line);
  the world frame is the camera of the first frame.
* ``tracks.json``: per track id its frames, stored mask channels, 3-D positions (world and camera)
  and per-frame motion (ObjPoseNet translation, in the world and as the network gives it).
* ``pointclouds/FRAME.ply``: coloured point cloud of every frame in world coordinates (binary PLY).
* with ``--save-fig``: ``figures/FRAME.png`` (image with instance overlays and motion arrows,
  depth map, 3-D view of the trajectory with camera frusta and object tracks) and ``demo.mp4``
  (``--video gif``: ``demo.gif``).
* with ``--rerun RECORDING.rrd``: a Rerun recording (image, depth, point cloud, camera and object
  trajectories and motion vectors per frame; needs the optional ``rerun-sdk``).

``--scale-from camera-height`` makes depth, trajectory and object motion metric: one scale for the
scene, the median over its frames of ``--camera-height`` / the camera's height above the road plane
fitted to the predicted depth (``ground_plane.py``).

Example::

    python demo.py --data data/vis/image/SCENE --pretrained-disp ckpt/dispnet_model_best.pth.tar \\
        --pretrained-ego-pose ckpt/ego_pose_model_best.pth.tar --pretrained-obj-pose ckpt/obj_pose_model_best.pth.tar \\
        --mni 3 --save-fig
"""
import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import demo_figures
import demo_files
import demo_odometry
import models
import network_input
import rerun_recording
from checkpoint_io import CheckpointError
from cli_types import float_in
from devices import select_device
from fileio import OutputError, check_writable_folder, new_run_folder
from ground_plane import DEFAULT_CAMERA_HEIGHT, backproject, describe_scales, metric_scales
from datasets.association import associate_stored, binary_instances, pack_pairs
from datasets.io import DatasetError, read_image, read_segmentation
from datasets.scenes import COMPANIONS, list_frames, read_flow, read_scene
from network_input import size_problem
from projection import estimate_ego_motion, estimate_object_motion, first_projection, make_directed_pairs


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--data', required=True,
                        help='scene folder ROOT/image/SCENE (frames + cam.txt; segmentation and flows are taken '
                             'from ROOT/segmentation/SCENE, ROOT/flow_f/SCENE, ROOT/flow_b/SCENE), '
                             'or the dataset ROOT together with --scene')
    parser.add_argument('--scene', default=None, help='scene name when --data is the dataset root')
    parser.add_argument('--pretrained-disp', default=None, help='DispResNet checkpoint')
    parser.add_argument('--pretrained-ego-pose', default=None, help='EgoPoseNet checkpoint')
    parser.add_argument('--pretrained-obj-pose', default=None, help='ObjPoseNet checkpoint')
    parser.add_argument('--resnet-layers', type=int, choices=[18, 50], default=None,
                        help='DispResNet encoder depth (default: saved in the checkpoints, else 18)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default=None,
                        help='rotation parameterisation of the pose vectors (default: saved in the checkpoints, '
                             'else euler)')
    parser.add_argument('--mni', type=int, default=20, help='maximum number of instances per frame pair')
    parser.add_argument('--name', default='demo', help='outputs go to OUTPUT_DIR/NAME/TIMESTAMP')
    parser.add_argument('--output-dir', default='outputs', help='root of the output folders')
    parser.add_argument('--save-fig', action='store_true', help='save per-frame figures and an animation')
    parser.add_argument('--video', choices=demo_files.ANIMATION_FORMATS, default='mp4',
                        help='animation format with --save-fig: mp4 (H.264 through imageio-ffmpeg) or gif')
    parser.add_argument('--rerun', default=None, metavar='RECORDING.rrd',
                        help='also write a Rerun recording (needs the optional rerun-sdk: pip install rerun-sdk)')
    parser.add_argument('--scale-from', choices=('none', 'camera-height'), default='none',
                        help='camera-height: metric depth and motion from the camera height above the fitted road')
    parser.add_argument('--camera-height', type=float, default=DEFAULT_CAMERA_HEIGHT,
                        help='camera height above the road in metres, for --scale-from camera-height')
    parser.add_argument('--max-frames', type=int, default=0, help='use only the first N >= 2 frames (0: all)')
    parser.add_argument('--arrow-frames', type=float, default=5.0,
                        help='motion arrows show the per-frame object motion extrapolated over this many frames')
    parser.add_argument('--fps', type=float_in(0, include_low=False), default=5.0, help='frame rate of the animation')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='where to run the networks')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random initialisation of untrained networks')
    return parser


@dataclass
class Networks:
    """The three networks in eval mode and how their poses were trained: the rotation mode of the pose
    vectors and whether the ego pose is antisymmetric (``LossOptions.antisymmetric_ego_pose``)."""

    disp: torch.nn.Module
    ego: torch.nn.Module
    obj: torch.nn.Module
    rotation_mode: str = 'euler'
    antisymmetric_ego_pose: bool = False


@dataclass
class Inference:
    """Network outputs over the scene (``F`` frames)."""

    depths: np.ndarray       # [F,H,W] depth
    poses: np.ndarray        # [F-1,6] ego pose t -> t+1
    matches: list            # F-1 int arrays [k,2]: stored instance channel in t, in t+1 (k <= mni)
    obj_motion: list         # F-1 float arrays [k,3]: ObjPoseNet translation t -> t+1 of each match


def scene_folder(data, scene):
    """``(image folder, dataset root or None, scene name)`` from ``--data`` and ``--scene``."""
    data = Path(data)
    if scene:
        image_root = data / 'image' if (data / 'image').is_dir() else data
        return image_root / scene, (data if image_root != data else None), scene
    root = data.parent.parent if data.parent.name == 'image' else None
    return data, root, data.name


def find_scene(data, scene=None, max_frames=0):
    """Locate and check the files of the scene (:func:`datasets.scenes.read_scene`; segmentation and flows
    are optional: ``None`` when the dataset has none).

    Raises:
        DatasetError: missing folder, fewer than 2 frames, no ``cam.txt``, mismatched file counts.
    """
    folder, root, name = scene_folder(data, scene)
    if not folder.is_dir():
        raise DatasetError(folder, "scene folder not found (give --data ROOT/image/SCENE, "
                                   "or --data ROOT --scene SCENE)")
    frames = list_frames(folder)
    if len(frames) < 2:
        raise DatasetError(folder, f"{len(frames)} frame(s) (.jpg/.png) found; the demo needs at least 2 "
                                   "consecutive frames")
    found = read_scene(root, name, required=(), optional=COMPANIONS, image_dir=folder)
    return found.first_frames(len(frames) if max_frames <= 0 else max(2, min(max_frames, len(frames))))


def build_networks(args, device):
    """The three networks, from ``--pretrained-*`` checkpoints or randomly initialised (said so).

    The DispResNet depth and the rotation mode are the flags given, else the run's config saved in the
    checkpoints (:mod:`models.config`), else 18 and euler; the antisymmetric ego pose is the saved one.
    """
    torch.manual_seed(args.seed)
    paths = {'disp': args.pretrained_disp, 'ego': args.pretrained_ego_pose, 'obj': args.pretrained_obj_pose}
    nets, config = models.load_trained_networks(
        paths, {'resnet_layers': args.resnet_layers, 'rotation_mode': args.rotation_mode}, device)
    return Networks(nets['disp'], nets['ego'], nets['obj'], config.rotation_mode, config.antisymmetric_ego_pose)


def read_frame(path, expected_hw=None):
    """A frame as ``[H,W,3]`` uint8; its size must be a multiple of 32 and equal to ``expected_hw``."""
    image = read_image(path)
    height, width = image.shape[:2]
    problem = size_problem(height, width)
    if problem:
        raise DatasetError(path, f"frame is {problem}: resize the scene first")
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise DatasetError(path, f"frame is {height}x{width} (HxW), the first frame is "
                                 f"{expected_hw[0]}x{expected_hw[1]}")
    return image


def frame_masks(scene, t, frame_hw):
    """``[N,H,W]`` bool instance masks of frame ``t`` (stored channel ``i + 1``); none without segmentation."""
    if scene.segmentations is None:
        return np.zeros((0,) + tuple(frame_hw), bool)
    return binary_instances(read_segmentation(scene.segmentations[t], frame_hw))


def _flow(paths, t, frame_hw):
    """Flow file ``t`` of ``paths`` as ``[H,W,2]``; zero flow when the scene has no flows (plain mask IoU)."""
    if paths is None:
        return np.zeros(tuple(frame_hw) + (2,), np.float32)
    return read_flow(paths[t], frame_hw)


def match_instances(scene, t, masks_a, masks_b, mni):
    """Associate the instances of frames ``t`` and ``t+1`` as training does.

    Returns:
        ``[k,2]`` int64 stored channels (frame t, frame t+1), ``k <= mni``, in training's order.
    """
    frame_hw = masks_a.shape[1:]
    pairs = associate_stored(masks_a, masks_b, _flow(scene.flows_forward, t, frame_hw),
                             _flow(scene.flows_backward, t, frame_hw))
    return pairs[:mni]


def to_network_input(image, device):
    """``[H,W,3]`` uint8 frame -> ``[1,3,H,W]`` normalised tensor on ``device`` (:mod:`network_input`)."""
    return network_input.to_network_input(image).unsqueeze(0).to(device)


def instance_tensors(masks_a, masks_b, pairs, mni, device):
    """``[1,1+mni,H,W]`` instance tensors of frames t and t+1 from their matches (training's packing)."""
    inst_a, inst_b = pack_pairs(pairs - 1, masks_a, masks_b, mni)
    return torch.from_numpy(inst_a).unsqueeze(0).to(device), torch.from_numpy(inst_b).unsqueeze(0).to(device)


@torch.no_grad()
def infer_pair(nets, img_a, img_b, inst_a, inst_b, depth_a, depth_b, K):
    """Ego pose and object translations ``t -> t+1`` of one frame pair, as in a training step.

    Args:
        img_a, img_b: ``[1,3,H,W]`` normalised frames t and t+1.
        inst_a, inst_b: ``[1,1+M,H,W]`` matched instance tensors.
        depth_a, depth_b: ``[1,1,H,W]`` depths.
        K: ``[1,3,3]``.
    Returns:
        ``(pose [6], object translations [M,3])`` for the direction t -> t+1.
    """
    pairs = make_directed_pairs(img_a, [img_b], [inst_a], [inst_b], K)
    ego_poses = estimate_ego_motion(nets.ego, pairs, antisymmetric=nets.antisymmetric_ego_pose)
    _, source_depths = pairs.layout.pair_frames(pairs.layout.stack_frames(depth_a, [depth_b]))
    warped, warped_masks, _ = first_projection(pairs, source_depths, ego_poses, nets.rotation_mode)
    obj_motion = estimate_object_motion(nets.obj, pairs, warped, warped_masks)
    forward = pairs.layout.row(batch_size=1, sample=0, forward=True)   # the pair (t, t+1)
    return ego_poses[forward], obj_motion[forward]


@torch.no_grad()
def run_networks(scene, nets, mni, device):
    """Depth of every frame and motion of every consecutive pair: an :class:`Inference`."""
    frame_hw = read_frame(scene.frames[0]).shape[:2]
    K = torch.from_numpy(scene.intrinsics).float().unsqueeze(0).to(device)
    depths, poses, matches, obj_motion = [], [], [], []
    previous = None
    for t, path in enumerate(tqdm(scene.frames, desc='networks', unit='frame')):
        img = to_network_input(read_frame(path, frame_hw), device)
        depth = 1 / nets.disp(img)
        masks = frame_masks(scene, t, frame_hw)
        depths.append(depth[0, 0].cpu().numpy())
        if previous is not None:
            img_a, depth_a, masks_a = previous
            pairs = match_instances(scene, t - 1, masks_a, masks, mni)
            inst_a, inst_b = instance_tensors(masks_a, masks, pairs, mni, device)
            pose, motion = infer_pair(nets, img_a, img, inst_a, inst_b, depth_a, depth, K)
            poses.append(pose.cpu().numpy())
            matches.append(pairs)
            obj_motion.append(motion[:len(pairs)].cpu().numpy().astype(np.float64))
        previous = img, depth, masks
    return Inference(np.stack(depths), np.stack(poses), matches, obj_motion)


def scale_to_metric(inference, intrinsics, camera_height):
    """The :class:`Inference` with depths, ego translations and object translations in metres.

    One scale for the scene: the median over frames of ``camera_height`` / the fitted road height.
    Returns ``(scaled Inference, scale)``.
    """
    scales, per_image = metric_scales(inference.depths, intrinsics, [0] * len(inference.depths), camera_height)
    print(f"=> {describe_scales(scales, per_image)}: scale {scales[0]:.3f} (camera height {camera_height} m)")
    scale = float(scales[0])
    poses = inference.poses.copy()
    poses[:, :3] *= scale
    return Inference(inference.depths * scale, poses, inference.matches,
                     [motion * scale for motion in inference.obj_motion]), scale


def mean_speed(tracks):
    """Mean over tracked objects of their mean ObjPoseNet motion length per frame (NaN without motion)."""
    speeds = [np.mean([np.linalg.norm(m) for m in track['motion'] if m is not None]) for track in tracks.values()
              if any(m is not None for m in track['motion'])]
    return float(np.mean(speeds)) if speeds else float('nan')


def camera_points(depth, intrinsics):
    """``[H,W]`` depth -> ``[3,H,W]`` camera points (``pixel2cam``)."""
    return backproject(depth, intrinsics).transpose(2, 0, 1)


def build_tracks(scene, inference, cam_to_world, ids):
    """Per track id: frames, stored channels, positions (world, camera) and motion (world, network).

    ``motion[i]`` is the ObjPoseNet translation of frame ``frames[i]`` to the next frame, rotated into
    the world (``cam_to_world[t+1]`` rotation: the network's translation is added in camera t+1);
    ``None`` when the object is not associated with the next frame.
    """
    frame_hw = inference.depths.shape[1:]
    tracks = {}
    for t, channel_ids in enumerate(ids):
        if not channel_ids:
            continue
        channels = sorted(channel_ids)
        masks = frame_masks(scene, t, frame_hw)[np.array(channels) - 1]
        centroids = demo_odometry.object_centroids(camera_points(inference.depths[t], scene.intrinsics), masks)
        forward = ({int(c): m for c, m in zip(inference.matches[t][:, 0], inference.obj_motion[t])}
                   if t < len(inference.matches) else {})
        for channel, centroid in zip(channels, centroids):
            track = tracks.setdefault(channel_ids[channel], {'frames': [], 'frame_names': [], 'channels': [],
                                                            'positions': [], 'positions_camera': [],
                                                            'motion': [], 'motion_network': []})
            track['frames'].append(t)
            track['frame_names'].append(scene.frames[t].stem)
            track['channels'].append(channel)
            track['positions'].append(demo_odometry.to_world(cam_to_world[t], centroid).tolist())
            track['positions_camera'].append(centroid.tolist())
            network = forward.get(channel)
            track['motion_network'].append(None if network is None else network.tolist())
            track['motion'].append(None if network is None else (cam_to_world[t + 1][:3, :3] @ network).tolist())
    return tracks


def cloud_of_frame(image, depth, intrinsics, cam_to_world):
    """Coloured world point cloud of a frame (pixels with finite, positive depth).

    Returns:
        ``(points [N,3] world, colours [N,3] uint8, depths [N])``.
    """
    points = camera_points(depth, intrinsics).reshape(3, -1).T
    depth = depth.reshape(-1)
    keep = np.isfinite(points).all(1) & (depth > 0)
    return demo_odometry.to_world(cam_to_world, points[keep]), image.reshape(-1, 3)[keep], depth[keep]


def figure_cloud_sample(points, colours, depths, rng):
    """At most ``CLOUD_POINTS_IN_FIGURE`` random points of a cloud, among the nearest 95% of its depths."""
    if len(points) == 0:
        return points, colours
    near = np.flatnonzero(depths <= np.percentile(depths, 95))
    chosen = rng.choice(near, size=min(len(near), demo_figures.CLOUD_POINTS_IN_FIGURE), replace=False)
    return points[chosen], colours[chosen]


def write_point_clouds(scene, inference, cam_to_world, out_dir):
    """One PLY per frame; returns the figure samples and the full clouds, ``[(points, colours)]`` each."""
    rng = np.random.default_rng(0)
    samples, clouds = [], []
    for t, path in enumerate(scene.frames):
        image = read_frame(path)
        points, colours, depths = cloud_of_frame(image, inference.depths[t], scene.intrinsics, cam_to_world[t])
        demo_files.write_ply(out_dir / 'pointclouds' / f'{path.stem}.ply', points, colours)
        samples.append(figure_cloud_sample(points, colours, depths, rng))
        clouds.append((points, colours))
    return samples, clouds


def write_figures(scene, inference, cam_to_world, tracks, ids, samples, out_dir, args):
    """Per-frame figures and the animation (``demo.mp4`` or ``demo.gif``)."""
    points = [cam_to_world[:, :3, 3]] + [s[0] for s in samples]
    points += [np.asarray(track['positions']) for track in tracks.values()]
    limits = demo_figures.scene_limits(np.concatenate(points))
    frame_hw = inference.depths.shape[1:]
    view = demo_figures.FrameView(K=np.asarray(scene.intrinsics, np.float64), image_hw=frame_hw,
                                cam_to_world=cam_to_world, tracks=tracks, limits=limits,
                                frustum_size=0.08 * limits[1], arrow_frames=args.arrow_frames)
    animation = demo_files.AnimationWriter(out_dir / f'demo.{args.video}', args.fps)
    try:
        for t, path in enumerate(tqdm(scene.frames, desc='figures', unit='frame')):
            masks = frame_masks(scene, t, frame_hw)
            instances = {track_id: masks[channel - 1] for channel, track_id in ids[t].items()}
            view.cloud = samples[t]
            title = f"{scene.name}  frame {path.stem}  ({t + 1}/{len(scene.frames)})"
            rgb = demo_figures.render_frame_figure(out_dir / 'figures' / f'{path.stem}.png', t, read_frame(path),
                                                 inference.depths[t], instances, view, title)
            animation.append(rgb)
    except BaseException:
        animation.abort()
        raise
    animation.close()


def write_rerun(path, scene, inference, cam_to_world, tracks, clouds):
    """The Rerun recording of the run (``--rerun``)."""
    frames = [(read_frame(p), depth) for p, depth in zip(scene.frames, inference.depths)]
    colours = {k: tuple(int(round(255 * c)) for c in demo_figures.track_colour(k)) for k in tracks}
    rerun_recording.write_recording(path, frames, np.asarray(scene.intrinsics, np.float64), cam_to_world, tracks,
                                    colours, clouds)
    print(f"=> Rerun recording {path} (view it with: rerun {path})")


def run_demo(args):
    """Run the demo; returns the output folder."""
    if args.rerun:
        rerun_recording.import_rerun()
    if args.camera_height <= 0:
        raise ValueError(f"--camera-height {args.camera_height}: must be positive (metres)")
    check_writable_folder(Path(args.output_dir) / args.name, '--output-dir')
    scene = find_scene(args.data, args.scene, args.max_frames)
    read_frame(scene.frames[0])
    if scene.segmentations is None:
        print(f"=> no segmentation folder for {scene.folder}: no instances, ego-motion and depth only")
    elif scene.flows_forward is None or scene.flows_backward is None:
        print(f"=> no flow_f/flow_b folders for {scene.folder}: instances are associated by plain mask IoU")
        scene.flows_forward = scene.flows_backward = None
    device = select_device(args.device)
    nets = build_networks(args, device)
    inference = run_networks(scene, nets, args.mni, device)
    scale = None
    if args.scale_from == 'camera-height':
        inference, scale = scale_to_metric(inference, scene.intrinsics, args.camera_height)
    unit = 'network units' if scale is None else 'm'
    cam_to_world = demo_odometry.chain_trajectory(inference.poses, nets.rotation_mode)
    ids = demo_odometry.assign_track_ids(inference.matches, len(scene.frames))
    tracks = build_tracks(scene, inference, cam_to_world, ids)
    speed = mean_speed(tracks)
    out_dir = new_run_folder(Path(args.output_dir) / args.name, create=True)
    demo_files.write_kitti_trajectory(out_dir / 'trajectory.txt', cam_to_world)
    demo_files.write_json(out_dir / 'tracks.json', {
        'scene': str(scene.folder), 'frames': [p.stem for p in scene.frames],
        'world_frame': 'camera of the first frame: x right, y down, z forward '
                       + ('(network scale)' if scale is None else f'(metres: camera-height scale {scale:.4f})'),
        'summary': {'tracked_objects': len(tracks), 'mean_speed': speed if np.isfinite(speed) else None,
                    'speed_unit': f'{unit}/frame'},
        'tracks': {str(k): dict(v, colour=list(demo_figures.track_colour(k))) for k, v in sorted(tracks.items())}})
    samples, clouds = write_point_clouds(scene, inference, cam_to_world, out_dir)
    if args.save_fig:
        write_figures(scene, inference, cam_to_world, tracks, ids, samples, out_dir, args)
    if args.rerun:
        write_rerun(args.rerun, scene, inference, cam_to_world, tracks, clouds)
    moving = f", mean speed {speed:.3f} {unit}/frame" if np.isfinite(speed) else ''
    print(f"=> {len(scene.frames)} frames, {len(tracks)} tracked objects{moving}; outputs in {out_dir}")
    return out_dir


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.mni < 0:
        raise SystemExit(f"error: --mni must be >= 0, got {args.mni}")
    if args.max_frames == 1:
        raise SystemExit("error: --max-frames 1: the demo needs at least 2 frames (0 = all)")
    try:
        return run_demo(args)
    except (DatasetError, CheckpointError, OutputError, ValueError, rerun_recording.RerunUnavailable) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == '__main__':
    main()
