"""A tiny KITTI-VIS folder of moving textured rectangles, with exact flow and masks (tests, benchmarks).

Each scene is a textured background translating by a constant integer step per frame, with
textured rectangles moving at constant integer velocities in front of it, drawn back to front.
Every scene holds, by construction:

* object 0 leaves the frame through its right border (it is gone in the last frame);
* object 1 passes behind object 2, which hides it completely for at least one frame;
* objects 3.. are placed and moved at random.

Because all motions are integer translations, the forward flow (frame k -> k+1, the motion of the
surface visible at each pixel of frame k) and the backward flow (k+1 -> k) are exact, and so are
the visible (occlusion-aware) instance masks.  Segmentation channels are stored in a random order
so that association cannot rely on it.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.io import save_npy, write_cam, write_flo, write_image, write_segmentation

MIN_OBJECTS = 3
BACKGROUND_DEPTH = 30.0


@dataclass
class ToyObject:
    """A textured rectangle: top-left ``(y, x)`` at frame 0, size, integer velocity per frame, layer."""
    y: int
    x: int
    height: int
    width: int
    vy: int
    vx: int
    layer: int
    texture: np.ndarray = field(repr=False)


@dataclass
class ToyTruth:
    """Ground truth of a toy KITTI-VIS folder.

    Attributes:
        root: the folder.
        scenes: scene names (``train.txt`` lists all but the last, ``val.txt`` the last one;
            with a single scene both list it).
        intrinsics: ``[3,3]`` float32, the same for every scene.
        channel_objects: ``{scene: [frame k -> int array [N_k]]}``: object id of segmentation
            channel ``c`` (1..N_k) is ``channel_objects[scene][k][c - 1]``.
        visible_area: ``{scene: int array [F, num_objects]}`` visible pixels of each object.
        full_area: ``{scene: int array [num_objects]}`` pixels of each object when unoccluded.
    """
    root: Path
    scenes: list
    intrinsics: np.ndarray
    channel_objects: dict
    visible_area: dict
    full_area: dict

    def fully_visible(self, scene, frame):
        """Object ids entirely visible in ``frame`` (not occluded, not cut by the border): ``[M]``."""
        return np.flatnonzero(self.visible_area[scene][frame] == self.full_area[scene])


def _smooth_texture(rng, height, width, cell=4, base=None):
    """Blocky random RGB texture ``[height, width, 3]`` uint8 (blocks of ``cell`` pixels)."""
    coarse = rng.integers(0, 256, size=(height // cell + 1, width // cell + 1, 3))
    if base is not None:
        coarse = (coarse // 2 + np.asarray(base) // 2)
    texture = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)
    return texture[:height, :width].astype(np.uint8)


def _make_objects(rng, num_objects, num_frames, height, width):
    """The scripted objects 0..2 plus random ones, as :class:`ToyObject` (layer: larger = nearer)."""
    steps = max(num_frames - 1, 1)
    h0, w0 = max(height // 4, 4), max(width // 5, 4)
    leaver = (height // 2 - h0 // 2, width - w0 - 1, h0, w0, 0, -(-(w0 + 1) // steps), 1)
    h1, w1 = max(height // 6, 3), max(width // 10, 3)
    h2, w2 = max(height // 3, h1 + 4), max(width // 4, w1 + 4)
    meet_x = width // 3
    speed = max(-(-(w2 + w1) // steps), 1)
    half = steps // 2
    hidden = (height // 4, meet_x + w2 // 2 - w1 // 2 - speed * half, h1, w1, 0, speed, 0)
    occluder = (height // 4 + h1 // 2 - h2 // 2, meet_x + speed * half, h2, w2, 0, -speed, 2)
    specs = [leaver, hidden, occluder]
    for layer in range(3, num_objects):
        h, w = int(rng.integers(height // 8 + 2, height // 4 + 3)), int(rng.integers(width // 12 + 2, width // 6 + 3))
        specs.append((int(rng.integers(0, height - h)), int(rng.integers(0, width - w)), h, w,
                      int(rng.integers(-2, 3)), int(rng.integers(-3, 4)), layer))
    objects = []
    for y, x, h, w, vy, vx, layer in specs:
        colour = rng.integers(0, 256, size=3)
        objects.append(ToyObject(y, x, h, w, vy, vx, layer, _smooth_texture(rng, h, w, cell=2, base=colour)))
    return objects


def _render(objects, background, camera_step, frame, height, width):
    """Render one frame: ``(image [H,W,3] uint8, owner [H,W] int64)``; owner 0 = background, i+1 = object i."""
    oy, ox = frame * camera_step[0], frame * camera_step[1]
    image = background[oy:oy + height, ox:ox + width].copy()
    owner = np.zeros((height, width), np.int64)
    for index in np.argsort([obj.layer for obj in objects], kind='stable'):
        obj = objects[index]
        top, left = obj.y + frame * obj.vy, obj.x + frame * obj.vx
        y0, y1 = max(top, 0), min(top + obj.height, height)
        x0, x1 = max(left, 0), min(left + obj.width, width)
        if y0 >= y1 or x0 >= x1:
            continue
        image[y0:y1, x0:x1] = obj.texture[y0 - top:y1 - top, x0 - left:x1 - left]
        owner[y0:y1, x0:x1] = index + 1
    return image, owner


def _flow(owner, velocities, sign):
    """Flow of every pixel from the velocity of the surface it shows: ``[H,W,2]`` float32 ``(du, dv)``."""
    return (sign * velocities[owner]).astype(np.float32)


def _write_scene(root, scene, rng, num_frames, height, width, num_objects, image_ext, with_depth):
    camera_step = (int(rng.integers(0, 2)), int(rng.integers(1, 3)))
    background = _smooth_texture(rng, height + num_frames * camera_step[0] + 1, width + num_frames * camera_step[1] + 1)
    objects = _make_objects(rng, num_objects, num_frames, height, width)
    velocities = np.array([(-camera_step[1], -camera_step[0])] + [(o.vx, o.vy) for o in objects], np.float64)
    depths = np.array([BACKGROUND_DEPTH] + [20.0 - 2.0 * o.layer for o in objects], np.float32)
    channel_objects, visible = [], np.zeros((num_frames, len(objects)), np.int64)
    owners = []
    for k in range(num_frames):
        stem = f"{k:010d}"
        image, owner = _render(objects, background, camera_step, k, height, width)
        owners.append(owner)
        write_image(root / 'image' / scene / f"{stem}.{image_ext}", image)
        present = np.flatnonzero(np.bincount(owner.ravel(), minlength=len(objects) + 1)[1:])
        visible[k] = np.bincount(owner.ravel(), minlength=len(objects) + 1)[1:]
        order = rng.permutation(present)
        channel_objects.append(order)
        write_segmentation(root / 'segmentation' / scene / f"{stem}.npy", owner[None] == (order[:, None, None] + 1))
        if with_depth:
            save_npy(root / 'image' / scene / f"{stem}.npy", depths[owner])
    for k in range(num_frames - 1):
        stem = f"{k:010d}"
        write_flo(root / 'flow_f' / scene / f"{stem}.flo", _flow(owners[k], velocities, 1))
        write_flo(root / 'flow_b' / scene / f"{stem}.flo", _flow(owners[k + 1], velocities, -1))
    return channel_objects, visible, np.array([o.height * o.width for o in objects], np.int64)


def toy_intrinsics(height, width):
    """``[3,3]`` float32 intrinsics of the toy frames (focal = width / 2, centred principal point)."""
    return np.array([[width / 2, 0, (width - 1) / 2], [0, width / 2, (height - 1) / 2], [0, 0, 1]], np.float32)


def write_toy_kitti_vis(root, num_scenes=2, num_frames=5, height=64, width=96, num_objects=4, seed=0,
                        image_ext='jpg', with_depth=False):
    """Write a toy KITTI-VIS folder (docs/ARCHITECTURE.md, "Data layout") and return its ground truth.

    Args:
        root: output folder (created).
        num_scenes, num_frames: scenes ``scene_00..`` of ``num_frames`` frames each.
        height, width: frame size.
        num_objects: rectangles per scene (at least 3: the scripted ones described above).
        seed: random seed of textures, motions and channel orders.
        image_ext: 'jpg' or 'png'.
        with_depth: also write ground-truth depth ``image/SCENE/XXXXXXXXXX.npy`` (``[H,W]`` float32).
    Returns:
        :class:`ToyTruth`.
    """
    if num_objects < MIN_OBJECTS:
        raise ValueError(f"num_objects must be at least {MIN_OBJECTS}, got {num_objects}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    scenes = [f"scene_{i:02d}" for i in range(num_scenes)]
    intrinsics = toy_intrinsics(height, width)
    truth = ToyTruth(root, scenes, intrinsics, {}, {}, {})
    for scene in scenes:
        write_cam(root / 'image' / scene / 'cam.txt', intrinsics)
        channels, visible, full = _write_scene(root, scene, rng, num_frames, height, width, num_objects,
                                               image_ext, with_depth)
        truth.channel_objects[scene], truth.visible_area[scene], truth.full_area[scene] = channels, visible, full
    train = scenes[:-1] if num_scenes > 1 else scenes
    (root / 'train.txt').write_text(''.join(f"{s}\n" for s in train))
    (root / 'val.txt').write_text(f"{scenes[-1]}\n")
    return truth
