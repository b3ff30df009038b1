"""experiments/probe_object_input.py: the first projection's output for ObjPoseNet and the oracle evaluation."""
import numpy as np
import pytest
import torch

import demo
from data import synthetic
from experiments import probe_object_input as probe
from pairs import make_directed_pairs

HEIGHT, WIDTH = 64, 96   # the size of conftest's ``world``


def frame_pair(root, scene, a, b, mni=3):
    """Directed pairs of frames ``(a, b)`` with the instances matched as training does."""
    files = demo.find_scene(root, scene.name)
    masks_a, masks_b = demo.frame_masks(files, a, (HEIGHT, WIDTH)), demo.frame_masks(files, b, (HEIGHT, WIDTH))
    matches = demo.match_instances(files, a, masks_a, masks_b, mni) if b == a + 1 else \
        np.stack([np.arange(1, len(masks_a) + 1)] * 2, 1)[:mni]
    inst_a, inst_b = demo.instance_tensors(masks_a, masks_b, matches, mni, 'cpu')
    images = [demo.to_network_input(scene.images[k], 'cpu') for k in (a, b)]
    K = torch.from_numpy(scene.K).float()[None]
    pairs = make_directed_pairs(images[0], [images[1]], [inst_a], [inst_b], K)
    depths = torch.cat([probe.exact_depth(scene, a), probe.exact_depth(scene, b)])
    return pairs, depths, [(scene, a, b), (scene, b, a)], matches


def test_a_still_camera_and_a_still_car_give_full_coverage_and_no_shift(world):
    root, scene = world
    pairs, depths, rows, _ = frame_pair(root, scene, 1, 1)
    records = probe.probe_input(pairs, rows, depths, torch.zeros(2, 6), probe.loss_options())
    assert records and all(r['car'] >= 0 for r in records)
    for record in records:
        assert record['coverage'] == pytest.approx(1.0, abs=0.02)
        assert record['shift_px'] == pytest.approx(0.0, abs=0.05)


def test_the_exact_object_translation_lowers_the_moving_car_residual(world):
    root, scene = world
    pairs, depths, rows, _ = frame_pair(root, scene, 0, 1)
    ego = torch.stack([probe.exact_pose(scene, 0, 1), probe.exact_pose(scene, 1, 0)])
    records = probe.probe_input(pairs, rows, depths, ego, probe.loss_options())
    moving = [r for r in records if r['kind'] not in ('parked', 'unknown')]
    assert len(moving) == 2   # the moving car, in both directions
    for record in moving:
        assert record['gt_motion_m'] > 0.1
        assert record['residual_exact'] < 0.8 * record['residual_rigid']


def test_car_under_finds_the_car_a_mask_covers_and_none_for_an_empty_mask(world):
    _, scene = world
    car = scene.objects[0]
    mask = scene.masks[0][car.mask_index[0]]
    assert probe.car_under(scene, 0, mask) == 0
    assert probe.car_under(scene, 0, np.zeros_like(mask)) == -1


def exact_object_outputs(root, scene, mni=3):
    """A queue of ObjPoseNet outputs with the exact translation of every matched car of every consecutive pair,
    in the order ``demo.run_networks`` calls the network (pair t -> t+1: view t's instances, then view t+1's)."""
    files = demo.find_scene(root, scene.name)
    outputs = []
    for t in range(scene.frames - 1):
        masks_a, masks_b = demo.frame_masks(files, t, (HEIGHT, WIDTH)), demo.frame_masks(files, t + 1, (HEIGHT, WIDTH))
        matches = demo.match_instances(files, t, masks_a, masks_b, mni)
        rows = []
        for column, (view, source) in enumerate(((t, t + 1), (t + 1, t))):
            for channel in matches[:, column]:
                car = [j for j, obj in enumerate(scene.objects) if obj.mask_index[view] == channel][0]
                rows.append(synthetic.object_translation(scene, car + 1, view, source))
        outputs.append(torch.tensor(np.stack(rows)).float())
    return outputs


@pytest.mark.parametrize('unit', [1.0, 64.0])
def test_evaluation_of_the_exact_motion_is_zero_and_of_zero_motion_is_the_baseline(world, unit):
    root, scene = world
    stand_ins = (probe.FixedOutputs(), probe.FixedOutputs())
    exact = probe.FixedOutputs()
    exact.queue = [motion / unit for motion in exact_object_outputs(root, scene)]
    summary, zero = probe.evaluate_objects(exact, stand_ins, root, [scene], mni=3, unit=unit)
    assert summary['moving']['cars'] == zero['moving']['cars'] == 2
    assert summary['moving']['epe'] == pytest.approx(0.0, abs=1e-5)
    assert summary['moving']['within_30deg'] == 1.0
    assert zero['moving']['epe'] > 0.1
    still = probe.FixedOutputs()
    still.queue = [torch.zeros_like(q) for q in exact_object_outputs(root, scene)]
    summary, zero = probe.evaluate_objects(still, stand_ins, root, [scene], mni=3, unit=unit)
    assert summary['moving']['epe'] == pytest.approx(zero['moving']['epe'])


