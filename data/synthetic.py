"""A synthetic driving world with exact ground truth, in the KITTI-VIS and raw-KITTI layouts.

Command line::

    python -m data.synthetic --out DIR [--scenes 4 --frames 20 --height 128 --width 416 --seed 0
                                        --layout vis|raw|both|odometry --preview [PNG] --max-cars 4 --overwrite
                                        --val-moving-cars N]

writes ``DIR/vis`` (KITTI-VIS: training and ``--with-gt`` validation) and/or ``DIR/raw`` (raw
KITTI: Eigen-style evaluation); with ``both`` they hold the same scenes.  ``odometry`` writes
``DIR/odometry``: the scenes as KITTI odometry sequences for ``test_pose.py`` (images and poses, no
flows are rendered; see ``data/_synthetic_odometry.py``).  ``--preview`` saves a
contact sheet (image, depth, instance masks, forward flow) of the first scene, by default to
``DIR/preview.png``.  Each layout is built in a hidden staging folder and moved into place at the
end; an existing ``DIR/vis`` or ``DIR/raw`` is only replaced with ``--overwrite`` and only if it was
written by this generator (it holds ``synthetic_config.json``).  ``--val-moving-cars N`` guarantees
N moving cars in view (in 80 % of the frames) in every validation scene (the quick start uses it).

The world (metres; x right, y down, z forward, road plane ``y = 0``): a straight street with
textured asphalt, lane markings, sidewalk tiles, building facades with windows on both sides,
sidewalk obstacles, optionally a cross street, sky (no depth, 0 in depth maps).  A KITTI-like
camera (``fx = fy = 0.58 W``, principal point ``(0.491 W, 0.461 H)``) 1.65 m above the road
drives 0.5-1.5 m per frame with small yaw/pitch oscillations.  0-4 cars (two textured boxes:
body and cabin) are parked or drive with their own constant velocity (same or opposite
direction, or crossing), so object motion is a pure translation, as Insta-DM models it.
Textures are multi-scale value noise with edges, filtered by the pixel footprint; every frame
gets a small global illumination change (+-2 %) and sensor noise (sigma 1 grey level).

KITTI-VIS layout (``DIR/vis``), scene ``S`` = ``2011_09_26_drive_NNNN_sync_02``, frame ``k``::

    image/S/%010d.jpg, image/S/cam.txt       frames (JPEG quality 95), 3x3 intrinsics
    image/S/%010d.npy                        GT depth, float32 [H,W] metres, 0 = sky (val scenes only)
    segmentation/S/%010d.npy                 uint8 [1+N,H,W]: channel 0 zeros, 1..N visible cars, random order
    flow_f/S/%010d.flo, flow_b/S/%010d.flo   Middlebury flow k -> k+1 and k+1 -> k (F-1 files each)
    train.txt, val.txt                       scene names (last max(1, n // 5) scenes are val; 1 scene: both)
    poses/S.json                             camera-to-world 4x4 per frame; per car: kind, size, world
                                             pose per frame, channel in each frame's mask file (-1: absent)

Raw KITTI layout (``DIR/raw``), drive ``D`` = ``2011_09_26_drive_NNNN_sync``::

    2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt   KITTI text format (1-based P_rect)
    2011_09_26/D/image_02/data/%010d.png                      frames at the requested size
    2011_09_26/D/velodyne_points/data/%010d.bin               float32 [N,4] x, y, z, reflectance
    gt_depth/2011_09_26/D/image_02/data/%010d.npy             dense renderer depth of each frame
    test_files.txt                                            every frame, Eigen-list format
    poses/S.json                                              as in the KITTI-VIS layout

Flows hold the geometric motion of every pixel's 3-D point (sky: a direction at infinity), also
where the target is hidden or outside the image; the occlusion masks are in the Python API and
the preview, not in the ``.flo`` files.

Python API::

    scene = render_scene(seed=0, index=0, height=128, width=416, frames=20)
    scene.images [F,H,W,3] uint8, scene.depths [F,H,W] float32, scene.masks (F arrays [1+N,H,W] uint8),
    scene.instance_maps [F,H,W] (0 none, j = car j), scene.flow_f / flow_b [F-1,H,W,2] float32,
    scene.occlusion_f / occlusion_b [F-1,H,W] bool, scene.K [3,3], scene.cam_to_world [F,4,4],
    scene.objects (ObjectTrack: kind, size, world_poses [F,4,4], mask_index [F])
    relative_pose(scene, a, b) -> [4,4] (X_b = T X_a), pose_to_vec(T) -> [6] for pose_vec2mat
    motion_field(scene, a, b) -> [6,H,W] (Insta-DM motion field a -> b), render_lidar(scene, k) -> [N,4]
    write_kitti_vis(scenes, root), write_raw_kitti(scenes, root), write_odometry(scenes, root),
    contact_sheet(scene), main(argv)
"""
import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data._synthetic_odometry import write_kitti_odometry
from data._synthetic_render import (NOTHING, camera_rays, cast_rays, cull_behind, geometric_flow,
                                    lidar_reflectance, shade_hits)
