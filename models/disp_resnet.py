"""DispResNet: single-image disparity network (ResNet encoder + monodepth2-style decoder)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from network_input import size_problem

from . import lean_ops
from .resnet_encoder import ResnetEncoder

DECODER_CHANNELS = (16, 32, 64, 128, 256)
NUM_SCALES = 4


class Conv3x3(nn.Module):
    """Reflection-padded 3x3 convolution (with ``lean_activations`` set, a training pass on the CPU keeps the
    unpadded input for the backward pass instead of the padded copy: :mod:`models.lean_ops`)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)
        self.lean_activations = False

    def forward(self, x):
        if lean_ops.lean_enabled(self, x):
            return lean_ops.reflection_pad_conv(x, self.pad, self.conv)
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Reflection-padded 3x3 convolution followed by ELU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x):
        return self.nonlin(self.conv(x))


class DispDecoder(nn.Module):
    """Five up-stages (coarse to fine) with skip connections and softplus disparity heads.

    ``upconvs0[k]`` / ``upconvs1[k]`` belong to stage ``k`` (``k = 0`` the coarsest, working on the
    1/32 features); ``dispconvs[s]`` is the head of scale ``s`` (``s = 0`` full resolution).
    """

    def __init__(self, num_ch_enc):
        super().__init__()
        self.upconvs0 = nn.ModuleList()
        self.upconvs1 = nn.ModuleList()
        for level in range(4, -1, -1):
            in_channels = num_ch_enc[-1] if level == 4 else DECODER_CHANNELS[level + 1]
            self.upconvs0.append(ConvBlock(in_channels, DECODER_CHANNELS[level]))
            skip_channels = num_ch_enc[level - 1] if level > 0 else 0
            self.upconvs1.append(ConvBlock(DECODER_CHANNELS[level] + skip_channels, DECODER_CHANNELS[level]))
        self.dispconvs = nn.ModuleList(Conv3x3(DECODER_CHANNELS[s], 1) for s in range(NUM_SCALES))

    def forward(self, features, scales=(0,)):
        """Disparities ``{scale: [B,1,H/2^s,W/2^s]}`` for the requested ``scales`` (0 = full resolution)."""
        x = features[-1]
        disparities = {}
        for stage, level in enumerate(range(4, -1, -1)):
            x = F.interpolate(self.upconvs0[stage](x), scale_factor=2, mode='nearest')
            if level > 0:
                x = torch.cat([x, features[level - 1]], 1)
            x = self.upconvs1[stage](x)
            if level in scales:
                disparities[level] = F.softplus(self.dispconvs[level](x))
        return disparities


def depth_from_disparity(disparity, depth_scale=1.0):
    """Depth of a disparity map of any shape: ``depth_scale / disparity`` (1.0: the official unit)."""
    return depth_scale / disparity


class DispResNet(nn.Module):
    """Disparity network of Insta-DM.

    Args:
        num_layers: ResNet depth of the encoder, 18 or 50.
        pretrained: False, True (torchvision ImageNet weights from the torch hub cache) or a path.

    ``forward(img [B,3,H,W])`` (normalised with mean 0.5, std 0.5; H and W multiples of 32) returns the
    full-resolution disparity ``[B,1,H,W]`` (softplus, so positive); depth is :func:`depth_from_disparity`.
    The learnable scalar ``obj_height_prior`` (init 0.02) is the object height prior of the size loss.
    """

    def __init__(self, num_layers=18, pretrained=False):
        super().__init__()
        self.obj_height_prior = nn.Parameter(torch.tensor(0.02))
        self.encoder = ResnetEncoder(num_layers, pretrained, num_input_images=1)
        self.decoder = DispDecoder(self.encoder.num_ch_enc)

    def forward(self, img):
        return self.multiscale(img, scales=(0,))[0]

    def multiscale(self, img, scales=tuple(range(NUM_SCALES))):
        """Disparities at several scales: list ordered as ``scales``, each ``[B,1,H/2^s,W/2^s]``."""
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"DispResNet expects images of shape [B,3,H,W], got {list(img.shape)}")
        problem = size_problem(*img.shape[-2:])
        if problem:
            raise ValueError(f"DispResNet input is {problem}: resize or pad the frames")
        disparities = self.decoder(self.encoder(img), scales)
        return [disparities[s] for s in scales]
