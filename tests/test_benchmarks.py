"""The official-step harness (benchmarks/bench_official_step.py): its stand-in for torch_sparse.coalesce."""
import subprocess
import sys

import torch

from benchmarks.bench_official_step import coalesce


def test_coalesce_keeps_the_largest_value_of_each_pixel():
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 4, (2, 200), generator=generator)
    value = torch.rand(200, generator=generator)
    pixels, largest = coalesce(index, value, m=4, n=4, op='max')
    expected = {}
    for (row, col), v in zip(index.t().tolist(), value.tolist()):
        expected[(row, col)] = max(v, expected.get((row, col), float('-inf')))
    assert [tuple(p) for p in pixels.t().tolist()] == sorted(expected)
    assert largest.tolist() == [expected[p] for p in sorted(expected)]


def test_a_folder_without_the_official_code_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'benchmarks.bench_official_step', '--official', str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: --official {tmp_path}: no train.py (a checkout of the official release is expected)"


def test_saved_for_backward_is_split_by_network_and_obj_pose_net_only_with_instances():
    from benchmarks.batches import make_batch
    from benchmarks.bench_train_step import saved_for_backward_mib
    from models import ModelConfig, build_networks

    def totals(mni):
        torch.manual_seed(0)
        nets = list(build_networks(ModelConfig(resnet_layers=18)).values())
        return saved_for_backward_mib(nets, make_batch(1, 64, 64, mni))

    with_objects, rigid = totals(2), totals(0)
    assert set(with_objects) == {'DispResNet', 'EgoPoseNet', 'ObjPoseNet', 'geometry and losses'}
    assert 'ObjPoseNet' not in rigid
    assert rigid['DispResNet'] == with_objects['DispResNet'] > 0


def test_the_compared_loss_term_is_the_one_furthest_from_float32_relative_to_it():
    from benchmarks.bench_train_step import largest_relative_difference

    reference = {'photo': 2.0, 'geometry': 0.5, 'smooth': 0.0, 'total': 2.5}
    losses = {'photo': 2.002, 'geometry': 0.501, 'smooth': 0.0, 'total': 2.503}
    term, difference = largest_relative_difference(losses, reference)
    assert term == 'geometry' and abs(difference - 0.002) < 1e-12   # photo 0.1 %, geometry 0.2 %, total 0.12 %
