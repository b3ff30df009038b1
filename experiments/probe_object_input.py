"""Oracle probe of ObjPoseNet's input on the synthetic world: is it usable, and can ObjPoseNet learn from it?

    python -m experiments.probe_object_input [--trained-run RUN_DIR] [--steps 300 --eval-every 50]
        [--height 64 --width 224 --scenes 10 --frames 12 --seed 0] [--output-dir DIR]

A diagnostic of issue 18.  The ablation found that ObjPoseNet learned no car motion; this probe asks
whether the first projection gives it an input from which the motion can be read.  The world of the
ablation (``data.synthetic``, same seed and size) is rendered in memory and written as a KITTI-VIS
folder in a temporary directory, so the samples, instance association and evaluation are those of
training and ``experiments.eval_synthetic`` (``datasets.SequenceFolder``, ``demo.run_networks``).

**Part A** (no training): for every directed pair of every training sample (target t, references t-1
and t+1, as training) and every matched car, the step's first projection
(``projection.first_projection``) with the *exact* depth and ego motion (and, with ``--trained-run``,
with the trained DispResNet and EgoPoseNet, i.e. what ObjPoseNet got in the ablation) gives

* ``coverage``: share of the car's view mask covered by its ego-warped source mask;
* ``object_flow_px``: mean pixel displacement the exact object translation adds on the car (flow of the second
  projection with minus without it): the motion ObjPoseNet has to see;
* ``shift_px``: centroid distance between the ego-warped source mask and the view mask (the motion left for
  ObjPoseNet to read), ``raw_shift_px`` the same before the first projection, ``size_px`` the view mask area;
* the photometric loss map (``loss_functions.photometric_and_geometry_maps``, the official switches) on the
  car after the second projection with the ego motion alone (``rigid``) and with the exact object
  translation (``exact``), next to the background's, and the share of the car's pixels the auto-mask keeps.

**Part B**: a randomly initialised ObjPoseNet trained alone (Adam, lr 1e-4) with ``projection.run_step``,
the loss weights and switches of the ablation (train.py's parser), DispResNet and EgoPoseNet replaced by
stand-ins returning the exact disparity and ego motion; no augmentation (the exact depth must fit the
image).  Every ``--eval-every`` steps: moving-car end-point error, relative error and share within 30
degrees on the validation scenes (``eval_synthetic.evaluate_scene`` with the stand-ins), against the
zero-motion baseline.  Depth is exact in metres (sky at 1000 m), so translations are in metres.
``--amp bf16`` and ``--channels-last`` run ObjPoseNet's training passes as train.py's flags of the same
names (fast on CPUs with AMX); its evaluation runs in float32.

Writes ``DIR/results.json`` and ``DIR/results.md`` (default ``experiments/results/probes/object_input``).
"""
import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, '') and importlib.util.find_spec('fileio') is None:
    sys.exit(f"{sys.argv[0]}: the repository is not installed in this environment: run bash scripts/run_tests.sh "
             f"once (it installs it into .venv), or run it from the repository root as "
             f"python -m experiments.probe_object_input")

import numpy as np
import torch

import demo
import precision
import train
from data import synthetic
from datasets.custom_transforms import valid_transform
from datasets.sequence_folders import SequenceFolder
from experiments import motion_metrics
from experiments.eval_synthetic import evaluate_scene, median_scale, print_warning
from experiments.formatting import number
from experiments.objective_at_truth import SKY_DEPTH
from fileio import atomic_open
from loss_functions import photometric_and_geometry_maps
from models import ModelConfig, build_network, load_trained_networks
from motion_field import MotionField
from pairs import make_directed_pairs
from projection import (LossOptions, background, estimate_depths, estimate_ego_motion, first_projection,
                        object_translation_field, run_step, second_projection)

ABLATION_FLAGS = ['-p', '2', '-c', '1', '-s', '0.1', '-o', '0.02', '-mc', '0.1', '--with-ssim', '--with-mask',
                  '--with-auto-mask', '-mni', '3']
DEFAULT_OUTPUT = Path('experiments/results/probes/object_input')


class FixedOutputs(torch.nn.Module):
    """Stands in for a network: returns the queued tensors in order, whatever its inputs.

    ``obj_height_prior`` is the DispResNet attribute the step reads (the official initial value, not trained).
    """

    def __init__(self):
        super().__init__()
        self.queue = []
        self.obj_height_prior = torch.tensor(0.02)

    def forward(self, first, *rest):
        if not self.queue:
            raise RuntimeError("stand-in network called with no queued output")
        value = self.queue.pop(0)
        if value.shape[0] != first.shape[0]:
            raise RuntimeError(f"stand-in output has {value.shape[0]} rows for an input of {first.shape[0]}")
        return value


def render_world(args):
    """The ablation's world, rendered in memory: list of ``SyntheticScene`` (as ``data.synthetic.generate``)."""
    config = {'seed': args.seed, 'scenes': args.scenes, 'frames': args.frames, 'height': args.height,
              'width': args.width, 'max_cars': args.max_cars, 'val_moving_cars': 0}
    return list(synthetic.render_world(config))


