"""The three networks of Insta-DM."""
from .disp_resnet import DispResNet
from .pose_resnet import EgoPoseNet, ObjPoseNet

__all__ = ['DispResNet', 'EgoPoseNet', 'ObjPoseNet']
