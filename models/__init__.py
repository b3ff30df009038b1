"""The three networks of Insta-DM."""
from .disp_resnet import DispResNet
from .pose_resnet import EgoPoseNet, ObjPoseNet
from .insta_dm import InstaDM

__all__ = ['DispResNet', 'EgoPoseNet', 'ObjPoseNet', 'InstaDM']
