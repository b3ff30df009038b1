"""A synthetic driving world with exact ground truth, in the KITTI-VIS and raw-KITTI layouts.

Command line::

    python -m data.synthetic --out DIR [--scenes 4 --frames 20 --height 128 --width 416 --seed 0
                                        --layout vis|raw|both|odometry --preview [PNG] --max-cars 4 --overwrite
                                        --val-moving-cars N]

writes ``DIR/vis`` (KITTI-VIS: training and ``--with-gt`` validation) and/or ``DIR/raw`` (raw
KITTI: Eigen-style evaluation); with ``both`` they hold the same scenes.  ``odometry`` writes
``DIR/odometry``: the scenes as KITTI odometry sequences for ``test_pose.py`` (images and poses, no
flows are rendered; see ``data/synthetic_odometry.py``).  ``--preview`` saves a
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
from pathlib import Path

from data.synthetic_preview import contact_sheet, depth_to_colour, flow_to_colour, save_preview
from data.synthetic_scene import (DATE, ObjectTrack, SyntheticError, SyntheticScene, check_settings, drive_name,
                                  kitti_like_intrinsics, render_scene, render_with_moving_cars, scene_name)
from data.synthetic_truth import (CAM2_FROM_CAM0, devkit_projection, motion_field, object_translation, pose_to_vec,
                                  relative_pose, render_lidar)
from data.synthetic_writers import (CONFIG_FILE, WRITERS, raw_gt_depth_path, split_scenes, write_kitti_vis,
                                    write_odometry, write_raw_kitti)
from fileio import OutputError, check_writable_folder

__all__ = ['CAM2_FROM_CAM0', 'CONFIG_FILE', 'DATE', 'LAYOUTS', 'ObjectTrack', 'SyntheticError', 'SyntheticScene',
           'contact_sheet', 'depth_to_colour', 'devkit_projection', 'drive_name', 'flow_to_colour', 'generate',
           'kitti_like_intrinsics', 'main', 'motion_field', 'object_translation', 'pose_to_vec', 'raw_gt_depth_path',
           'relative_pose', 'render_lidar', 'render_scene', 'render_with_moving_cars', 'render_world', 'save_preview',
           'scene_name', 'write_kitti_vis', 'write_odometry', 'write_raw_kitti']


LAYOUTS = ('vis', 'raw', 'both', 'odometry')


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


def render_world(config, with_flows=True):
    """The scenes of a world described as in ``synthetic_config.json`` (seed, scenes, frames, height, width,
    max_cars, val_moving_cars), rendered in memory one by one as :func:`generate` renders them."""
    names = [scene_name(i) for i in range(config['scenes'])]
    val = split_scenes(names)[1] if config['val_moving_cars'] else []
    for index, name in enumerate(names):
        if name in val:
            yield render_with_moving_cars(config['seed'], index, config['height'], config['width'], config['frames'],
                                          config['max_cars'], config['val_moving_cars'])
        else:
            yield render_scene(config['seed'], index, config['height'], config['width'], config['frames'],
                               max_cars=config['max_cars'], with_flows=with_flows)


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
    if preview is not None and Path(preview).is_dir():
        raise SyntheticError(f"--preview {preview}: is a folder; give the PNG file to write")
    try:
        check_writable_folder(out, '--out')
        if preview is not None:
            check_writable_folder(Path(preview).parent, '--preview')
    except OutputError as error:
        raise SyntheticError(str(error)) from None
    targets = {'vis': [out / 'vis'], 'raw': [out / 'raw'], 'both': [out / 'vis', out / 'raw'],
               'odometry': [out / 'odometry']}[layout]
    for target in targets:
        _prepare_target(target, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    config = {'generator': 'data.synthetic', 'seed': seed, 'scenes': scenes, 'frames': frames,
              'height': height, 'width': width, 'max_cars': max_cars, 'val_moving_cars': val_moving_cars}
    rendered = list(render_world(config, with_flows=layout != 'odometry'))
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