def exact_depth(scene, frame, unit=1.0):
    """``[1,1,H,W]`` exact depth of a frame in units of ``unit`` metres, sky at :data:`SKY_DEPTH` metres."""
    depth = scene.depths[frame]
    return torch.from_numpy(np.where(depth > 0, depth, SKY_DEPTH) / unit).float()[None, None]


def exact_pose(scene, view, source, unit=1.0):
    """``[6]`` exact ego pose view -> source (``X_source = R X_view + t``), translation in units of ``unit`` m."""
    pose = synthetic.pose_to_vec(synthetic.relative_pose(scene, view, source))
    pose[:3] /= unit
    return torch.from_numpy(pose).float()


def car_under(scene, frame, mask):
    """0-based car whose pixels of ``frame`` a ``[H,W]`` mask covers most (``-1``: none)."""
    ids = scene.instance_maps[frame][np.asarray(mask) > 0.5]
    ids = ids[ids > 0]
    return int(np.bincount(ids).argmax()) - 1 if ids.size else -1


def sample_frames(dataset, index, world):
    """``(rendered scene, [target, reference frames])`` of a :class:`SequenceFolder` sample.

    ``world``: ``{scene name: SyntheticScene}``.
    """
    scene_index, target = dataset.samples[index]
    return world[dataset.scenes[scene_index].name], [target] + [target + s for s in dataset.shifts]


def batch_truth(dataset, indices, world, layout, unit=1.0):
    """Exact depths ``[(1+R)*B,1,H,W]`` (frame stack order), ego poses ``[P*B,6]`` (in units of ``unit`` m) and
    each pair's ``(scene, view frame, source frame)`` of the samples ``indices`` (``world``: ``{name: scene}``)."""
    frames = [sample_frames(dataset, i, world) for i in indices]
    depths = torch.cat([exact_depth(s, f[j], unit) for j in range(layout.num_frames) for s, f in frames])
    rows = [(s, f[view], f[source]) for view, source in layout.frame_pairs() for s, f in frames]
    return depths, torch.stack([exact_pose(*row, unit) for row in rows]), rows


def load_batch(dataset, indices):
    """The collated training batch of samples ``indices``:
    ``(tgt [B,3,H,W], refs, K [B,3,3], tgt_insts, ref_insts)``."""
    tgt, refs, K, _, tgt_insts, ref_insts = torch.utils.data.default_collate([dataset[i] for i in indices])
    return tgt, refs, K, tgt_insts, ref_insts


def car_records(pairs, rows, ego_warped_masks, object_motion_m, scales, maps):
    """Part A's record of every matched car of every directed pair (see the module docstring)."""
    records = []
    rigid_img, exact_img, rigid_kept, warp_valid, object_flow = maps
    bg_kept = background(pairs.view_masks) * rigid_kept
    for r, (scene, view, source) in enumerate(rows):
        bg = float((rigid_img[r].mean(0) * bg_kept[r, 0]).sum() / bg_kept[r].sum().clamp(min=1))
        for k in range(pairs.view_masks.shape[1]):
            view_mask = pairs.view_masks[r, k]
            if not bool(view_mask.any()):
                continue
            car = car_under(scene, view, view_mask.numpy())
            warped = ego_warped_masks[r, k]
            on_car = view_mask * warp_valid[r, 0]
            kept = view_mask * rigid_kept[r, 0]
            records.append({
                'scene': scene.name, 'view': view, 'source': source, 'car': car,
                'kind': scene.objects[car].kind if car >= 0 else 'unknown',
                'gt_motion_m': float(object_motion_m[r, k].norm()),
                'size_px': int(view_mask.sum()), 'warped_px': int(warped.sum()),
                'coverage': float((view_mask * warped).sum() / view_mask.sum()),
                'shift_px': centroid_distance(warped, view_mask),
                'raw_shift_px': centroid_distance(pairs.source_masks[r, k], view_mask),
                'object_flow_px': float((object_flow[r] * view_mask).sum() / view_mask.sum()),
                'valid_share': float(on_car.sum() / view_mask.sum()),
                'kept_share': float(kept.sum() / view_mask.sum()),
                'residual_rigid': masked_pixel_mean(rigid_img[r], on_car),
                'residual_exact': masked_pixel_mean(exact_img[r], on_car),
                'residual_background': bg, 'depth_scale': scales[r]})
    return records


def centroid_distance(mask_a, mask_b):
    """Pixel distance between the centroids of two ``[H,W]`` masks (None when one is empty)."""
    def centroid(mask):
        ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
        return None if ys.numel() == 0 else torch.stack([xs.float().mean(), ys.float().mean()])
    a, b = centroid(mask_a), centroid(mask_b)
    return None if a is None or b is None else float((a - b).norm())


