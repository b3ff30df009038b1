"""The three networks of Insta-DM."""
from .disp_resnet import DispResNet, depth_from_disparity
from .pose_resnet import EgoPoseNet, ObjPoseNet
from .insta_dm import InstaDM

__all__ = ['DispResNet', 'depth_from_disparity', 'EgoPoseNet', 'ObjPoseNet', 'InstaDM']
