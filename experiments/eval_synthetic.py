"""Depth by region, ego-motion and object-motion accuracy on the validation scenes of the synthetic world.

    python -m experiments.eval_synthetic --data VIS_ROOT --pretrained-dispnet CKPT \
        [--pretrained-ego-pose CKPT --pretrained-obj-pose CKPT] [--rotation-mode euler|quat] \
        [--mni 20 --device auto] --output-dir OUT

``VIS_ROOT`` is a KITTI-VIS folder written by ``python -m data.synthetic`` (``--layout vis``): the scenes of
``val.txt`` with their GT depth ``image/SCENE/*.npy`` and ``poses/SCENE.json`` (camera poses; per car its
``kind`` and the channel ``mask_index`` of its mask in each frame's segmentation file).  Writes
``OUT/metrics.json``::

    {"depth": {"all"|"background"|"moving"|"parked": {"abs_rel", "sq_rel", "rmse", "rmse_log",
                                                      "a1", "a2", "a3", "images", "pixels"}},
     "ego": {...} or null, "objects": {...} or null}

and ``OUT/car_kinds.json`` (depth and object motion by car kind, the background split by distance to the
cars, image half and true depth: :func:`summarise_kinds`), and prints both as tables.  Protocols:

* **Depth**: per image, valid pixels are ``0 < gt < 80`` (no crop); the prediction is scaled by
  ``median(gt) / median(pred)`` over *all* valid pixels and clamped to ``[1e-3, 80]``; each region
  (moving cars: cars whose ``kind`` is not ``parked``; background: pixels of no car mask) is averaged
  over the images where it has at least 50 valid pixels; ``pixels`` counts them.
* **Ego-motion** (:mod:`experiments.motion_metrics`): EgoPoseNet on every consecutive pair (as training
  feeds it: background-only images), snippet ATE with per-snippet least-squares scale (the SfMLearner
  protocol; snippets of ``--snippet-length`` frames), relative translation error with the frame's depth
  median scale, and rotation error in degrees.
* **Object motion**: first projection + ObjPoseNet through ``projection.py`` (the code path of
  training, via ``demo.run_networks``) on every consecutive pair, against the GT translation of each
  car visible in both frames as the motion field adds it to the ego motion (its displacement in the axes of
  the source camera, frame t+1), scaled by the frame's depth median scale.  A car that
  the association did not match (or beyond ``--mni``) gets the zero motion the motion field gives it; one
  matched to another car of the next frame keeps ObjPoseNet's motion and is counted as ``wrong_partner``.
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as python -m experiments.eval_synthetic")

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

import demo
from checkpoint_io import CheckpointError
from datasets.io import DatasetError, read_segmentation
from datasets.scenes import read_scene_list
from datasets.validation_folders import read_depth
from devices import select_device
from experiments import motion_metrics
from experiments.formatting import number
from fileio import atomic_open
from kitti_eval.depth_metrics import TABLE_METRICS, DepthErrors, NoValidPixelsError, compute_errors, \
    compute_errors_and_scale, evaluation_mask
from models import ConfigError, depth_from_disparity, load_trained_networks

REGIONS = ('all', 'background', 'moving', 'parked')
MIN_REGION_PIXELS = 50
# the background split of car_kinds.json: by distance to the nearest car pixel (at most 2 px, 2-8 px, beyond),
# by image half (road, upper) and by true depth (below 10 m, 10-30 m, beyond)
CAR_DISTANCE_BANDS = (('near_cars', 0, 2), ('around_cars', 2, 8), ('away_from_cars', 8, np.inf))
DEPTH_BANDS = (('depth_0-10m', 0, 10), ('depth_10-30m', 10, 30), ('depth_30m+', 30, np.inf))
BACKGROUND_SPLIT = tuple(name for name, _, _ in CAR_DISTANCE_BANDS) + ('road', 'upper') + \
    tuple(name for name, _, _ in DEPTH_BANDS)
MAX_DEPTH = 80.0
MIN_DEPTH = 1e-3


class EvalError(ValueError):
    """Unusable input (one-line message naming the file or flag)."""


def read_scene_truth(root, name):
    """Ground truth of scene ``name`` from ``ROOT/poses/NAME.json``.

    Returns:
        dict with ``cam_to_world`` ``[F,4,4]`` and ``objects``: list of dicts with ``kind`` (str),
        ``position`` ``[F,3]`` world position of the car, ``mask_index`` ``[F]`` int (-1 absent).
    """
    path = Path(root) / 'poses' / f'{name}.json'
    if not path.is_file():
        raise EvalError(f"{path}: not found (the synthetic world's poses/SCENE.json; is --data a data.synthetic "
                        f"KITTI-VIS folder?)")
    try:
        raw = json.loads(path.read_text())
        objects = [{'kind': str(obj['kind']), 'position': np.asarray(obj['world_pose'], float)[:, :3, 3],
                    'mask_index': np.asarray(obj['mask_index'], int)} for obj in raw['objects']]
        return {'cam_to_world': np.asarray(raw['cam_to_world'], float), 'objects': objects}
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise EvalError(f"{path}: not a poses file of data.synthetic ({type(error).__name__}: {error})") from None


def kind_masks(segmentation, objects, frame):
    """The car pixels of one frame by the cars' ``kind``: ``{kind: [H,W] bool}`` for the kinds in the scene.

    Args:
        segmentation: ``[1+N,H,W]`` stored instance masks of the frame (channel 0 empty).
        objects: the scene's cars (:func:`read_scene_truth`); ``mask_index[frame]`` is the car's channel.
        frame: frame index.
    A kind whose cars are not in view has an empty mask.
    """
    masks = {obj['kind']: np.zeros(segmentation.shape[1:], bool) for obj in objects}
    for obj in objects:
        channel = obj['mask_index'][frame]
        if channel >= 1:
            masks[obj['kind']] |= segmentation[channel] > 0
    return masks


def car_pixels(segmentation):
    """``[H,W]`` bool: the pixels of any car mask of a ``[1+N,H,W]`` segmentation (none when N is 0)."""
    return (segmentation[1:] > 0).any(axis=0)


def region_masks(segmentation, objects, frame, with_kinds=False):
    """Region masks of one frame: ``{'all', 'background', 'moving', 'parked'}`` -> ``[H,W]`` bool.

    Args: as :func:`kind_masks`; ``with_kinds`` adds its masks (the kind ``parked`` is the region ``parked``).
    *moving* is the union of the kinds other than ``parked``; *background* the pixels of no mask channel.
    """
    shape = segmentation.shape[1:]
    kinds = kind_masks(segmentation, objects, frame)
    moving = np.zeros(shape, bool)
    for kind, mask in kinds.items():
        if kind != 'parked':
            moving |= mask
    cars = car_pixels(segmentation)
    regions = {'all': np.ones(shape, bool), 'background': ~cars, 'moving': moving,
               'parked': kinds.get('parked', np.zeros(shape, bool))}
    return {**kinds, **regions} if with_kinds else regions


def road_and_upper(background, K):
    """The background ``[H,W]`` split at the principal point's row (the horizon of a level camera):
    ``{'road': below it, 'upper': the rest}`` (in the synthetic world mostly the street, and the buildings)."""
    below = np.arange(background.shape[0])[:, None] > K[1, 2]
    return {'road': background & below, 'upper': background & ~below}


def car_distance(segmentation):
    """``[H,W]`` Euclidean distance in pixels from each pixel to the nearest car pixel of a ``[1+N,H,W]``
    segmentation (0 on the cars, inf in a frame without any)."""
    cars = car_pixels(segmentation)
    if not cars.any():
        return np.full(cars.shape, np.inf)
    return distance_transform_edt(~cars)


def background_split(segmentation, gt, K):
    """The background (no car mask) of one frame split three ways, ``{name: [H,W] bool}`` for the names of
    :data:`BACKGROUND_SPLIT`: by distance to the nearest car pixel (:data:`CAR_DISTANCE_BANDS`, ``(low, high]``
    pixels), by image half (:func:`road_and_upper`) and by true depth ``gt`` (:data:`DEPTH_BANDS`, ``[low, high)``
    metres): it tells whether a model's background error sits at the cars' borders or all over.
    """
    distance = car_distance(segmentation)
    background = distance > 0
    split = {name: background & (distance > low) & (distance <= high) for name, low, high in CAR_DISTANCE_BANDS}
    split.update(road_and_upper(background, K))
    split.update({name: background & (gt >= low) & (gt < high) for name, low, high in DEPTH_BANDS})
    return split


class RegionErrors(NamedTuple):
    """Depth errors of one region of one image.

    ``log_ratio`` is the mean of ``log(scaled prediction / gt)`` over the region's valid pixels: the
    signed error (> 0: the region is drawn too far, as a rigid model paints a car driving with the camera).
    """
    errors: DepthErrors
    pixels: int
    log_ratio: float


def region_errors(gt, pred, regions, min_pixels=MIN_REGION_PIXELS):
    """Depth errors of one image per region, with the median scale of all valid pixels.

    Args:
        gt, pred: ``[H,W]`` GT (0 = no depth) and predicted depth.
        regions: ``{name: [H,W] bool}``.
    Returns:
        ``{name: RegionErrors}`` for the regions with at least ``min_pixels`` valid pixels (an image
        without valid pixels gives ``{}``).
    """
    try:
        _, scale = compute_errors_and_scale(gt, pred, MIN_DEPTH, MAX_DEPTH, crop=None)
    except NoValidPixelsError:
        return {}
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    valid = evaluation_mask(gt, MIN_DEPTH, MAX_DEPTH, crop=None).numpy()
    log_ratio = np.log(np.clip(pred * scale, MIN_DEPTH, MAX_DEPTH) / np.where(valid, gt, 1.0))
    results = {}
    for name, mask in regions.items():
        pixels = int((valid & mask).sum())
        if pixels >= min_pixels:
            errors = compute_errors(gt, pred, MIN_DEPTH, MAX_DEPTH, crop=None, mask=mask, scale=scale)
            results[name] = RegionErrors(errors, pixels, float(log_ratio[valid & mask].mean()))
    return results


def average_region_errors(per_image, names=REGIONS, with_log_ratio=False):
    """``{region: {metric..., 'images', 'pixels'}}`` from a list of :func:`region_errors` results.

    ``names``: the regions to average; ``with_log_ratio`` adds the mean ``log_ratio`` to each row.
    A region seen in no image has ``null`` metrics and zero counts.
    """
    summary = {}
    for name in names:
        entries = [image[name] for image in per_image if name in image]
        row = {metric: (float(np.mean([getattr(e.errors, metric) for e in entries])) if entries else None)
               for metric in TABLE_METRICS}
        if with_log_ratio:
            row['log_ratio'] = float(np.mean([e.log_ratio for e in entries])) if entries else None
        row.update(images=len(entries), pixels=int(sum(e.pixels for e in entries)))
        summary[name] = row
    return summary


def summarise_kinds(per_image, object_records):
    """The ``car_kinds.json`` dict: depth errors (with ``log_ratio``) of the background and of each car
    ``kind`` seen, the object-motion errors of each kind (``motion_metrics.summarise_object_group``;
    None without motion records), and the depth errors of the background's split (:func:`background_split`)."""
    # the kinds seen in some image (region_masks(..., with_kinds=True): 'parked' is a region and a kind)
    kinds = sorted({name for image in per_image for name in image} - {'all', 'background', 'moving'}
                   - set(BACKGROUND_SPLIT)) + ['background']
    objects = None
    if object_records is not None:
        objects = {kind: motion_metrics.summarise_object_group([r for r in object_records if r['kind'] == kind],
                                                                moving=kind != 'parked')
                   for kind in sorted({r['kind'] for r in object_records})}
    return {'depth': average_region_errors(per_image, kinds, with_log_ratio=True), 'objects': objects,
            'background_split': average_region_errors(per_image, BACKGROUND_SPLIT, with_log_ratio=True)}


