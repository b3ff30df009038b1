"""ResNet encoder shared by DispResNet, EgoPoseNet and ObjPoseNet (torchvision ResNet inside).

The torchvision network is kept whole under ``self.encoder`` (its unused ``fc`` layer included)
so that state-dict keys match the official checkpoints (``encoder.encoder.conv1.weight``, ...).
"""
import os

import torch
import torch.nn as nn
import torchvision

from checkpoint_io import CheckpointError, check_state_dict_fits, load_file

from . import lean_ops

RESNET_WEIGHTS = {
    18: torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    50: torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}
RESNET_BUILDERS = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}


def imagenet_weights_path(num_layers):
    """Where torchvision's ImageNet weights of ResNet-``num_layers`` live in the torch hub cache."""
    filename = os.path.basename(RESNET_WEIGHTS[num_layers].url)
    return os.path.join(torch.hub.get_dir(), 'checkpoints', filename)


def load_imagenet_state_dict(num_layers, weights_path=None):
    """Load torchvision's ImageNet ResNet weights from ``weights_path`` or the torch hub cache.

    Never downloads: when the file is missing, raise a FileNotFoundError that says where to put it; a damaged
    file (an interrupted download) raises a one-line :class:`checkpoint_io.CheckpointError`.
    """
    path = weights_path or imagenet_weights_path(num_layers)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet weights for ResNet-{num_layers} not found at {path}: download "
            f"{RESNET_WEIGHTS[num_layers].url} to that path (or give the file's path), "
            f"or train from scratch with --with-pretrain 0")
    state_dict = load_file(path)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: not a state dict of ResNet-{num_layers} weights")
    return state_dict


def build_resnet(num_layers, num_input_images=1, pretrained=False):
    """A torchvision ResNet whose first conv takes ``3 * num_input_images`` channels.

    Args:
        num_layers: 18 or 50.
        num_input_images: images stacked on the channel axis.
        pretrained: False, True (weights from the torch hub cache) or a path to a weights file.
            With several input images the ImageNet RGB kernel is repeated and divided by their number.
    """
    if num_layers not in RESNET_BUILDERS:
        raise ValueError(f"num_layers must be 18 or 50, got {num_layers}")
    resnet = RESNET_BUILDERS[num_layers](weights=None)
    state_dict = None
    if pretrained:
        weights_path = pretrained if isinstance(pretrained, (str, os.PathLike)) else None
        state_dict = load_imagenet_state_dict(num_layers, weights_path)
        # a file without the BatchNorm counters (older torchvision files) loads: they are not weights
        counters = {k: v for k, v in resnet.state_dict().items() if k.endswith('num_batches_tracked')}
        check_state_dict_fits(resnet, {**counters, **state_dict}, weights_path or imagenet_weights_path(num_layers))
    if num_input_images > 1:
        resnet.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(resnet.conv1.weight, mode='fan_out', nonlinearity='relu')
    if state_dict is not None:
        state_dict['conv1.weight'] = state_dict['conv1.weight'].repeat(1, num_input_images, 1, 1) / num_input_images
        resnet.load_state_dict(state_dict)
    return resnet


def torchvision_block(block, x):
    """A ResNet block as torchvision runs it (the counterpart of ``lean_ops.basic_block`` / ``bottleneck``)."""
    return block(x)


class ResnetEncoder(nn.Module):
    """ResNet feature pyramid: five feature maps at 1/2, 1/4, 1/8, 1/16 and 1/32 resolution.

    ``num_ch_enc`` gives their channel counts (64, 64, 128, 256, 512 for ResNet-18).  With
    ``lean_activations`` set (``train.py --lean-activations on``) a training pass on the CPU keeps fewer tensors
    for the backward pass and gives the same results (:mod:`models.lean_ops`).
    """

    def __init__(self, num_layers=18, pretrained=False, num_input_images=1):
        super().__init__()
        self.encoder = build_resnet(num_layers, num_input_images, pretrained)
        expansion = 4 if num_layers > 34 else 1
        self.num_ch_enc = [64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
        self.lean_activations = False

    def forward(self, x):
        """``[B,3*n,H,W]`` images -> list of five ``[B,C_i,H/2^(i+1),W/2^(i+1)]`` features."""
        net = self.encoder
        if lean_ops.lean_enabled(self, x) and lean_ops.plain_batch_norm(net.bn1):
            stem, pooled = lean_ops.batch_norm_relu_max_pool(net.conv1(x), net.bn1, net.maxpool)
            run_block = lean_ops.bottleneck if isinstance(net.layer1[0], torchvision.models.resnet.Bottleneck) \
                else lean_ops.basic_block
        else:
            stem = net.relu(net.bn1(net.conv1(x)))
            pooled = net.maxpool(stem)
            run_block = torchvision_block
        features = [stem]
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                pooled = run_block(block, pooled)
            features.append(pooled)
        return features