from data._synthetic_world import StreetWorld, sample_camera_path, sample_world
from datasets.io import save_npy, write_cam, write_flo, write_image
from fileio import atomic_open
from inverse_warp import mat2euler

DATE = '2011_09_26'
JPEG_QUALITY = 95
CONFIG_FILE = 'synthetic_config.json'
ILLUMINATION_JITTER = 0.02
SENSOR_NOISE = 1.0
MIN_MASK_PIXELS = 20
CAM2_FROM_CAM0 = np.array([0.06, 0.0, 0.0])
VELO_TO_CAM0_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
VELO_TO_CAM0_T = np.array([0.0, -0.08, -0.27])
CAM_BASELINES = (0.0, -0.54, 0.06, -0.47)
LIDAR_ELEVATIONS_DEG = (2.0, -24.8)
LIDAR_BEAMS = 64
LIDAR_AZIMUTHS = 2000
LIDAR_RANGE = 120.0
LAYOUTS = ('vis', 'raw', 'both', 'odometry')
LAYOUT_VARIANT_STREAM = 1000
MOVING_CAR_MIN_VIEW = 0.8
MOVING_CAR_TRIES = 20


class SyntheticError(ValueError):
    """Bad arguments or an output folder that must not be touched (one-line message)."""


@dataclass
class ObjectTrack:
    """Ground truth of one car.

    Attributes:
        kind: 'parked', 'same', 'opposite' or 'crossing'.
        size: ``[3]`` (length, width, height) of the body in metres.
        world_poses: ``[F,4,4]`` car-to-world poses (car frame: x right, y down, z forward, origin
            at the bottom centre of the body).
        mask_index: ``[F]`` int, channel of the car in each frame's ``[1+N,H,W]`` masks, -1 when absent.
    """
    kind: str
    size: np.ndarray
    world_poses: np.ndarray
    mask_index: np.ndarray


@dataclass
class SyntheticScene:
    """One rendered sequence of ``F`` frames of ``H x W`` pixels and its exact ground truth.

    Attributes:
        name: KITTI-VIS scene name; seed, index: what :func:`render_scene` was called with.
        K: ``[3,3]`` intrinsics (0-based pixel centres).
        images: ``[F,H,W,3]`` uint8.  depths: ``[F,H,W]`` float32 z in metres, 0 for sky.
        instance_maps: ``[F,H,W]`` int16, 0 background, ``j`` car ``j`` (``objects[j-1]``), every visible pixel.
        masks: ``F`` uint8 arrays ``[1+N_k,H,W]``: channel 0 empty, then the cars with at least
            ``min_mask_pixels`` pixels in random order (``ObjectTrack.mask_index`` says which is which).
        flow_f, flow_b: ``[F-1,H,W,2]`` float32 flows k -> k+1 and k+1 -> k (u, v in pixels).
        occlusion_f, occlusion_b: ``[F-1,H,W]`` bool, True where the pixel's point is hidden or
            outside the image in the other frame.
        cam_to_world: ``[F,4,4]`` camera-to-world poses.  objects: list of :class:`ObjectTrack`.
        world: the ``StreetWorld`` (geometry, for lidar scans).
    """
    name: str
    seed: int
    index: int
    K: np.ndarray
    images: np.ndarray
    depths: np.ndarray
    instance_maps: np.ndarray
    masks: list
    flow_f: np.ndarray
    flow_b: np.ndarray
    occlusion_f: np.ndarray
    occlusion_b: np.ndarray
    cam_to_world: np.ndarray
    objects: list
    world: StreetWorld

    @property
    def frames(self):
        """Number of frames ``F``."""
        return len(self.images)


def scene_name(index):
    """KITTI-VIS scene name of scene ``index`` (0-based), e.g. ``2011_09_26_drive_0001_sync_02``."""
    return f'{drive_name(index)}_02'