def masked_pixel_mean(diff_img, mask):
    """Mean over channels and the pixels of ``mask`` ``[H,W]`` of a ``[3,H,W]`` loss map (None without pixels)."""
    return float((diff_img.mean(0) * mask).sum() / mask.sum()) if bool(mask.any()) else None


def exact_object_motion(pairs, rows):
    """``[N,M,3]`` exact translation view -> source (metres, view->source convention of the motion field)."""
    motion = torch.zeros(pairs.view_masks.shape[:2] + (3,))
    for r, (scene, view, source) in enumerate(rows):
        for k in range(pairs.view_masks.shape[1]):
            if bool(pairs.view_masks[r, k].any()):
                car = car_under(scene, view, pairs.view_masks[r, k].numpy())
                if car >= 0:
                    motion[r, k] = torch.from_numpy(synthetic.object_translation(scene, car + 1, view, source))
    return motion


@torch.no_grad()
def probe_input(pairs, rows, depths, ego, options, metric_scale=None):
    """Part A on one batch of directed pairs: the records of :func:`car_records`.

    Args:
        depths: ``[(1+R)*B,1,H,W]`` depths of the frames (exact, or a network's in its own unit).
        ego: ``[N,6]`` ego poses view -> source in the unit of ``depths``.
        metric_scale: ``[N]`` metres per depth unit of each view (None: the depths are metric).
    """
    view_depths, source_depths = pairs.layout.pair_frames(depths)
    _, ego_warped_masks, ego_warp_valid = first_projection(pairs, source_depths, ego, options.rotation_mode)
    motion_m = exact_object_motion(pairs, rows)
    scales = metric_scale if metric_scale is not None else torch.ones(len(rows))
    fields = {'rigid': MotionField.with_objects(ego, torch.zeros_like(pairs.views)),
              'exact': MotionField.with_objects(ego, object_translation_field(motion_m / scales[:, None, None],
                                                                              pairs.view_masks))}
    maps, flows = {}, {}
    for name, field in fields.items():
        second = second_projection(pairs, view_depths, source_depths, field, options)
        valid = second.in_image * ego_warp_valid
        maps[name] = photometric_and_geometry_maps(pairs.views, pairs.sources, second.warped, valid,
                                                   second.computed_depth, second.projected_depth, options.with_ssim,
                                                   options.with_mask, options.with_auto_mask) + (valid,)
        flows[name] = second.flow
    rigid_img, _, rigid_kept, valid = maps['rigid']
    object_flow = (flows['exact'] - flows['rigid']).norm(dim=1)
    return car_records(pairs, rows, ego_warped_masks, motion_m, scales.tolist(),
                       (rigid_img, maps['exact'][0], rigid_kept, valid, object_flow))


def trained_inputs(nets, config, pairs, frames, rows):
    """Depths, ego poses and per-view metric scales of the trained networks (the ablation's input)."""
    depths, _ = estimate_depths(nets['disp'], frames, depth_scale=config.depth_scale)
    ego = estimate_ego_motion(nets['ego'], pairs, antisymmetric=config.antisymmetric_ego_pose)
    view_depths, _ = pairs.layout.pair_frames(depths)
    scales = [median_scale(scene.depths[view], view_depths[r, 0].numpy()) for r, (scene, view, _) in enumerate(rows)]
    return depths, ego, torch.tensor([s if s is not None else float('nan') for s in scales])


def run_part_a(dataset, world, options, nets=None, config=None):
    """Part A over every training sample: ``{'exact': records, 'trained': records or None}``."""
    results = {'exact': [], 'trained': [] if nets is not None else None}
    for index in range(len(dataset)):
        tgt, refs, K, tgt_insts, ref_insts = load_batch(dataset, [index])
        pairs = make_directed_pairs(tgt, refs, tgt_insts, ref_insts, K)
        depths, ego, rows = batch_truth(dataset, [index], world, pairs.layout)
        results['exact'] += probe_input(pairs, rows, depths, ego, options)
        if nets is not None:
            with torch.no_grad():
                frames = pairs.layout.stack_frames(tgt, refs)
                net_depths, net_ego, scales = trained_inputs(nets, config, pairs, frames, rows)
            results['trained'] += probe_input(pairs, rows, net_depths, net_ego, options, scales)
    return results


DESCENT_TERMS = ('photo', 'geometry', 'mof_consistency')   # the terms whose gradient reaches ObjPoseNet


