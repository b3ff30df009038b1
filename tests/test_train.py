"""Training: the step, train.py end to end, resume, skipped non-finite steps, torchrun."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from checkpoint_io import CheckpointError, load_network_weights
from datasets.custom_transforms import valid_transform
from datasets.io import read_image_size
from datasets.sequence_folders import SequenceFolder
from models import DispResNet, EgoPoseNet, InstaDM, ObjPoseNet
from projection import LossOptions, run_step
from train_checkpoints import TrainingState, load_optimizer_state, read_resume_history
from train_distributed import Distributed
from train_logs import Logs
from train_loop import train_one_epoch
from train_model import build_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--with-pretrain', '0', '-b', '2', '-j', '0', '-mni', '3', '--epoch-size', '2', '--image-freq', '1']


def first_batch(root, mni=3, sequence_length=3, batch_size=2):
    dataset = SequenceFolder(root, seed=0, max_num_instances=mni, sequence_length=sequence_length,
                             transform=valid_transform())
    tgt, refs, K, _, tgt_insts, ref_insts = next(iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size)))
    return tgt, refs, K, tgt_insts, ref_insts


def networks():
    torch.manual_seed(0)
    return DispResNet(18), EgoPoseNet(), ObjPoseNet()


def test_overfitting_one_batch_lowers_the_loss(toy_root):
    tgt, refs, K, tgt_insts, ref_insts = first_batch(toy_root)
    assert tgt_insts[0][:, 0, 0, 0].sum() > 0, 'the toy batch should hold instances'
    disp_net, ego_net, obj_net = networks()
    params = list(disp_net.parameters()) + list(ego_net.parameters()) + list(obj_net.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    options = LossOptions(with_ssim=True, with_mask=True, with_auto_mask=True)
    totals = []
    for _ in range(30):
        outputs = run_step(disp_net, ego_net, obj_net, tgt, refs, K, tgt_insts, ref_insts, options)
        optimizer.zero_grad()
        outputs.total.backward()
        optimizer.step()
        totals.append(outputs.total.item())
    assert totals[-1] < 0.7 * totals[0], totals


def test_step_shapes_and_object_motion_only_for_existing_instances(toy_root):
    tgt, refs, K, tgt_insts, ref_insts = first_batch(toy_root)
    outputs = run_step(*networks(), tgt, refs, K, tgt_insts, ref_insts, LossOptions())
    n = 4 * tgt.shape[0]
    assert outputs.motion_field.translation.shape == (n, 3) + tgt.shape[-2:] and outputs.motion_field.rotation.shape == (n, 3)
    assert outputs.object_motion.shape == (n, 3, 3)
    exists = outputs.pairs.view_masks.flatten(2).amax(2) > 0
    assert (outputs.object_motion[~exists] == 0).all() and (outputs.object_motion[exists].abs().sum(1) > 0).all()
    # the field's rotation is the ego rotation; its translation the ego translation plus the objects' own
    assert torch.equal(outputs.motion_field.rotation, outputs.ego_source_from_view[:, 3:])
    ego_translation = outputs.ego_source_from_view[:, :3, None, None]
    assert torch.equal(outputs.motion_field.translation, ego_translation + outputs.object_translation)
    off_objects = outputs.pairs.view_masks.sum(1, keepdim=True).expand(-1, 3, -1, -1) == 0
    assert (outputs.object_translation[off_objects] == 0).all() and outputs.object_translation.abs().sum() > 0
    assert all(torch.isfinite(v) for v in outputs.losses.values())


def test_rigid_ablation_with_mni_0_and_sequence_length_5(toy_root):
    tgt, refs, K, tgt_insts, ref_insts = first_batch(toy_root, mni=0, sequence_length=5, batch_size=1)
    assert len(refs) == 4 and tgt_insts[0].shape[1] == 1
    outputs = run_step(*networks(), tgt, refs, K, tgt_insts, ref_insts, LossOptions(with_ssim=True))
    assert outputs.losses['obj_size'] == 0 and outputs.object_motion.numel() == 0
    outputs.total.backward()


def read_tsv(path):
    with open(path) as f:
        return list(csv.reader(f, delimiter='\t'))


@pytest.mark.parametrize('with_gt', [True, False])
def test_train_end_to_end_writes_every_output(toy_root, tmp_path, monkeypatch, with_gt):
    monkeypatch.chdir(tmp_path)
    argv = [toy_root, '--name', 'e2e', '--epochs', '2', '--save-freq', '1', '--debug-viz', '1',
            '--with-ssim', '--with-mask', '--with-auto-mask'] + FAST + (['--with-gt'] if with_gt else [])
    run_dir = train.main(argv)
    assert run_dir.startswith(os.path.join('checkpoints', 'e2e'))
    files = set(os.listdir(run_dir))
    for prefix in ('dispnet', 'ego_pose', 'obj_pose'):
        for suffix in ('checkpoint.pth.tar', 'model_best.pth.tar', 'checkpoint_ep001.pth.tar', 'checkpoint_ep002.pth.tar'):
            assert f'{prefix}_{suffix}' in files
    assert {'args.json', 'progress_log_summary.csv', 'progress_log_full.csv', 'training_state.pth.tar'} <= files
    assert any(name.startswith('events.out.tfevents') for name in files)
    assert sorted(os.listdir(os.path.join(run_dir, 'debug_viz'))) == ['breakpoint1_batch0000.png', 'breakpoint2_batch0000.png']
    summary = read_tsv(os.path.join(run_dir, 'progress_log_summary.csv'))
    assert summary[0] == ['epoch', 'train_loss', 'validation_loss'] and len(summary) == 3
    assert [row[0] for row in summary[1:]] == ['1', '2']
    full = read_tsv(os.path.join(run_dir, 'progress_log_full.csv'))
    assert len(full) == 1 + 4 and len(full[0]) == 9 and [row[0] for row in full[1:]] == ['0', '1', '2', '3']
    saved = load_network_weights(DispResNet(18), os.path.join(run_dir, 'dispnet_checkpoint.pth.tar'))
    assert saved['epoch'] == 2
    frame_hw = read_image_size(next((Path(toy_root) / 'image').glob('*/*.jpg')))
    assert saved['model_config'] == {'resnet_layers': 18, 'rotation_mode': 'euler', 'img_height': frame_hw[0],
                                     'img_width': frame_hw[1], 'mni': 3, 'depth_scale': 1.0,
                                     'antisymmetric_ego_pose': False}
    assert not any(name.endswith('.tmp') for name in files)


def test_resume_continues_counters_and_optimizer(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = train.main([toy_root, '--name', 'resume', '--epochs', '1'] + FAST)
    first = torch.load(os.path.join(run_dir, 'training_state.pth.tar'), weights_only=True)
    assert (first['epoch'], first['n_iter']) == (1, 2)
    train.main([toy_root, '--name', 'resume', '--epochs', '2', '--resume', run_dir] + FAST)
    second = torch.load(os.path.join(run_dir, 'training_state.pth.tar'), weights_only=True)
    assert (second['epoch'], second['n_iter']) == (2, 4)
    assert second['optimizer']['state'][0]['step'] == 4
    assert len(read_tsv(os.path.join(run_dir, 'progress_log_summary.csv'))) == 3


def test_a_damaged_resume_history_is_one_line_and_left_as_it_is(tmp_path):
    path = tmp_path / 'args_resume.json'
    assert read_resume_history(path) == []
    for content, problem in (('[{"resumed_at_epoch": 1', 'not readable JSON (JSONDecodeError: '),
                             ('{}', 'not a list of resumes (a dict)')):
        path.write_text(content)
        with pytest.raises(CheckpointError) as excinfo:
            read_resume_history(path)
        assert str(excinfo.value).startswith(f'{path}: {problem}') and '\n' not in str(excinfo.value)
        assert path.read_text() == content


def test_resumed_optimizer_keeps_the_kernel_chosen_for_this_device():
    params = [torch.nn.Parameter(torch.ones(3))]
    saved_by = torch.optim.Adam(params, lr=0.1, fused=False)
    params[0].grad = torch.ones(3)
    saved_by.step()
    resuming = torch.optim.Adam(params, lr=0.1, fused=True)
    load_optimizer_state(resuming, saved_by.state_dict())
    assert resuming.param_groups[0]['fused'] is True
    assert resuming.state[params[0]]['step'] == 1
    resuming.step()
    assert resuming.state[params[0]]['step'] == 2


def test_non_finite_loss_skips_the_step(toy_root, tmp_path):
    args = train.build_parser().parse_args([toy_root, '--name', 'nan'] + FAST)
    nets = dict(zip(('disp', 'ego', 'obj'), networks()))
    optimizer = build_optimizer(args, nets)
    model = InstaDM(nets['disp'], nets['ego'], nets['obj'])
    dataset = SequenceFolder(toy_root, seed=0, max_num_instances=3, transform=valid_transform())
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    poisoned = list(batch)
    poisoned[0] = batch[0].clone()
    poisoned[0][0, :, 10, 10] = float('nan')
    before = {k: v.detach().clone() for k, v in nets['disp'].named_parameters()}
    state = TrainingState()
    logs = Logs(str(tmp_path), args, enabled=False)
    train_one_epoch(args, model, optimizer, [poisoned], torch.device('cpu'), state, logs, Distributed('cpu'),
                    str(tmp_path))
    assert state.skipped_steps == 1 and state.n_iter == 1
    assert all(torch.equal(before[k], v) for k, v in nets['disp'].named_parameters())
    train_one_epoch(args, model, optimizer, [batch], torch.device('cpu'), state, logs, Distributed('cpu'),
                    str(tmp_path))
    assert state.skipped_steps == 1 and state.n_iter == 2
    assert not torch.equal(before['decoder.dispconvs.0.conv.weight'], nets['disp'].decoder.dispconvs[0].conv.weight)


def test_missing_dataset_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r'error: .*train\.txt'):
        train.main([str(tmp_path / 'nowhere'), '--name', 'x'] + FAST)


def test_begin_idx_past_the_last_sample_is_one_clear_line(toy_root, tmp_path):
    """It used to train zero steps and save the untrained networks as the run's best model, train loss nan."""
    with pytest.raises(SystemExit, match=r'^error: --begin-idx 1000: no training sample is left'):
        train.main([toy_root, '--name', 'x', '--checkpoint-root', str(tmp_path), '--begin-idx', '1000'] + FAST)
    assert list(tmp_path.iterdir()) == []


