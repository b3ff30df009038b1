"""EgoPoseNet and ObjPoseNet: ResNet-18 on two stacked images, regressing a small motion vector."""
import torch
import torch.nn as nn

from .resnet_encoder import ResnetEncoder


class PoseDecoder(nn.Module):
    """1x1 squeeze to 256, two 3x3 convs with ReLU, 1x1 conv to ``num_outputs``, spatial mean, x 0.01."""

    def __init__(self, in_channels, num_outputs):
        super().__init__()
        self.conv_squeeze = nn.Conv2d(in_channels, 256, 1)
        self.convs_pose = nn.ModuleList([
            nn.Conv2d(256, 256, 3, 1, 1),
            nn.Conv2d(256, 256, 3, 1, 1),
            nn.Conv2d(256, num_outputs, 1),
        ])
        self.relu = nn.ReLU()

    def forward(self, features):
        """``[B,C,h,w]`` deepest encoder features -> ``[B,num_outputs]``."""
        x = self.relu(self.conv_squeeze(features))
        x = self.relu(self.convs_pose[0](x))
        x = self.relu(self.convs_pose[1](x))
        return 0.01 * self.convs_pose[2](x).mean(dim=(2, 3))


class PairPoseNet(nn.Module):
    """Motion between two images: ``net(img1, img2)`` with ``[B,3,H,W]`` inputs -> ``[B,num_outputs]``."""

    num_outputs = 6

    def __init__(self, num_layers=18, pretrained=False):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained, num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc[-1], self.num_outputs)

    def forward(self, img1, img2):
        if img1.shape != img2.shape or img1.dim() != 4 or img1.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects two images of the same shape [B,3,H,W], "
                             f"got {list(img1.shape)} and {list(img2.shape)}")
        return self.decoder(self.encoder(torch.cat([img1, img2], 1))[-1])


class EgoPoseNet(PairPoseNet):
    """Camera ego-motion ``(tx, ty, tz, rx, ry, rz)`` from ``img1`` to ``img2`` (pose target -> reference)."""

    num_outputs = 6


class ObjPoseNet(PairPoseNet):
    """Object translation ``(tx, ty, tz)`` between two masked, ego-motion-compensated object images."""

    num_outputs = 3