def descent_alignment(dataset, world, options):
    """The step's loss gradient with respect to each car's translation at zero object motion (the start of
    training), exact depth and ego motion, over every training sample: one record per matched car,
    ``{'kind', 'gt', 'gt_motion_m', 'descent', 'terms', 'cos'}``: the descent direction ``-dL/dt`` of the total
    loss (``descent``) and of each weighted term of :data:`DESCENT_TERMS` (``terms``), and for a moving car the
    cosine between ``descent`` and the exact translation ``gt`` (``cos``; None for a parked car, whose exact
    translation is zero: its descent shows what pulls a car that should stay).

    ObjPoseNet is replaced by a stand-in whose zero output is the leaf the gradient is taken for, so the loss is
    exactly ``projection.run_step``'s.
    """
    records = []
    for index in range(len(dataset)):
        tgt, refs, K, tgt_insts, ref_insts = load_batch(dataset, [index])
        pairs = make_directed_pairs(tgt, refs, tgt_insts, ref_insts, K)
        depths, poses, rows = batch_truth(dataset, [index], world, pairs.layout)
        exists = pairs.view_masks.flatten(2).amax(2) > 0
        if not bool(exists.any()):
            continue
        disp, ego, obj = FixedOutputs(), FixedOutputs(), FixedOutputs()
        motion = torch.zeros(int(exists.sum()), 3, requires_grad=True)
        disp.queue, ego.queue, obj.queue = [1.0 / depths], [poses], [motion]
        outputs = run_step(disp, ego, obj, tgt, refs, K, tgt_insts, ref_insts, options)
        terms = {name: -options.weights[name] * torch.autograd.grad(outputs.losses[name], motion, retain_graph=True,
                                                                     allow_unused=True)[0]
                 if options.weights[name] else torch.zeros_like(motion) for name in DESCENT_TERMS}
        descent = -torch.autograd.grad(outputs.total, motion)[0]
        truth = exact_object_motion(pairs, rows)[exists]
        for j, ((row, k), direction, gt) in enumerate(zip(exists.nonzero().tolist(), descent, truth)):
            car = car_under(rows[row][0], rows[row][1], pairs.view_masks[row, k].numpy())
            if car < 0:
                continue
            moving = float(gt.norm()) > 0
            cos = float(torch.dot(direction, gt) / (direction.norm() * gt.norm()).clamp(min=1e-30)) if moving else None
            records.append({'kind': rows[row][0].objects[car].kind, 'cos': cos, 'gt_motion_m': float(gt.norm()),
                            'descent': direction.tolist(), 'gt': gt.tolist(),
                            'terms': {name: g[j].tolist() for name, g in terms.items()}})
    return records


def summarise_descent(records):
    """Per car kind of :func:`descent_alignment`'s records (``'all'``: every moving car).

    For the moving cars: ``cars``, the cosine's ``cos_mean``, ``cos_median``, the shares ``positive`` (within 90
    degrees) and ``within_30deg``; per axis (x, y, z) the mean absolute component of the unit descent direction and
    of the unit true translation (``descent_axes``, ``truth_axes``) and the share of cars whose descent has the sign
    of the truth where it moves more than 0.1 m along that axis (``sign_agreement``, None where none does).
    For every kind, parked cars included: ``by_term``, for the total and each weighted term, the mean length of the
    descent (``norm``, loss per metre), the mean of its unit vector (``signed_axes``: a systematic pull shows as a
    non-zero mean, a pull of random sign averages out) and the share of cars it pushes down (``down_share``, +y).
    """
    summary = {}
    for kind in ['all'] + sorted({r['kind'] for r in records}):
        chosen = [r for r in records if r['kind'] == kind or (kind == 'all' and r['cos'] is not None)]
        summary[kind] = {'cars': len(chosen), 'by_term': descent_by_term(chosen)}
        moving = [r for r in chosen if r['cos'] is not None]   # a car with a GT motion (parked: none)
        if moving:
            summary[kind].update(alignment_summary(moving))
    return summary


def alignment_summary(records):
    """The cosine and axis statistics of :func:`summarise_descent` over ``records`` of cars with a GT motion."""
    cos = np.array([r['cos'] for r in records])
    descent, truth = np.array([r['descent'] for r in records]), np.array([r['gt'] for r in records])
    moving = np.abs(truth) > 0.1
    unit_descent = np.abs(descent) / np.linalg.norm(descent, axis=1, keepdims=True).clip(1e-30)
    return {'cos_mean': float(cos.mean()), 'cos_median': float(np.median(cos)),
            'positive': float((cos > 0).mean()), 'within_30deg': float((cos > np.cos(np.radians(30))).mean()),
            'descent_axes': unit_descent.mean(0).tolist(),
            'truth_axes': (np.abs(truth) / np.linalg.norm(truth, axis=1, keepdims=True)).mean(0).tolist(),
            'sign_agreement': [float((descent[moving[:, c], c] * truth[moving[:, c], c] > 0).mean())
                               if moving[:, c].any() else None for c in range(3)]}


def descent_by_term(records):
    """``{'total'|term: {'norm', 'signed_axes', 'down_share'}}`` of the descent vectors of ``records``."""
    vectors = {'total': [r['descent'] for r in records]}
    vectors.update({name: [r['terms'][name] for r in records] for name in DESCENT_TERMS})
    summary = {}
    for name, rows in vectors.items():
        descents = np.array(rows, dtype=np.float64).reshape(-1, 3)
        norms = np.linalg.norm(descents, axis=1)
        unit = descents[norms > 0] / norms[norms > 0, None]
        summary[name] = {'norm': float(norms.mean()) if len(norms) else None,
                         'signed_axes': unit.mean(0).tolist() if len(unit) else None,
                         'down_share': float((unit[:, 1] > 0).mean()) if len(unit) else None}
    return summary