def drive_name(index):
    """Raw KITTI drive name of scene ``index`` (0-based), e.g. ``2011_09_26_drive_0001_sync``."""
    return f'{DATE}_drive_{index + 1:04d}_sync'


def kitti_like_intrinsics(height, width):
    """``[3,3]`` intrinsics of the renderer (0-based pixel centres): KITTI's field of view, square pixels."""
    focal = round(0.58 * width, 3)
    return np.array([[focal, 0.0, round(0.491 * width, 3)], [0.0, focal, round(0.461 * height, 3)], [0, 0, 1.0]])


def check_settings(frames, height, width, scenes=1, max_cars=4, seed=0, val_moving_cars=0):
    """Raise ``SyntheticError`` for unusable generator settings."""
    if not 0 <= val_moving_cars <= max_cars:
        raise SyntheticError(f"--val-moving-cars must be between 0 and --max-cars ({max_cars}), got {val_moving_cars}")
    if seed < 0:
        raise SyntheticError(f"--seed must be >= 0, got {seed}")
    if frames < 2:
        raise SyntheticError(f"--frames must be at least 2 (flows need pairs), got {frames}")
    if height < 16 or width < 16:
        raise SyntheticError(f"--height and --width must be at least 16 pixels, got {height}x{width}")
    if scenes < 1:
        raise SyntheticError(f"--scenes must be at least 1, got {scenes}")
    if not 0 <= max_cars <= 16:
        raise SyntheticError(f"--max-cars must be between 0 and 16, got {max_cars}")


def render_frame(world, frame, cam_to_world, K, rays):
    """Render one frame.

    Args:
        world: ``StreetWorld``; frame: frame index; cam_to_world: ``[4,4]``; K: ``[3,3]``;
        rays: ``[H*W,3]`` camera rays from :func:`camera_rays`.
    Returns:
        dict with ``colour`` ``[H*W,3]`` float (linear, 0..1 before noise), ``depth`` ``[H*W]``
        (0 = sky), ``owner`` ``[H*W]`` (-1 sky, 0 static, j car j), ``points`` ``[H*W,3]`` world
        points, ``dirs`` ``[H*W,3]`` world rays.
    """
    boxes = cull_behind(world.boxes_at(frame), cam_to_world)
    dirs = rays @ cam_to_world[:3, :3].T
    origin = cam_to_world[:3, 3]
    t, index = cast_rays(boxes, origin, dirs)
    colour = shade_hits(world, boxes, index, t, origin, dirs, K[0, 0])
    sky = index == NOTHING
    owner = np.zeros(len(dirs), int)
    owner[index >= 0] = boxes.owner[index[index >= 0]]
    owner[sky] = -1
    depth = np.where(sky, 0.0, t)
    points = origin + np.where(sky, 0.0, t)[:, None] * dirs
    return {'colour': colour, 'depth': depth, 'owner': owner, 'points': points, 'dirs': dirs}