def data_parallel_reference(root, initial, num_samples):
    """The mean of the per-sample gradients at ``initial`` (what DDP must compute) and one Adam step with it.

    Returns ``{network: {name: (parameter after the step, mean gradient)}}``.
    """
    args = train.build_parser().parse_args([root, '--name', 'ref'] + FAST)
    nets = dict(zip(('disp', 'ego', 'obj'), networks()))
    for key, net in nets.items():
        net.load_state_dict(initial[key])
    model = InstaDM(nets['disp'], nets['ego'], nets['obj'], LossOptions.from_args(args)).train()
    dataset = SequenceFolder(root, seed=0, shuffle=False, max_num_instances=3, transform=valid_transform())
    parameters = [p for net in nets.values() for p in net.parameters()]
    sums = [torch.zeros_like(p) for p in parameters]
    for index in range(num_samples):
        tgt, refs, K, _, tgt_insts, ref_insts = torch.utils.data.default_collate([dataset[index]])
        grads = torch.autograd.grad(model(tgt, refs, K, tgt_insts, ref_insts).total, parameters, allow_unused=True)
        sums = [s + g if g is not None else s for s, g in zip(sums, grads)]
    for p, s in zip(parameters, sums):
        p.grad = s / num_samples
    build_optimizer(args, nets).step()
    return {key: {name: (p, p.grad) for name, p in net.named_parameters()} for key, net in nets.items()}


