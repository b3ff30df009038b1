"""The training scripts pass the official hyper-parameters and refuse a missing TRAIN_SET."""
import os
import subprocess

import pytest

import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['scripts/train_resnet_256_kt.sh', 'scripts/train_resnet_256_cs.sh']


def run_script(script, train_set, tmp_path):
    """Run a script with PYTHON replaced by a stub that prints its arguments."""
    stub = tmp_path / 'stub.sh'
    stub.write_text('#!/bin/sh\nshift\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    env = dict(os.environ, TRAIN_SET=str(train_set), PYTHON=str(stub))
    return subprocess.run(['sh', os.path.join(ROOT, script), '--device', 'cpu'], capture_output=True, text=True, env=env)


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_pass_official_hyper_parameters(script, tmp_path):
    result = run_script(script, tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr
    args = train.build_parser().parse_args(result.stdout.splitlines())
    assert args.data == str(tmp_path) and args.device == 'cpu'
    assert (args.batch_size, args.photo_loss_weight, args.geometry_consistency_weight, args.smooth_loss_weight,
            args.scale_loss_weight, args.mof_consistency_loss_weight, args.height_loss_weight,
            args.depth_loss_weight, args.mni, args.epoch_size) == (4, 2.0, 1.0, 0.1, 0.02, 0.1, 0, 0, 2, 1000)
    assert args.with_ssim and args.with_mask and args.with_auto_mask
    assert args.with_gt == script.endswith('_kt.sh')


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_refuse_a_missing_train_set(script, tmp_path):
    result = run_script(script, tmp_path / 'missing', tmp_path)
    assert result.returncode == 1
    assert f"TRAIN_SET={tmp_path / 'missing'} is not a folder" in result.stderr