def test_a_stand_in_refuses_an_input_of_another_batch_size():
    stand_in = probe.FixedOutputs()
    stand_in.queue = [torch.zeros(2, 6)]
    with pytest.raises(RuntimeError, match='2 rows for an input of 3'):
        stand_in(torch.zeros(3, 3, 4, 4))


def test_only_the_photometric_geometry_and_motion_field_terms_reach_objposenet(world, tmp_path):
    root, scene = world
    args = probe.build_parser().parse_args(['--seed', '0'])
    dataset = probe.training_samples(root, args)
    torch.manual_seed(0)
    obj_net = probe.build_network('obj', probe.ModelConfig())
    optimizer = torch.optim.Adam(obj_net.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in obj_net.parameters()]
    _, reaching = probe.train_step(obj_net, optimizer, (probe.FixedOutputs(), probe.FixedOutputs()), dataset, [0],
                                   {scene.name: scene}, probe.loss_options(), check_terms=True)
    assert set(reaching) == {'photo', 'geometry', 'mof_consistency'}
    assert any(not torch.equal(a, b) for a, b in zip(before, obj_net.parameters()))


def test_a_bf16_channels_last_training_step_gives_the_float32_losses(world):
    """``--amp bf16 --channels-last`` (Part B's fast path): the same weights and batch give every loss term
    within 1 % of float32's, and the network's parameters stay float32."""
    root, scene = world
    args = probe.build_parser().parse_args(['--seed', '0'])
    dataset = probe.training_samples(root, args)
    terms = []
    for run in (probe.precision.NetworkPrecision(),
                probe.precision.NetworkPrecision.from_flags('bf16', True, torch.device('cpu'))):
        torch.manual_seed(0)
        obj_net = probe.build_network('obj', probe.ModelConfig())
        probe.precision.prepare_networks({'obj': obj_net}, channels_last=run.channels_last)
        optimizer = torch.optim.Adam(obj_net.parameters(), lr=1e-4)
        step_terms, _ = probe.train_step(obj_net, optimizer, (probe.FixedOutputs(), probe.FixedOutputs()), dataset,
                                         [0], {scene.name: scene}, probe.loss_options(), run=run)
        terms.append(step_terms)
        assert all(p.dtype == torch.float32 for p in obj_net.parameters())
    for name, value in terms[0].items():
        assert terms[1][name] == pytest.approx(value, rel=1e-2, abs=1e-6), name


def test_the_descent_direction_at_zero_motion_is_measured_for_each_car_and_term(world):
    root, scene = world
    args = probe.build_parser().parse_args([])
    records = probe.descent_alignment(probe.training_samples(root, args), {scene.name: scene}, probe.loss_options())
    moving = [r for r in records if r['cos'] is not None]
    assert {r['kind'] for r in moving} == {scene.objects[j].kind for j in range(len(scene.objects))} - {'parked'}
    assert len(moving) == 4   # the moving car in the 4 directed pairs of the one sample
    assert all(-1.0 <= r['cos'] <= 1.0 and r['gt_motion_m'] > 0 for r in moving)
    parked = [r for r in records if r['cos'] is None]
    assert parked and all(r['kind'] == 'parked' and r['gt_motion_m'] == 0 for r in parked)
    for record in records:   # smoothness and object size do not reach the translation: the terms sum to the total
        np.testing.assert_allclose(np.sum([record['terms'][t] for t in probe.DESCENT_TERMS], 0), record['descent'],
                                   rtol=1e-4, atol=1e-9)
    summary = probe.summarise_descent(records)
    assert summary['all']['cars'] == 4 and summary['parked']['cars'] == len(parked)
    assert 'cos_mean' not in summary['parked']
    assert summary['all']['positive'] == pytest.approx(np.mean([r['cos'] > 0 for r in moving]))
    assert sum(summary['all']['truth_axes']) >= 1.0 and summary['all']['truth_axes'][1] < 0.01   # cars stay on the road
    total = summary['parked']['by_term']['total']
    assert total['norm'] == pytest.approx(np.mean([np.linalg.norm(r['descent']) for r in parked]))
    assert total['down_share'] == pytest.approx(np.mean([r['descent'][1] > 0 for r in parked]))
    assert any('| parked | geometry |' in line for line in probe.descent_tables(summary))