def expose(colour, rng):
    """Camera response: ``[N,3]`` linear colour -> uint8 with a global gain jitter and sensor noise."""
    gain = 1 + rng.uniform(-ILLUMINATION_JITTER, ILLUMINATION_JITTER)
    noisy = colour * gain * 255 + rng.normal(0, SENSOR_NOISE, colour.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def instance_masks(instance_map, n_cars, rng, min_pixels=MIN_MASK_PIXELS):
    """Detector-like masks of one frame.

    Args:
        instance_map: ``[H,W]`` int, 0 background, ``j`` car ``j``.
        n_cars: number of cars in the scene; rng: shuffles the channel order.
    Returns:
        ``(masks uint8 [1+N,H,W] with channel 0 empty, channel_of [n_cars] int (-1 absent))``.
    """
    counts = np.bincount(instance_map.ravel(), minlength=n_cars + 1)
    present = rng.permutation(np.flatnonzero(counts[1:] >= min_pixels) + 1)
    masks = np.zeros((1 + len(present),) + instance_map.shape, np.uint8)
    masks[1:] = instance_map[None] == present[:, None, None]
    channel_of = np.full(n_cars, -1)
    channel_of[present - 1] = np.arange(1, len(present) + 1)
    return masks, channel_of


def render_scene(seed=0, index=0, height=128, width=416, frames=20, min_cars=0, max_cars=4,
                 min_mask_pixels=MIN_MASK_PIXELS, min_moving_cars=0, variant=0, with_flows=True):
    """Render scene ``index`` of the world of ``seed`` in memory (deterministic in ``(seed, index)``).

    Frames are rendered in order; the flows of a pair are computed as soon as both frames exist,
    so only two frames' 3-D points are held at a time.  ``min_moving_cars``: at least that many
    sampled cars move (see :func:`render_with_moving_cars` for a guarantee that they are in view);
    ``variant > 0`` draws another street layout for the same ``(seed, index)``.  ``with_flows=False``
    skips the flows (about half the time; the flow and occlusion arrays then hold 0 pairs).

    Returns:
        ``SyntheticScene`` (see the module docstring for every array's shape).
    """
    check_settings(frames, height, width, max_cars=max_cars, seed=seed)
    rng = np.random.default_rng([seed, index] if variant == 0 else [seed, index, LAYOUT_VARIANT_STREAM + variant])
    cam_to_world = sample_camera_path(rng, frames)
    world = sample_world(rng, cam_to_world, min(min_cars, max_cars), max_cars, min_moving_cars)
    noise_rng = np.random.default_rng([seed, index, 1])
    K = kitti_like_intrinsics(height, width)
    rays = camera_rays(K, height, width)
    images, depths, instance_maps, masks, channels, flows = [], [], [], [], [], []
    previous = None
    for k in range(frames):
        current = render_frame(world, k, cam_to_world[k], K, rays)
        images.append(expose(current['colour'], noise_rng).reshape(height, width, 3))
        depths.append(current['depth'].reshape(height, width).astype(np.float32))
        instance_maps.append(np.maximum(current['owner'], 0).reshape(height, width).astype(np.int16))
        frame_masks, frame_channels = instance_masks(instance_maps[-1], len(world.cars), noise_rng, min_mask_pixels)
        masks.append(frame_masks)
        channels.append(frame_channels)
        if previous is not None and with_flows:
            flows.append(_pair_flows(world, previous, current, k - 1, cam_to_world, K, (height, width)))
        previous = current
    flow_f, occ_f, flow_b, occ_b = (np.stack(part) for part in zip(*flows)) if flows else _no_flows(height, width)
    objects = [ObjectTrack(str(car.kind), car.size.copy(), np.stack([car.pose(k) for k in range(frames)]),
                           np.array([c[j] for c in channels])) for j, car in enumerate(world.cars)]
    return SyntheticScene(scene_name(index), seed, index, K, np.stack(images), np.stack(depths),
                          np.stack(instance_maps), masks, flow_f, flow_b, occ_f, occ_b, cam_to_world, objects, world)


def _no_flows(height, width):
    """Flow and occlusion arrays of 0 pairs, ``(flow_f, occlusion_f, flow_b, occlusion_b)``."""
    flow, occlusion = np.zeros((0, height, width, 2), np.float32), np.zeros((0, height, width), bool)
    return flow, occlusion, flow.copy(), occlusion.copy()


def moving_cars_in_view(scene, min_fraction=MOVING_CAR_MIN_VIEW):
    """Number of moving cars whose instance mask exists in at least ``min_fraction`` of the frames."""
    return sum(car.kind != 'parked' and (car.mask_index >= 0).mean() >= min_fraction for car in scene.objects)


def render_with_moving_cars(seed, index, height, width, frames, max_cars, count, tries=MOVING_CAR_TRIES):
    """Render scene ``index`` so that at least ``count`` moving cars are in view (:func:`moving_cars_in_view`).

    Street layouts are drawn (``variant`` 0, 1, ...) until one qualifies.

    Raises:
        SyntheticError: no layout qualified after ``tries`` draws.
    """
    for variant in range(tries):
        scene = render_scene(seed, index, height, width, frames, max_cars=max_cars, min_moving_cars=count,
                             variant=variant)
        if moving_cars_in_view(scene) >= count:
            return scene
    raise SyntheticError(f"scene {scene_name(index)}: no street layout with {count} moving cars in view in "
                         f"{MOVING_CAR_MIN_VIEW:.0%} of the frames after {tries} tries (lower --val-moving-cars)")


def _pair_flows(world, first, second, k, cam_to_world, K, shape):
    """Forward (k -> k+1) and backward (k+1 -> k) flows and occlusion masks from two frames' renders."""
    forward = geometric_flow(world, first['points'], first['owner'], first['dirs'], k, k + 1, cam_to_world[k + 1],
                             K, shape)
    backward = geometric_flow(world, second['points'], second['owner'], second['dirs'], k + 1, k, cam_to_world[k],
                              K, shape)
    return forward + backward


def relative_pose(scene, frame_a, frame_b):
    """``[4,4]`` rigid transform from camera ``a`` to camera ``b``: ``X_b = T X_a`` (homogeneous)."""
    return np.linalg.inv(scene.cam_to_world[frame_b]) @ scene.cam_to_world[frame_a]


def pose_to_vec(transform):
    """``[4,4]`` (or ``[3,4]``) transform -> ``[6]`` ``(tx, ty, tz, rx, ry, rz)`` with ``R = Rx Ry Rz``."""
    rotation = torch.from_numpy(np.asarray(transform[:3, :3], np.float64))[None]
    return np.concatenate([transform[:3, 3], mat2euler(rotation)[0].numpy()])


def object_translation(scene, car, frame_a, frame_b):
    """``[3]`` translation that car ``car`` (1-based) adds to the ego motion a -> b, in camera ``b``.

    For a point of the car, ``X_b = R X_a + t + object_translation`` with ``[R|t]`` the ego pose.
    """
    track = scene.objects[car - 1]
    move = track.world_poses[frame_b, :3, 3] - track.world_poses[frame_a, :3, 3]
    return scene.cam_to_world[frame_b, :3, :3].T @ move


def motion_field(scene, frame_a, frame_b):
    """Insta-DM motion field from frame ``a`` to ``b``: ``[6,H,W]`` float32.

    Channels 0..2: ego translation plus, on each car's pixels of frame ``a``, the car's translation;
    channels 3..5: ego euler rotation (constant).  ``inverse_warp_mof`` of frame ``b`` with it and
    the depth of frame ``a`` reproduces frame ``a``.
    """
    ego = pose_to_vec(relative_pose(scene, frame_a, frame_b))
    extra = np.stack([np.zeros(3)] + [object_translation(scene, j + 1, frame_a, frame_b)
                                      for j in range(len(scene.objects))])
    field = np.empty((6,) + scene.depths.shape[1:])
    field[:3] = (ego[:3] + extra[scene.instance_maps[frame_a]]).transpose(2, 0, 1)
    field[3:] = ego[3:, None, None]
    return field.astype(np.float32)


def velo_to_cam2():
    """``[4,4]`` velodyne-to-renderer-camera (KITTI camera 2) transform."""
    transform = np.eye(4)
    transform[:3, :3] = VELO_TO_CAM0_R
    transform[:3, 3] = VELO_TO_CAM0_T + CAM2_FROM_CAM0
    return transform


def lidar_directions(beams=LIDAR_BEAMS, azimuths=LIDAR_AZIMUTHS):
    """``[beams*azimuths,3]`` unit ray directions of a spinning lidar in the velodyne frame (x fwd, y left, z up)."""
    elevation = np.radians(np.linspace(*LIDAR_ELEVATIONS_DEG, beams))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)[None]
    dirs = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)), -1)
    return dirs.reshape(-1, 3)