def median_scale(gt, pred):
    """``median(gt) / median(pred)`` over the valid pixels of one image (None without any)."""
    try:
        return compute_errors_and_scale(gt, pred, MIN_DEPTH, MAX_DEPTH, crop=None)[1]
    except NoValidPixelsError:
        return None


class ScaledDisparity(torch.nn.Module):
    """DispResNet whose output is divided by ``depth_scale``, so ``1 / output`` is the depth a step with
    ``LossOptions.depth_scale`` works in (the unit of the pose networks' translations)."""

    def __init__(self, disp_net, depth_scale):
        super().__init__()
        self.disp_net, self.depth_scale = disp_net, depth_scale

    def forward(self, img):
        return self.disp_net(img) / self.depth_scale


@torch.no_grad()
def predict_scene_depths(disp_net, scene, device):
    """``[F,H,W]`` depth of every frame of a ``datasets.scenes.Scene``."""
    frame_hw = demo.read_frame(scene.frames[0]).shape[:2]
    disparities = (disp_net(demo.to_network_input(demo.read_frame(path, frame_hw), device)) for path in scene.frames)
    return np.stack([depth_from_disparity(disparity)[0, 0].cpu().numpy() for disparity in disparities])


def evaluate_scene(root, name, nets, mni, device):
    """Per-image region errors and the motion records of one validation scene.

    Returns:
        ``(per_image region errors, ego records or None, object records or None)`` (see
        :mod:`experiments.motion_metrics` for the records).
    """
    scene = demo.find_scene(root, name)
    truth = read_scene_truth(root, name)
    frame_hw = demo.read_frame(scene.frames[0]).shape[:2]
    if len(truth['cam_to_world']) != len(scene.frames):
        raise EvalError(f"{Path(root) / 'poses' / (name + '.json')}: {len(truth['cam_to_world'])} camera poses for "
                        f"{len(scene.frames)} frames")
    if scene.segmentations is None:
        raise EvalError(f"{Path(root) / 'segmentation' / name}: not found (region masks need the segmentation)")
    with_motion = nets.ego is not None
    inference = demo.run_networks(scene, nets, mni, device) if with_motion else None
    depths = inference.depths if with_motion else predict_scene_depths(nets.disp, scene, device)
    per_image, scales = [], []
    for k, (frame, seg_path) in enumerate(zip(scene.frames, scene.segmentations)):
        gt = read_depth(frame.with_suffix('.npy'), frame_hw)
        segmentation = read_segmentation(seg_path, frame_hw)
        regions = region_masks(segmentation, truth['objects'], k, with_kinds=True)
        regions.update(background_split(segmentation, gt, scene.intrinsics))
        per_image.append(region_errors(gt, depths[k], regions))
        scales.append(median_scale(gt, depths[k]))
    if not with_motion:
        return per_image, None, None
    ego = motion_metrics.ego_records(inference.poses, truth['cam_to_world'], scales, nets.rotation_mode)
    objects = motion_metrics.object_records(inference.matches, inference.obj_motion, truth, scales)
    return per_image, ego, objects


