"""The three networks of Insta-DM, their configuration and the model object of the training step."""
from .disp_resnet import DispResNet, depth_from_disparity
from .pose_resnet import EgoPoseNet, ObjPoseNet
from .config import (CONFIG_KEY, ConfigError, ModelConfig, build_network, build_networks, imagenet_initialisation,
                     load_trained_networks, resolve_config, saved_config)
from .insta_dm import InstaDM
from .lean_ops import set_lean_activations

__all__ = ['DispResNet', 'depth_from_disparity', 'EgoPoseNet', 'ObjPoseNet', 'InstaDM', 'CONFIG_KEY', 'ConfigError',
           'ModelConfig', 'build_network', 'build_networks', 'imagenet_initialisation', 'load_trained_networks',
           'resolve_config', 'saved_config', 'set_lean_activations']