def test_torchrun_ddp_step_equals_the_mean_of_the_per_process_gradients(toy_root, tmp_path):
    prefix = str(tmp_path / 'weights')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                             '--master_port', '29531', '-m', 'tests.dist_step', toy_root, prefix],
                            capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(f'{prefix}.rank{r}.pt', weights_only=True) for r in (0, 1))
    assert rank0.pop('steps') == rank1.pop('steps') == 1, 'a stop request on one rank stops every rank'
    for net in ('disp', 'ego', 'obj'):
        for key, (value, _) in rank0[net].items():
            assert torch.equal(value, rank1[net][key][0]), (net, key)
    initial = torch.load(f'{prefix}.init.pt', weights_only=True)
    torch.manual_seed(0)
    assert torch.equal(initial['disp']['decoder.dispconvs.0.conv.weight'],
                       DispResNet(18).decoder.dispconvs[0].conv.weight), 'rank 0 initialisation broadcast'
    reference = data_parallel_reference(toy_root, initial, num_samples=2)
    for net in ('disp', 'ego', 'obj'):
        moved = 0
        for key, (value, grad) in rank0[net].items():
            expected_value, expected_grad = reference[net][key]
            grad = torch.zeros_like(value) if grad is None else grad   # unused heads: no gradient anywhere
            # the processes and this one sum in other orders (other thread counts): compare each tensor as a whole
            assert (grad - expected_grad).norm() <= 1e-3 * expected_grad.norm() + 1e-12, (net, key)
            # Adam divides by |grad| + 1e-8, so entries with near-zero gradients amplify round-off: compare the
            # update of each tensor as a whole
            update, expected_update = value - initial[net][key], expected_value - initial[net][key]
            assert (update - expected_update).norm() <= 1e-2 * expected_update.norm() + 1e-9, (net, key)
            moved += not torch.equal(value, initial[net][key])
        assert moved > 0, f'{net}: the step changed no parameter'