def render_lidar(scene, frame, beams=LIDAR_BEAMS, azimuths=LIDAR_AZIMUTHS, max_range=LIDAR_RANGE):
    """Scan of a 64-beam spinning lidar mounted like KITTI's (1.73 m high, 0.27 m behind the camera).

    The scan is instantaneous (no motion distortion).  Returns ``[N,4]`` float32 points
    ``(x, y, z, reflectance)`` in the velodyne frame, hits within ``max_range`` only.
    """
    velo_to_world = scene.cam_to_world[frame] @ velo_to_cam2()
    dirs_velo = lidar_directions(beams, azimuths)
    boxes = scene.world.boxes_at(frame)
    t, index = cast_rays(boxes, velo_to_world[:3, 3], dirs_velo @ velo_to_world[:3, :3].T)
    keep = t <= max_range
    points = dirs_velo[keep] * t[keep, None]
    return np.column_stack([points, lidar_reflectance(boxes, index[keep])]).astype(np.float32)


def devkit_projection(K):
    """``[3,3]`` K in the KITTI devkit's 1-based pixel convention: principal point ``(cx + 1, cy + 1)``.

    The devkit takes pixel ``round(u) - 1``; with this shift it lands on the renderer's own pixel.
    """
    shifted = np.array(K, float)
    shifted[:2, 2] += 1
    return shifted


def _numbers(values):
    return ' '.join(f'{v:.9e}' for v in np.ravel(values))