def summarise_part_a(records):
    """Means (and medians of the shifts) over moving and parked cars of Part A's records."""
    summary = {}
    for group in ('moving', 'parked'):
        chosen = [r for r in records if (r['kind'] == 'parked') == (group == 'parked') and r['car'] >= 0]

        def stat(key, fn=np.mean):
            values = [r[key] for r in chosen if r[key] is not None]
            return float(fn(values)) if values else None

        improved = [r['residual_exact'] < r['residual_rigid'] for r in chosen
                    if r['residual_exact'] is not None and r['residual_rigid'] is not None]
        summary[group] = {
            'cars': len(chosen), 'coverage': stat('coverage'), 'empty_warped': sum(r['warped_px'] == 0 for r in chosen),
            'shift_px': stat('shift_px'), 'shift_px_median': stat('shift_px', np.median),
            'object_flow_px': stat('object_flow_px'), 'object_flow_px_median': stat('object_flow_px', np.median),
            'object_flow_over_1px': stat('object_flow_px', lambda v: np.mean(np.asarray(v) > 1)),
            'raw_shift_px': stat('raw_shift_px'), 'size_px': stat('size_px'), 'gt_motion_m': stat('gt_motion_m'),
            'valid_share': stat('valid_share'), 'kept_share': stat('kept_share'),
            'residual_rigid': stat('residual_rigid'), 'residual_exact': stat('residual_exact'),
            'residual_background': stat('residual_background'), 'metres_per_unit': stat('depth_scale', np.median),
            'exact_lower_share': float(np.mean(improved)) if improved else None}
    return summary


def loss_options():
    """The ablation's loss weights and switches, through train.py's parser (plus the exact depth's unit 1)."""
    args = train.build_parser().parse_args(['unused-data-folder', '--name', 'probe'] + ABLATION_FLAGS)
    options = LossOptions.from_args(args)
    options.depth_scale, options.antisymmetric_ego_pose = 1.0, False
    return options


def terms_reaching(obj_net, outputs):
    """Names of the loss terms whose gradient reaches ObjPoseNet's parameters (non-zero)."""
    params = [p for p in obj_net.parameters() if p.requires_grad]
    reaching = []
    for name, term in outputs.losses.items():
        if not term.requires_grad:
            continue
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        if any(g is not None and bool(g.abs().sum() > 0) for g in grads):
            reaching.append(name)
    return reaching


def train_step(obj_net, optimizer, stand_ins, dataset, indices, world, options, check_terms=False, unit=1.0,
               run=precision.NetworkPrecision()):
    """One optimiser step of ObjPoseNet alone with the exact depth and ego motion (in units of ``unit`` metres),
    the networks run by ``run`` (a :class:`precision.NetworkPrecision`):
    ``(loss terms, names of the terms reaching ObjPoseNet or None)``."""
    disp, ego = stand_ins
    tgt, refs, K, tgt_insts, ref_insts = load_batch(dataset, indices)
    layout = make_directed_pairs(tgt, refs, tgt_insts, ref_insts, K).layout
    depths, poses, _ = batch_truth(dataset, indices, world, layout, unit)
    disp.queue, ego.queue = [1.0 / depths], [poses]
    outputs = run_step(disp, ego, obj_net, tgt, refs, K, tgt_insts, ref_insts, options, run)
    reaching = terms_reaching(obj_net, outputs) if check_terms else None
    optimizer.zero_grad()
    outputs.total.backward()
    optimizer.step()
    terms = {name: float(value.detach()) for name, value in outputs.losses.items()}
    return dict(terms, total=float(outputs.total.detach())), reaching


def queue_scene_truth(stand_ins, scene, unit=1.0):
    """Queue the exact disparities of every frame and ego poses of every consecutive pair (units of ``unit`` m),
    in the order ``demo.run_networks`` asks for them (frame t, then pair (t-1, t) in both directions)."""
    disp, ego = stand_ins
    disp.queue, ego.queue = [], []
    for t in range(scene.frames):
        disp.queue.append(1.0 / exact_depth(scene, t, unit))
        if t > 0:
            ego.queue.append(torch.stack([exact_pose(scene, t - 1, t, unit), exact_pose(scene, t, t - 1, unit)]))


@torch.no_grad()
def evaluate_objects(obj_net, stand_ins, root, val_scenes, mni, unit=1.0):
    """Moving/parked car motion errors on the validation scenes with the exact depth and ego motion
    (``eval_synthetic.evaluate_scene``, which brings the translations to metres with the depth's median scale)
    and of the zero-motion baseline: ``(summary, zero summary)``."""
    obj_net.eval()
    nets = demo.Networks(stand_ins[0], stand_ins[1], obj_net, 'euler', False)
    records = []
    for scene in val_scenes:
        queue_scene_truth(stand_ins, scene, unit)
        records += evaluate_scene(root, scene.name, nets, mni, torch.device('cpu'))[2]
    obj_net.train()
    zero = [dict(r, pred=np.zeros(3)) for r in records]
    return motion_metrics.summarise_objects(records), motion_metrics.summarise_objects(zero)