def evaluate(root, nets, mni, device, snippet_length=3):
    """The metrics.json dict of the validation scenes of ``root``, and the car_kinds.json dict
    (:func:`summarise_kinds`)."""
    try:
        _, names = read_scene_list(root, train=False)
    except DatasetError as error:
        raise EvalError(str(error)) from None
    per_image, ego, objects = [], [], []
    for name in names:
        images, ego_scene, objects_scene = evaluate_scene(root, name, nets, mni, device)
        per_image += images
        if ego_scene is not None:
            ego.append(ego_scene)
            objects += objects_scene
    with_motion = nets.ego is not None
    metrics = {'depth': average_region_errors(per_image),
               'ego': motion_metrics.summarise_ego(ego, snippet_length) if with_motion else None,
               'objects': motion_metrics.summarise_objects(objects) if with_motion else None}
    return metrics, summarise_kinds(per_image, objects if with_motion else None)


def format_report(metrics):
    """A plain-text table of a metrics.json dict."""
    lines = [f"{'region':>10} " + ' '.join(f'{m:>9}' for m in TABLE_METRICS) + f" {'images':>7} {'pixels':>9}"]
    for name in REGIONS:
        row = metrics['depth'][name]
        lines.append(f'{name:>10} ' + ' '.join(f'{number(row[m], 4):>9}' for m in TABLE_METRICS)
                     + f" {row['images']:>7} {row['pixels']:>9}")
    if metrics['ego'] is not None:
        ego = metrics['ego']
        lines.append(f"ego: ATE {number(ego['ate'], 4)} m (snippets of {ego['snippet_length']}, n={ego['snippets']}), "
                     f"relative translation error {number(ego['rel_trans'], 4)}, rotation error "
                     f"{number(ego['rot_deg'], 4)} deg ({ego['pairs']} pairs)")
    if metrics['objects'] is not None:
        obj = metrics['objects']
        lines.append(f"objects: moving EPE {number(obj['moving']['epe'], 4)} m, "
                     f"relative {number(obj['moving']['rel'], 4)}, "
                     f"within 30 deg {number(obj['moving']['within_30deg'], 4)} ({obj['moving']['cars']} car pairs, "
                     f"{obj['moving']['matched']} matched, {obj['moving']['wrong_partner']} to another car) | "
                     f"parked EPE {number(obj['parked']['epe'], 4)} m ({obj['parked']['cars']} car pairs, "
                     f"{obj['parked']['matched']} matched, {obj['parked']['wrong_partner']} to another car)")
    return '\n'.join(lines)


