"""Rendered sequences of the synthetic world: frames, depth, instance masks and exact flows of a scene."""
from dataclasses import dataclass

import numpy as np

from data.synthetic_render import NOTHING, camera_rays, cast_rays, cull_behind, geometric_flow, shade_hits
from data.synthetic_world import StreetWorld, sample_camera_path, sample_world


DATE = '2011_09_26'
ILLUMINATION_JITTER = 0.02
SENSOR_NOISE = 1.0
MIN_MASK_PIXELS = 20
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