def epoch_batches(num_samples, batch_size, seed):
    """Endless batches of sample indices: one seeded permutation per epoch, incomplete batches dropped."""
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(num_samples)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start:start + batch_size].tolist()
        epoch += 1


def run_part_b(args, dataset, world, root, val_scenes, options, unit=1.0, log=print):
    """Part B: train ObjPoseNet alone, depth and translations in units of ``unit`` metres; returns the
    evaluation history and the timing."""
    torch.manual_seed(args.seed)
    obj_net = build_network('obj', ModelConfig())
    precision.prepare_networks({'obj': obj_net}, channels_last=args.channels_last)
    run = precision.NetworkPrecision.from_flags(args.amp, args.channels_last, torch.device('cpu'))
    optimizer = torch.optim.Adam(obj_net.parameters(), lr=args.lr, betas=(0.9, 0.999))
    stand_ins = (FixedOutputs(), FixedOutputs())
    history, reaching, losses, started = [], None, [], time.time()
    summary, zero = evaluate_objects(obj_net, stand_ins, root, val_scenes, args.mni, unit)
    history.append({'step': 0, 'objects': summary, 'loss': None})
    log(f"[unit {unit:g} m] step 0: moving EPE {summary['moving']['epe']:.3f} m "
        f"(zero motion {zero['moving']['epe']:.3f})")
    batches = epoch_batches(len(dataset), args.batch_size, args.seed)
    for step in range(1, args.steps + 1):
        terms, found = train_step(obj_net, optimizer, stand_ins, dataset, next(batches), world, options,
                                  check_terms=step == 1, unit=unit, run=run)
        reaching = found if found is not None else reaching
        losses.append(terms)
        if step % args.eval_every == 0 or step == args.steps:
            summary, _ = evaluate_objects(obj_net, stand_ins, root, val_scenes, args.mni, unit)
            recent = {k: float(np.mean([t[k] for t in losses[-args.eval_every:]])) for k in terms}
            history.append({'step': step, 'objects': summary, 'loss': recent})
            moving = summary['moving']
            log(f"[unit {unit:g} m] step {step} ({time.time() - started:.0f} s): loss {recent['total']:.4f} "
                f"photo {recent['photo']:.4f} | moving EPE {moving['epe']:.3f} m, rel {moving['rel']:.3f}, "
                f"within 30 deg {moving['within_30deg']:.2f}")
    return {'history': history, 'zero_motion': zero, 'terms_reaching_objposenet': reaching,
            'seconds': time.time() - started, 'steps': args.steps, 'metres_per_unit': unit}


def load_trained(run_dir):
    """The trained DispResNet and EgoPoseNet of a training run folder and their config.

    ``models.load_trained_networks`` takes the depth scale, the antisymmetric ego pose and the rotation mode
    from the checkpoints' saved config, or from the run's ``args.json`` for checkpoints saved before the
    config travelled with them.
    """
    run_dir = Path(run_dir)
    if not (run_dir / 'args.json').is_file():
        raise FileNotFoundError(f"{run_dir / 'args.json'}: not found (--trained-run must be a train.py run folder)")
    paths = {'disp': run_dir / 'dispnet_checkpoint.pth.tar', 'ego': run_dir / 'ego_pose_checkpoint.pth.tar'}
    return load_trained_networks(paths, {}, torch.device('cpu'), log=print_warning)


def training_samples(root, args):
    """The training samples of the folder as train.py reads them, without augmentation: a :class:`SequenceFolder`."""
    return SequenceFolder(root, train=True, seed=args.seed, shuffle=False, max_num_instances=args.mni,
                          sequence_length=3, transform=valid_transform(), cache_dir=Path(root) / '.cache')