def calib_cam_to_cam_text(K, height, width):
    """``calib_cam_to_cam.txt`` of KITTI for the renderer's camera (camera 2, 0.06 m left of camera 0).

    All four cameras share the rectified intrinsics; ``P_rect_0i = K_dev [I | (b_i, 0, 0)]``
    with ``K_dev`` the 1-based devkit version of ``K`` (see :func:`devkit_projection`).
    """
    k_dev = devkit_projection(K)
    lines = ['calib_time: 09-Jan-2012 13:57:47', 'corner_dist: 9.950000e-02']
    for cam, baseline in enumerate(CAM_BASELINES):
        projection = k_dev @ np.column_stack([np.eye(3), [baseline, 0.0, 0.0]])
        lines += [f'S_0{cam}: {_numbers([width, height])}', f'K_0{cam}: {_numbers(k_dev)}',
                  f'D_0{cam}: {_numbers(np.zeros(5))}', f'R_0{cam}: {_numbers(np.eye(3))}',
                  f'T_0{cam}: {_numbers([-baseline, 0.0, 0.0])}', f'S_rect_0{cam}: {_numbers([width, height])}',
                  f'R_rect_0{cam}: {_numbers(np.eye(3))}', f'P_rect_0{cam}: {_numbers(projection)}']
    return '\n'.join(lines) + '\n'


def calib_velo_to_cam_text():
    """``calib_velo_to_cam.txt`` of KITTI: ``X_cam0 = R X_velo + T``."""
    return '\n'.join(['calib_time: 15-Mar-2012 11:37:16', f'R: {_numbers(VELO_TO_CAM0_R)}',
                      f'T: {_numbers(VELO_TO_CAM0_T)}', f'delta_f: {_numbers(np.zeros(2))}',
                      f'delta_c: {_numbers(np.zeros(2))}']) + '\n'


def poses_json(scene):
    """The ground-truth poses of a scene as a JSON-ready dict."""
    return {'scene': scene.name, 'seed': scene.seed, 'frames': scene.frames,
            'K': scene.K.tolist(), 'cam_to_world': scene.cam_to_world.tolist(),
            'world_frame': 'x right, y down, z forward; road plane y = 0; metres',
            'objects': [{'id': j + 1, 'kind': obj.kind, 'size_lwh': obj.size.tolist(),
                         'world_pose': obj.world_poses.tolist(), 'mask_index': obj.mask_index.tolist()}
                        for j, obj in enumerate(scene.objects)]}


def _write_poses(scenes, root):
    (root / 'poses').mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        (root / 'poses' / f'{scene.name}.json').write_text(json.dumps(poses_json(scene), indent=1))