def format_kinds(kinds):
    """A plain-text table of a car_kinds.json dict: depth and object motion by car kind, then the background's
    split."""
    lines = [f"{'kind':>10} {'abs_rel':>9} {'log_ratio':>9} {'images':>7} {'pixels':>9} {'EPE (m)':>9} "
             f"{'in 30deg':>9} {'cars':>5}"]
    for kind in dict.fromkeys([*kinds['depth'], *(kinds['objects'] or {})]):
        row = kinds['depth'].get(kind, {'abs_rel': None, 'log_ratio': None, 'images': 0, 'pixels': 0})
        obj = (kinds['objects'] or {}).get(kind, {})
        lines.append(f"{kind:>10} {number(row['abs_rel'], 4):>9} {number(row['log_ratio'], 4):>9} {row['images']:>7} "
                     f"{row['pixels']:>9} {number(obj.get('epe'), 4):>9} {number(obj.get('within_30deg'), 4):>9} "
                     f"{obj.get('cars', 0):>5}")
    split = kinds.get('background_split') or {}
    if split:
        lines.append(f"{'background':>14} {'abs_rel':>9} {'log_ratio':>9} {'images':>7} {'pixels':>9}")
    for name, row in split.items():
        lines.append(f"{name:>14} {number(row['abs_rel'], 4):>9} {number(row['log_ratio'], 4):>9} {row['images']:>7} "
                     f"{row['pixels']:>9}")
    return '\n'.join(lines)


