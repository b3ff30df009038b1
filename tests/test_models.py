"""Networks: official checkpoint compatibility, shapes, ImageNet initialisation, checkpoint files."""
import os

import pytest
import torch
import torchvision

from checkpoint_io import CheckpointError, load_network_weights, save_checkpoint
from models import DispResNet, EgoPoseNet, ObjPoseNet

KEYS_FILE = os.path.join(os.path.dirname(__file__), 'data', 'official_state_dict_keys.txt')
NETWORKS = {
    'DispResNet-18': lambda: DispResNet(18),
    'DispResNet-50': lambda: DispResNet(50),
    'EgoPoseNet-18': lambda: EgoPoseNet(18),
    'ObjPoseNet-18': lambda: ObjPoseNet(18),
}


def official_shapes():
    """{network name: {key: shape tuple}} parsed from the official key listing."""
    shapes, current = {}, None
    with open(KEYS_FILE) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith('['):
                current = line[1:line.index(']')]
                shapes[current] = {}
                continue
            key, shape = line.split()
            shapes[current][key] = () if shape == 'scalar' else tuple(int(s) for s in shape.split('x'))
    return shapes


def official_like_state_dict(shapes):
    """A random state dict with exactly the official keys and shapes."""
    state = {}
    for key, shape in shapes.items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(7)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape) + 0.5
        else:
            state[key] = torch.randn(shape) * 0.05
    return state


@pytest.mark.parametrize('name', list(NETWORKS))
def test_state_dict_matches_official_keys(name):
    expected = official_shapes()[name]
    own = {k: tuple(v.shape) for k, v in NETWORKS[name]().state_dict().items()}
    assert own == expected


@pytest.mark.parametrize('name', list(NETWORKS))
def test_official_checkpoint_loads_strictly(name, tmp_path):
    state = official_like_state_dict(official_shapes()[name])
    path = str(tmp_path / 'official.pth.tar')
    torch.save({'epoch': 200, 'state_dict': state}, path)
    net = NETWORKS[name]()
    checkpoint = load_network_weights(net, path)
    assert checkpoint['epoch'] == 200
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_checkpoint_round_trip_gives_same_outputs(tmp_path):
    net = DispResNet(18).eval()
    img = torch.rand(1, 3, 64, 96) * 2 - 1
    path = str(tmp_path / 'dispnet_checkpoint.pth.tar')
    save_checkpoint(path, net.state_dict(), epoch=3)
    other = DispResNet(18).eval()
    assert not torch.allclose(other(img), net(img))
    assert load_network_weights(other, path)['epoch'] == 3
    assert torch.equal(other(img), net(img))
    assert [p for p in os.listdir(tmp_path) if p.endswith('.tmp')] == []


def test_bare_and_dataparallel_state_dicts_load(tmp_path):
    net = EgoPoseNet()
    bare = str(tmp_path / 'bare.pth')
    torch.save(net.state_dict(), bare)
    load_network_weights(EgoPoseNet(), bare)
    wrapped = str(tmp_path / 'wrapped.pth')
    torch.save({'epoch': 1, 'state_dict': {'module.' + k: v for k, v in net.state_dict().items()}}, wrapped)
    loaded = EgoPoseNet()
    load_network_weights(loaded, wrapped)
    assert torch.equal(loaded.decoder.conv_squeeze.weight, net.decoder.conv_squeeze.weight)


def test_corrupt_checkpoint_gives_one_clear_line(tmp_path):
    path = tmp_path / 'broken.pth.tar'
    path.write_bytes(b'this is not a checkpoint')
    with pytest.raises(CheckpointError, match=r'broken\.pth\.tar: not a readable PyTorch checkpoint \(not a file written') as info:
        load_network_weights(DispResNet(18), str(path))
    assert '\n' not in str(info.value)
    with pytest.raises(CheckpointError, match='checkpoint file not found'):
        load_network_weights(DispResNet(18), str(tmp_path / 'missing.pth'))
    with pytest.raises(CheckpointError, match=f'^{tmp_path}: a folder, not a checkpoint file$'):
        load_network_weights(DispResNet(18), str(tmp_path))


