"""The run configuration saved with the checkpoints (models.config): round trip, resolution, loading."""
import json

import pytest
import torch

import models
from checkpoint_io import CheckpointError, load_checkpoint, save_checkpoint
from models import CONFIG_KEY, ConfigError, ModelConfig, load_trained_networks, resolve_config, saved_config


def test_config_round_trips_through_a_checkpoint_and_keeps_the_official_keys(tmp_path):
    config = ModelConfig(resnet_layers=50, rotation_mode='quat', img_height=128, img_width=416, mni=2,
                         depth_scale=10.0)
    net = models.build_network('disp', config)
    path = tmp_path / 'dispnet.pth.tar'
    save_checkpoint(path, net.state_dict(), epoch=1, **{CONFIG_KEY: config.as_dict()})
    checkpoint = load_checkpoint(path)
    assert saved_config(checkpoint, path) == config
    assert set(checkpoint['state_dict']) == set(models.DispResNet(50).state_dict())
    models.DispResNet(50).load_state_dict(checkpoint['state_dict'], strict=True)


def test_official_checkpoints_have_no_config_and_unknown_keys_are_ignored(tmp_path):
    assert saved_config({'epoch': 1, 'state_dict': {}}, 'x') is None
    assert saved_config({CONFIG_KEY: {'rotation_mode': 'quat', 'future_setting': 3}}, 'x') == \
        ModelConfig(rotation_mode='quat')


@pytest.mark.parametrize('values, named', [({'rotation_mode': 'axis-angle'}, 'rotation_mode'),
                                           ({'resnet_layers': 34}, 'resnet_layers'),
                                           ({'img_height': -1}, 'img_height'),
                                           ({'depth_scale': 0}, 'depth_scale')])
def test_unusable_saved_config_is_one_line_naming_the_file(values, named):
    with pytest.raises(ConfigError) as error:
        ModelConfig.from_dict(values, 'run/dispnet.pth.tar')
    assert str(error.value).startswith('run/dispnet.pth.tar: ') and named in str(error.value)
    assert '\n' not in str(error.value)


def test_explicit_flags_win_over_the_saved_config_with_a_warning():
    saved = ModelConfig(rotation_mode='quat', img_height=128, img_width=416)
    config, warnings = resolve_config(saved, {'rotation_mode': 'euler', 'img_height': 128, 'img_width': None}, 'F')
    assert config == ModelConfig(rotation_mode='euler', img_height=128, img_width=416)
    assert warnings == ["warning: F was trained with rotation_mode 'quat', using 'euler' as given"]
    assert resolve_config(None, {'resnet_layers': None}) == (ModelConfig(), [])


def test_load_trained_networks_reads_the_config_and_builds_untrained_networks_for_missing_paths(tmp_path):
    torch.manual_seed(0)
    ego = models.EgoPoseNet(18)
    path = tmp_path / 'ego.pth.tar'
    save_checkpoint(path, ego.state_dict(), epoch=1, **{CONFIG_KEY: ModelConfig(rotation_mode='quat').as_dict()})
    lines = []
    nets, config = load_trained_networks({'disp': None, 'ego': str(path)}, {'rotation_mode': None}, 'cpu',
                                         log=lines.append)
    assert config.rotation_mode == 'quat' and set(nets) == {'disp', 'ego'}
    assert not nets['ego'].training
    for name, value in ego.state_dict().items():
        assert torch.equal(nets['ego'].state_dict()[name], value)
    assert lines == ['=> DispResNet: no checkpoint given, using an untrained (randomly initialised) network',
                     f'=> EgoPoseNet weights from {path}']


def test_a_checkpoint_of_another_depth_than_requested_does_not_load(tmp_path):
    path = tmp_path / 'disp.pth.tar'
    save_checkpoint(path, models.DispResNet(18).state_dict(), epoch=1)
    with pytest.raises(CheckpointError, match='does not fit DispResNet'):
        load_trained_networks({'disp': str(path)}, {'resnet_layers': 50}, 'cpu', log=lambda line: None)


def test_a_checkpoint_without_config_takes_its_runs_arguments_and_an_official_file_the_defaults(tmp_path):
    run, official = tmp_path / 'run', tmp_path / 'official'
    run.mkdir(), official.mkdir()
    (run / 'args.json').write_text(json.dumps({'data': 'DIR', 'rotation_mode': 'quat', 'mni': 3, 'depth_scale': 0.1,
                                               'antisymmetric_ego_pose': True, 'resnet_layers': 18}))
    for folder in (run, official):
        save_checkpoint(folder / 'ego.pth.tar', models.EgoPoseNet(18).state_dict(), epoch=1)
    lines = []
    _, config = load_trained_networks({'ego': str(run / 'ego.pth.tar')}, {}, 'cpu', log=lines.append)
    assert config == ModelConfig(rotation_mode='quat', mni=3, depth_scale=0.1, antisymmetric_ego_pose=True)
    assert lines[0] == f"=> {run / 'ego.pth.tar'} carries no model_config: using its run's args.json"
    _, config = load_trained_networks({'ego': str(official / 'ego.pth.tar')}, {}, 'cpu', log=lambda line: None)
    assert config == ModelConfig()
    (run / 'args.json').write_text('[1, 2]')
    with pytest.raises(ConfigError, match=r"args.json: the run arguments are not a JSON object$"):
        load_trained_networks({'ego': str(run / 'ego.pth.tar')}, {}, 'cpu', log=lambda line: None)