def build_networks(args, device):
    """Load the networks of the command line: a ``demo.Networks`` (``ego``/``obj`` None for depth only).

    The DispResNet depth, rotation mode and depth scale are the flags given, else the run's config
    saved in the checkpoints, else 18, euler and 1.
    """
    if (args.pretrained_ego_pose is None) != (args.pretrained_obj_pose is None):
        raise EvalError("--pretrained-ego-pose and --pretrained-obj-pose go together (motion metrics need both)")
    if args.depth_scale is not None and args.depth_scale <= 0:
        raise EvalError(f"--depth-scale must be > 0, got {args.depth_scale}")
    paths = {'disp': args.pretrained_dispnet}
    if args.pretrained_ego_pose is not None:
        paths.update(ego=args.pretrained_ego_pose, obj=args.pretrained_obj_pose)
    explicit = {'resnet_layers': args.resnet_layers, 'rotation_mode': args.rotation_mode,
                'depth_scale': args.depth_scale, 'antisymmetric_ego_pose': args.antisymmetric_ego_pose}
    nets, config = load_trained_networks(paths, explicit, device, log=print_warning)
    disp = nets['disp'] if config.depth_scale == 1 else ScaledDisparity(nets['disp'], config.depth_scale)
    return demo.Networks(disp, nets.get('ego'), nets.get('obj'), config.rotation_mode,
                         config.antisymmetric_ego_pose)


def print_warning(line):
    """Print the warnings of :func:`models.load_trained_networks` (to stderr), not its loading notes."""
    if line.startswith('warning'):
        print(line, file=sys.stderr)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True, type=Path, help='synthetic KITTI-VIS folder (val.txt, poses/)')
    parser.add_argument('--pretrained-dispnet', required=True, help='DispResNet checkpoint')
    parser.add_argument('--pretrained-ego-pose', default=None, help='EgoPoseNet checkpoint (ego-motion metrics)')
    parser.add_argument('--pretrained-obj-pose', default=None, help='ObjPoseNet checkpoint (object-motion metrics)')
    parser.add_argument('--rotation-mode', choices=['euler', 'quat'], default=None,
                        help='as in training (default: saved in the checkpoints, else euler)')
    parser.add_argument('--resnet-layers', type=int, choices=[18, 50], default=None,
                        help='DispResNet depth (default: saved in the checkpoint, else 18)')
    parser.add_argument('--mni', type=int, default=20, help='instances matched per pair (as -mni in training)')
    parser.add_argument('--depth-scale', type=float, default=None,
                        help='the LossOptions.depth_scale the networks were trained with (depth = scale / disparity; '
                             'default: saved in the checkpoints, else 1)')
    parser.add_argument('--antisymmetric-ego-pose', action='store_const', const=True, default=None,
                        help='the networks were trained with --antisymmetric-ego-pose (pose = (f(a,b) - f(b,a)) / 2; '
                             'default: saved in the checkpoints, else off)')
    parser.add_argument('--snippet-length', type=int, default=3, help='frames per ATE snippet (the sequence length)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--output-dir', required=True, type=Path, help='metrics.json and car_kinds.json go here')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.mni < 0 or args.snippet_length < 2:
        print("error: --mni must be >= 0 and --snippet-length >= 2", file=sys.stderr)
        return 2
    try:
        device = select_device(args.device)
        nets = build_networks(args, device)
        metrics, kinds = evaluate(args.data, nets, args.mni, device, args.snippet_length)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.output_dir / 'metrics.json') as handle:
            handle.write(json.dumps(metrics, indent=1).encode())
        with atomic_open(args.output_dir / 'car_kinds.json') as handle:
            handle.write(json.dumps(kinds, indent=1).encode())
    except (EvalError, DatasetError, CheckpointError, ConfigError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(metrics))
    print(format_kinds(kinds))
    print(f"=> {args.output_dir / 'metrics.json'}, {args.output_dir / 'car_kinds.json'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