def split_scenes(names):
    """``(train, val)`` scene names: the last ``max(1, n // 5)`` are val; a single scene is in both."""
    if len(names) == 1:
        return list(names), list(names)
    n_val = max(1, len(names) // 5)
    return list(names[:-n_val]), list(names[-n_val:])


def _check_scenes(scenes, root):
    """Writers need at least one scene, all of one image size."""
    if not scenes:
        raise SyntheticError(f"{root}: no scenes to write")
    sizes = {s.images.shape[1:3] for s in scenes}
    if len(sizes) > 1:
        raise SyntheticError(f"{root}: scenes of different image sizes {sorted(sizes)} cannot share one calibration")


def write_kitti_vis(scenes, root):
    """Write scenes in the KITTI-VIS layout under ``root`` (see the module docstring); GT depth for val."""
    _check_scenes(scenes, root)
    root = Path(root)
    train, val = split_scenes([s.name for s in scenes])
    for scene in scenes:
        folders = {kind: root / kind / scene.name for kind in ('image', 'segmentation', 'flow_f', 'flow_b')}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        write_cam(folders['image'] / 'cam.txt', scene.K)
        for k in range(scene.frames):
            write_image(folders['image'] / f'{k:010d}.jpg', scene.images[k], jpeg_quality=JPEG_QUALITY)
            save_npy(folders['segmentation'] / f'{k:010d}.npy', scene.masks[k])
            if scene.name in val:
                save_npy(folders['image'] / f'{k:010d}.npy', scene.depths[k])
        for k in range(scene.frames - 1):
            write_flo(folders['flow_f'] / f'{k:010d}.flo', scene.flow_f[k])
            write_flo(folders['flow_b'] / f'{k:010d}.flo', scene.flow_b[k])
    (root / 'train.txt').write_text(''.join(f'{name}\n' for name in train))
    (root / 'val.txt').write_text(''.join(f'{name}\n' for name in val))
    _write_poses(scenes, root)


def raw_image_entry(index, frame):
    """Eigen-list entry of a frame: ``2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png``."""
    return f'{DATE}/{drive_name(index)}/image_02/data/{frame:010d}.png'


def raw_gt_depth_path(root, entry):
    """Path of the dense renderer depth (``.npy``) of a raw list entry below ``root``."""
    return Path(root) / 'gt_depth' / Path(entry).with_suffix('.npy')


def write_raw_kitti(scenes, root):
    """Write scenes in the raw KITTI layout under ``root`` (frames, lidar scans, calibration, list, dense GT)."""
    _check_scenes(scenes, root)
    root = Path(root)
    date_dir = root / DATE
    date_dir.mkdir(parents=True, exist_ok=True)
    height, width = scenes[0].images.shape[1:3]
    (date_dir / 'calib_cam_to_cam.txt').write_text(calib_cam_to_cam_text(scenes[0].K, height, width))
    (date_dir / 'calib_velo_to_cam.txt').write_text(calib_velo_to_cam_text())
    entries = []
    for scene in scenes:
        drive = date_dir / drive_name(scene.index)
        for sub in ('image_02/data', 'velodyne_points/data'):
            (drive / sub).mkdir(parents=True, exist_ok=True)
        for k in range(scene.frames):
            entry = raw_image_entry(scene.index, k)
            Image.fromarray(scene.images[k]).save(root / entry)
            render_lidar(scene, k).astype('<f4').tofile(drive / 'velodyne_points' / 'data' / f'{k:010d}.bin')
            gt_path = raw_gt_depth_path(root, entry)
            gt_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(gt_path, scene.depths[k])
            entries.append(entry)
    (root / 'test_files.txt').write_text(''.join(f'{e}\n' for e in entries))
    _write_poses(scenes, root)


def write_odometry(scenes, root):
    """Write scenes as KITTI odometry sequences under ``root`` (see ``data/_synthetic_odometry.py``)."""
    _check_scenes(scenes, root)
    write_kitti_odometry(scenes, root, devkit_projection, CAM_BASELINES,
                         np.column_stack([VELO_TO_CAM0_R, VELO_TO_CAM0_T]), CAM2_FROM_CAM0)


WRITERS = {'vis': write_kitti_vis, 'raw': write_raw_kitti, 'odometry': write_odometry}


def flow_to_colour(flow, max_magnitude=None):
    """Colour-code ``[H,W,2]`` flow (hue = direction, saturation = magnitude): uint8 ``[H,W,3]``.

    The colour of a flow vector is the colour wheel's colour of the opposite vector, and the
    magnitude scale defaults to the 99th percentile.
    """
    from visualization import direction_wheel
    magnitude = np.linalg.norm(flow, axis=2)
    scale = max_magnitude or max(float(np.percentile(magnitude, 99)), 1e-6)
    return (direction_wheel(-flow[..., 0], -flow[..., 1], scale) * 255).astype(np.uint8)


def depth_to_colour(depth):
    """Colour-code ``[H,W]`` depth by inverse depth (magma), sky black: uint8 ``[H,W,3]``."""
    from matplotlib import colormaps
    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0)
    scaled = inverse / max(float(inverse.max()), 1e-6)
    rgb = (colormaps['magma'](scaled)[..., :3] * 255).astype(np.uint8)
    rgb[depth <= 0] = 0
    return rgb


def masks_to_colour(image, masks):
    """Instance masks ``[1+N,H,W]`` over a dimmed ``[H,W,3]`` image, one colour per channel."""
    from matplotlib import colormaps
    out = image.astype(float) * 0.35
    colours = colormaps['tab10'](np.arange(max(len(masks) - 1, 1)) % 10)[:, :3] * 255
    for channel in range(1, len(masks)):
        on = masks[channel] > 0
        out[on] = 0.3 * image[on] + 0.7 * colours[channel - 1]
    return out.astype(np.uint8)


def contact_sheet(scene, rows=3):
    """uint8 ``[rows*H, 4*W, 3]`` sheet: image | depth | instance masks | forward flow (occluded dark)."""
    frames = np.unique(np.linspace(0, scene.frames - 2, rows).round().astype(int))
    lines = []
    for k in frames:
        flow = flow_to_colour(scene.flow_f[k])
        flow[scene.occlusion_f[k]] = flow[scene.occlusion_f[k]] // 4
        lines.append(np.concatenate([scene.images[k], depth_to_colour(scene.depths[k]),
                                     masks_to_colour(scene.images[k], scene.masks[k]), flow], 1))
    return np.concatenate(lines, 0)