def test_checkpoint_of_another_network_names_the_keys(tmp_path):
    path = str(tmp_path / 'ego.pth.tar')
    save_checkpoint(path, EgoPoseNet().state_dict(), epoch=1)
    with pytest.raises(CheckpointError, match=r'ego\.pth\.tar: does not fit DispResNet: missing keys: decoder\.dispconvs'):
        load_network_weights(DispResNet(18), path)
    with pytest.raises(CheckpointError, match=r'does not fit ObjPoseNet: shape mismatch: decoder\.convs_pose\.2\.bias'):
        load_network_weights(ObjPoseNet(), path)


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = str(tmp_path / 'pickle.pth')
    torch.save({'epoch': 1, 'state_dict': {}, 'payload': torchvision.models.resnet18}, path)
    with pytest.raises(CheckpointError, match='refused, as loading it could run code'):
        load_network_weights(DispResNet(18), path)


def test_output_shapes_and_ranges():
    disp_net = DispResNet(18).eval()
    img = torch.rand(2, 3, 64, 128) * 2 - 1
    disp = disp_net(img)
    assert disp.shape == (2, 1, 64, 128) and (disp > 0).all()
    scales = disp_net.multiscale(img)
    assert [tuple(d.shape[-2:]) for d in scales] == [(64, 128), (32, 64), (16, 32), (8, 16)]
    assert torch.equal(scales[0], disp)
    assert EgoPoseNet()(img, img).shape == (2, 6)
    assert ObjPoseNet()(img, img).shape == (2, 3)
    assert disp_net.obj_height_prior.item() == pytest.approx(0.02)


def test_size_not_multiple_of_32_is_refused_with_the_size():
    with pytest.raises(ValueError, match=r'100x128 \(HxW\); the networks need sides that are positive multiples of 32'):
        DispResNet(18)(torch.zeros(1, 3, 100, 128))


def test_side_of_32_is_refused_with_the_size():
    """A 32-pixel side is a multiple of 32, but the decoder's reflection padding needs 2 pixels at 1/32."""
    with pytest.raises(ValueError, match=r'32x96 \(HxW\); the networks need sides that are positive multiples of '
                                         r'32, at least 64'):
        DispResNet(18)(torch.zeros(1, 3, 32, 96))
    assert DispResNet(18)(torch.zeros(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_imagenet_weights_missing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    expected = os.path.join(str(tmp_path), 'hub', 'checkpoints', 'resnet18-f37072fd.pth')
    with pytest.raises(FileNotFoundError, match=f'not found at {expected}: download https://'):
        DispResNet(18, pretrained=True)


def test_damaged_or_foreign_imagenet_weights_are_one_line(tmp_path):
    """An interrupted download, or the weights of another ResNet under the file name, name the file."""
    path = tmp_path / 'resnet18-f37072fd.pth'
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=f'^{path}: not a readable PyTorch checkpoint'):
        DispResNet(18, pretrained=str(path))
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match=f'^{path}: does not fit ResNet: unexpected keys: layer1.2'):
        EgoPoseNet(18, pretrained=str(path))
    without_counters = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
                        if not k.endswith('num_batches_tracked')}
    torch.save(without_counters, path)
    assert DispResNet(18, pretrained=str(path)).encoder.encoder.bn1.num_batches_tracked.item() == 0


def test_imagenet_weights_from_file_initialise_pose_encoder(tmp_path):
    imagenet = torchvision.models.resnet18(weights=None).state_dict()
    path = str(tmp_path / 'resnet18.pth')
    torch.save(imagenet, path)
    net = EgoPoseNet(pretrained=path)
    conv1 = net.encoder.encoder.conv1.weight
    assert conv1.shape == (64, 6, 7, 7)
    assert torch.allclose(conv1[:, :3], imagenet['conv1.weight'] / 2)
    assert torch.allclose(conv1[:, 3:], imagenet['conv1.weight'] / 2)
    assert torch.equal(net.encoder.encoder.layer4[1].conv2.weight, imagenet['layer4.1.conv2.weight'])