def part_a_table(summaries):
    """Markdown table of Part A: one row per (input, car group)."""
    lines = ['| input | cars | car pairs | coverage | empty warped mask '
             '| shift after 1st projection (px, mean / median) '
             '| shift before (px) | flow of the object motion on the car (px, mean / median / share > 1 px) '
             '| car size (px) | GT motion (m) | car residual rigid | car residual exact '
             '| exact lower (share) | background residual | car px kept by auto-mask '
             '| metres per depth unit (median) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for source, summary in summaries.items():
        if summary is None:
            continue
        for group, row in summary.items():
            lines.append(f"| {source} | {group} | {row['cars']} | {number(row['coverage'])} | {row['empty_warped']} | "
                         f"{number(row['shift_px'], 2)} / {number(row['shift_px_median'], 2)} | "
                         f"{number(row['raw_shift_px'], 2)} | "
                         f"{number(row['object_flow_px'], 2)} / {number(row['object_flow_px_median'], 2)} / "
                         f"{number(row['object_flow_over_1px'], 2)} | "
                         f"{number(row['size_px'], 0)} | {number(row['gt_motion_m'])} | "
                         f"{number(row['residual_rigid'], 4)} | "
                         f"{number(row['residual_exact'], 4)} | {number(row['exact_lower_share'], 2)} | "
                         f"{number(row['residual_background'], 4)} | {number(row['kept_share'], 2)} | "
                         f"{number(row['metres_per_unit'], 2)} |")
    return '\n'.join(lines)


def network_run(settings):
    """How Part B ran ObjPoseNet's training passes, in words: ``float32``, ``bf16``, ``bf16 + channels-last``."""
    words = 'float32' if settings['amp'] == 'off' else settings['amp']
    return words + (' + channels-last' if settings['channels_last'] else '')


def part_b_table(part_b):
    """Markdown table of Part B: the validation metrics at each evaluation."""
    zero = part_b['zero_motion']['moving']
    lines = ['| step | train loss (mean since last) | photo | moving EPE (m) | moving rel | within 30 deg '
             '| parked EPE (m) |',
             '|---|---|---|---|---|---|---|',
             f"| zero motion | | | {number(zero['epe'])} | {number(zero['rel'])} | {number(zero['within_30deg'], 2)} | "
             f"{number(part_b['zero_motion']['parked']['epe'])} |"]
    for entry in part_b['history']:
        moving, loss = entry['objects']['moving'], entry['loss'] or {}
        lines.append(f"| {entry['step']} | {number(loss.get('total'), 4)} | {number(loss.get('photo'), 4)} | "
                     f"{number(moving['epe'])} | {number(moving['rel'])} | {number(moving['within_30deg'], 2)} | "
                     f"{number(entry['objects']['parked']['epe'])} |")
    return '\n'.join(lines)


def fmt_axes(values):
    """``x / y / z`` of three values to 2 decimals (``-`` for None)."""
    return ' / '.join(number(v, 2) for v in values) if values is not None else '-'


def descent_tables(descent):
    """Markdown lines of :func:`summarise_descent`'s summary: the alignment table (moving cars) and the
    by-term table (every kind, parked cars included)."""
    lines = ['## The loss gradient at zero object motion', '',
             "For every moving-car instance of the training samples (exact depth and ego motion, ObjPoseNet's "
             "output zero as at the start of training): the cosine between the descent direction of the step's "
             "total loss with respect to the car's translation and the exact translation.", '',
             '| car kind | instances | cosine mean | median | share within 90 deg | share within 30 deg '
             '| descent axes x / y / z | truth axes x / y / z | sign agreement x / y / z |',
             '|---|---|---|---|---|---|---|---|---|']
    lines += [f"| {kind} | {d['cars']} | {number(d['cos_mean'])} | {number(d['cos_median'])} | "
              f"{number(d['positive'], 2)} | "
              f"{number(d['within_30deg'], 2)} | {fmt_axes(d['descent_axes'])} | {fmt_axes(d['truth_axes'])} | "
              f"{fmt_axes(d['sign_agreement'])} |" for kind, d in descent.items() if 'cos_mean' in d]
    lines += ['', 'axes: mean absolute component of the unit vector (x right, y down, z forward); sign agreement: '
              'share of the cars moving more than 0.1 m along the axis whose descent has the sign of the truth.', '',
              'The descent of the total and of each weighted term that reaches ObjPoseNet, for every car kind '
              '(parked cars, whose exact translation is zero, included): mean length (loss per metre), mean of the '
              'unit vector (a systematic pull shows as a non-zero mean, a pull of random sign averages out) and the '
              'share of cars pushed down (+y).', '',
              '| car kind | term | mean length | mean unit vector x / y / z | share pushed down |',
              '|---|---|---|---|---|']
    lines += [f"| {kind} | {term} | {number(t['norm'], 5)} | {fmt_axes(t['signed_axes'])} | "
              f"{number(t['down_share'], 2)} |"
              for kind, d in descent.items() for term, t in d['by_term'].items()]
    return lines


def write_results(out, results, command):
    """``out/results.json`` (summaries, history, settings) and ``out/results.md`` (the two tables)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / 'results.json') as handle:
        handle.write(json.dumps(results, indent=1).encode())
    settings = results['settings']
    md = [f"# Oracle probe of ObjPoseNet's input (issue 18)", '',
          f"Command: `{command}`", '',
          f"World: seed {settings['seed']}, {settings['scenes']} scenes x {settings['frames']} frames, "
          f"{settings['height']}x{settings['width']}, mni {settings['mni']} (the ablation's). "
          f"Wall time {results['wall_s']:.0f} s on {settings['cpu']} ({settings['threads']} thread).", '',
          '## A. The first projection\'s output for ObjPoseNet (training samples, every directed pair)', '',
          part_a_table(results['part_a']), '',
          'coverage: share of the view mask covered by the ego-warped source mask; shift: centroid distance of the two '
          'masks; flow of the object motion: the pixel displacement the exact object translation adds on the car '
          '(flow of the second projection with minus without it); residuals: the photometric loss map '
          '(SSIM + L1, geometry-weighted) on the car pixels valid in both '
          'projections after the second projection with the ego motion only (rigid) or with the exact object '
          'translation (exact); background: the loss-masked background mean of the same pairs. "trained" uses the '
          'ablation\'s DispResNet and EgoPoseNet (exact object translation brought to their unit with the view\'s '
          'median scale).', '']
    if results.get('descent'):
        md += descent_tables(results['descent']) + ['']
    for part_b in results.get('part_b') or []:
        md += [f"## B. ObjPoseNet trained alone on the exact depth and ego motion, "
               f"unit {part_b['metres_per_unit']:g} m",
               '', f"{part_b['steps']} steps, batch {settings['batch_size']}, Adam lr {settings['lr']:g}, "
               f"ObjPoseNet's training passes: {network_run(settings)}; loss flags "
               f"`{' '.join(ABLATION_FLAGS)}`; terms whose gradient reaches ObjPoseNet: "
               f"{', '.join(part_b['terms_reaching_objposenet'] or [])}; {part_b['seconds']:.0f} s. Depth and "
               f"translations in units of {part_b['metres_per_unit']:g} m; errors on the validation scenes in metres.",
               '', part_b_table(part_b), '']
    with atomic_open(out / 'results.md') as handle:
        handle.write('\n'.join(md).encode())


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=0, help="the world's seed (and the training seed)")
    parser.add_argument('--scenes', type=int, default=10)
    parser.add_argument('--frames', type=int, default=12)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=224)
    parser.add_argument('--max-cars', type=int, default=4)
    parser.add_argument('--mni', type=int, default=3)
    parser.add_argument('--trained-run', type=Path, default=None,
                        help='training run folder (dispnet_checkpoint.pth.tar, ego_pose_checkpoint.pth.tar): '
                             'also probe the input these networks give')
    parser.add_argument('--steps', type=int, default=300, help='Part B optimiser steps (0: skip Part B)')
    parser.add_argument('--eval-every', type=int, default=50)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--lr', type=float, default=1e-4)
    parser.add_argument('--depth-units', type=float, nargs='+', default=[1.0],
                        help='Part B: one run per value, depth and translations in units of this many metres '
                             '(1: metres; the ablation\'s networks ended near 64)')
    parser.add_argument('--descent', action='store_true',
                        help="also measure the direction of the loss gradient with respect to each car's translation "
                             "at zero object motion against the exact translation")
    parser.add_argument('--amp', choices=['off', 'bf16'], default='off',
                        help="Part B: ObjPoseNet's training passes under bf16 autocast (as train.py --amp)")
    parser.add_argument('--channels-last', action='store_true',
                        help="Part B: ObjPoseNet in channels-last layout (as train.py --channels-last)")
    parser.add_argument('--output-dir', type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.steps < 0 or args.eval_every < 1 or args.batch_size < 1 or args.mni < 1 or min(args.depth_units) <= 0:
        print("error: --steps must be >= 0, --eval-every, --batch-size and --mni >= 1, --depth-units > 0",
              file=sys.stderr)
        return 2
    started = time.time()
    torch.manual_seed(args.seed)
    options = loss_options()
    nets = config = None
    if args.trained_run is not None:
        try:
            nets, config = load_trained(args.trained_run)
        except (OSError, ValueError) as error:
            print(f"error: --trained-run: {error}", file=sys.stderr)
            return 2
        print(f"=> trained networks of {args.trained_run}: {config}")
    scenes = render_world(args)
    world = {scene.name: scene for scene in scenes}
    with tempfile.TemporaryDirectory(prefix='probe_object_input_') as root:
        synthetic.write_kitti_vis(scenes, root)
        dataset = training_samples(root, args)
        val_names = (Path(root) / 'val.txt').read_text().split()
        part_a = run_part_a(dataset, world, options, nets, config)
        results = {'part_a': {name: summarise_part_a(records) if records is not None else None
                              for name, records in part_a.items()}}
        print(part_a_table(results['part_a']))
        if args.descent:
            results['descent'] = summarise_descent(descent_alignment(dataset, world, options))
            print('\n'.join(descent_tables(results['descent'])))
        if args.steps:
            results['part_b'] = [run_part_b(args, dataset, world, root, [world[n] for n in val_names], options, unit)
                                 for unit in args.depth_units]
    results['settings'] = dict(vars(args), trained_run=str(args.trained_run), output_dir=str(args.output_dir),
                               cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                               loss_flags=ABLATION_FLAGS)
    if config is not None:
        results['settings']['trained_config'] = config.as_dict()
    results['wall_s'] = time.time() - started
    command = 'python -m experiments.probe_object_input ' + ' '.join(argv if argv is not None else sys.argv[1:])
    write_results(args.output_dir, results, command)
    print(f"=> {args.output_dir / 'results.md'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
