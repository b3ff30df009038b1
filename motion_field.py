"""The motion field of Insta-DM's second projection: one rotation per pair and a translation per pixel.

The paper's motion field moves every pixel of the view with the ego motion and, on an object's
mask, adds the object's translation.  Objects do not rotate on their own, so the rotation is the
ego rotation, one per directed pair; only the translation varies over the image:
``X_source = R X_view + t(p)`` (docs/ARCHITECTURE.md, "Conventions").
"""
from dataclasses import dataclass

import torch


@dataclass
class MotionField:
    """Rigid motion of every pixel of ``N`` views into their source cameras.

    Attributes:
        rotation: ``[N,3]`` rotation view -> source, euler angles or quaternion coefficients after
            the step's ``rotation_mode`` (the ego rotation of each pair).
        translation: ``[N,3,H,W]`` translation view -> source of each pixel (ego translation, plus the
            object's own translation on its mask).
    """

    rotation: torch.Tensor
    translation: torch.Tensor

    @classmethod
    def rigid(cls, poses, height, width):
        """The field of a camera motion alone: ``[N,6]`` poses ``(t, r)`` view -> source, translation everywhere."""
        return cls(rotation=poses[:, 3:], translation=poses[:, :3, None, None].expand(-1, 3, height, width))

    @classmethod
    def with_objects(cls, poses, object_translation):
        """Ego poses ``[N,6]`` view -> source plus each pixel's object translation ``[N,3,H,W]`` (0 off objects)."""
        n, _, h, w = object_translation.shape
        return cls(rotation=poses[:, 3:], translation=poses[:, :3, None, None].expand(n, 3, h, w) + object_translation)

    @classmethod
    def from_channels(cls, field):
        """A ``[N,6,H,W]`` field with constant rotation channels 3..5 (``data/synthetic.motion_field``'s layout)."""
        return cls(rotation=field[:, 3:, 0, 0], translation=field[:, :3])

    def apply(self, rows):
        """The field of the rows ``rows`` selects: ``rows`` maps a ``[N,...]`` stack to another (a
        :class:`pairs.PairLayout` method such as ``reverse`` or ``forward_half``)."""
        return MotionField(rotation=rows(self.rotation), translation=rows(self.translation))

    @property
    def shape(self):
        """``(N, H, W)``."""
        n, _, h, w = self.translation.shape
        return n, h, w