def save_preview(scene, path):
    """Save :func:`contact_sheet` at ``path`` as a 256-colour (octree, dithered) PNG of about 100 KB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(contact_sheet(scene)).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    with atomic_open(path) as handle:
        image.save(handle, format='PNG', optimize=True)


def _prepare_target(path, overwrite):
    """Refuse to replace ``path`` unless it is empty/absent or (with ``overwrite``) our own output."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not (path / CONFIG_FILE).is_file():
        raise SyntheticError(f"{path} exists and was not written by data.synthetic (no {CONFIG_FILE}); "
                             f"refusing to replace it, choose another --out")
    if not overwrite:
        raise SyntheticError(f"{path} already holds synthetic data; pass --overwrite to replace it")


def _commit_layout(staging, target):
    """Move a finished staging folder to ``target`` (replacing our own previous output)."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def generate(out, scenes=4, frames=20, height=128, width=416, seed=0, layout='both', preview=None,
             overwrite=False, max_cars=4, val_moving_cars=0):
    """Render ``scenes`` scenes and write the chosen layouts under ``out``; returns the scenes' names.

    ``val_moving_cars``: every validation scene of the KITTI-VIS split has at least that many moving
    cars in view (:func:`render_with_moving_cars`).
    """
    check_settings(frames, height, width, scenes, max_cars, seed, val_moving_cars)
    if layout not in LAYOUTS:
        raise SyntheticError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SyntheticError(f"{out} exists and is not a folder")
    targets = {'vis': [out / 'vis'], 'raw': [out / 'raw'], 'both': [out / 'vis', out / 'raw'],
               'odometry': [out / 'odometry']}[layout]
    for target in targets:
        _prepare_target(target, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    val = split_scenes([scene_name(i) for i in range(scenes)])[1] if val_moving_cars else []
    rendered = [render_with_moving_cars(seed, i, height, width, frames, max_cars, val_moving_cars)
                if scene_name(i) in val else
                render_scene(seed, i, height, width, frames, max_cars=max_cars, with_flows=layout != 'odometry')
                for i in range(scenes)]
    config = {'generator': 'data.synthetic', 'seed': seed, 'scenes': scenes, 'frames': frames,
              'height': height, 'width': width, 'max_cars': max_cars, 'val_moving_cars': val_moving_cars}
    for target in targets:
        staging = Path(tempfile.mkdtemp(prefix=f'.{target.name}-', dir=out))
        try:
            WRITERS[target.name](rendered, staging)
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1))
            _commit_layout(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if preview is not None:
        save_preview(rendered[0], preview)
    return [s.name for s in rendered]


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m data.synthetic',
                                     description='Render synthetic driving sequences with exact ground truth.')
    parser.add_argument('--out', required=True, type=Path, help='output folder (DIR/vis and/or DIR/raw)')
    parser.add_argument('--scenes', type=int, default=4, help='number of scenes (default %(default)s)')
    parser.add_argument('--frames', type=int, default=20, help='frames per scene (default %(default)s)')
    parser.add_argument('--height', type=int, default=128, help='frame height in pixels (default %(default)s)')
    parser.add_argument('--width', type=int, default=416, help='frame width in pixels (default %(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed, >= 0 (default %(default)s; same seed, same bytes)')
    parser.add_argument('--layout', choices=LAYOUTS, default='both',
                        help='KITTI-VIS (DIR/vis), raw KITTI (DIR/raw), both, or KITTI odometry sequences '
                             '(DIR/odometry, no flows) (default %(default)s)')
    parser.add_argument('--max-cars', type=int, default=4,
                        help='at most this many cars per scene (default %(default)s)')
    parser.add_argument('--val-moving-cars', type=int, default=0,
                        help='every validation scene has at least this many moving cars in view (default %(default)s)')
    parser.add_argument('--preview', nargs='?', const='', default=None, metavar='PNG',
                        help='save a contact sheet of the first scene (default DIR/preview.png)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace DIR/vis, DIR/raw if they hold earlier output of this generator')
    return parser


def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    preview = None if args.preview is None else (Path(args.preview) if args.preview else args.out / 'preview.png')
    try:
        names = generate(args.out, args.scenes, args.frames, args.height, args.width, args.seed, args.layout,
                         preview, args.overwrite, args.max_cars, args.val_moving_cars)
    except SyntheticError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {len(names)} scenes x {args.frames} frames ({args.height}x{args.width}) to {args.out}'
          + (f'; preview {preview}' if preview else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
