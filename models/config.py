"""What a run was trained with, and the one function that builds its networks.

A :class:`ModelConfig` (ResNet depth of DispResNet, rotation parameterisation of the pose vectors,
frame size, maximum instances per frame, depth scale, antisymmetric ego pose) is stored in every network checkpoint that
``train.py`` writes, under the key ``'model_config'`` next to the official ``'epoch'`` and
``'state_dict'`` (the state-dict keys are untouched, so the files load strictly into the official
code, and official files, which have no config, keep loading here).  ``test_disp.py``, ``test_pose.py``,
``demo.py`` and ``experiments/eval_synthetic.py`` read it: a flag given on the command line wins, with a
one-line warning when it differs from the saved value; a flag not given takes the saved value, else
the default below.
"""
import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace

from checkpoint_io import apply_weights, load_checkpoint

from .disp_resnet import DispResNet
from .pose_resnet import EgoPoseNet, ObjPoseNet
from .resnet_encoder import RESNET_WEIGHTS

CONFIG_KEY = 'model_config'
NETWORK_KINDS = ('disp', 'ego', 'obj')
POSE_RESNET_LAYERS = 18
ROTATION_MODES = ('euler', 'quat')
RESNET_DEPTHS = (18, 50)


class ConfigError(ValueError):
    """A saved configuration that cannot be used (one-line message naming the file)."""


@dataclass(frozen=True)
class ModelConfig:
    """The settings a checkpoint's networks were trained with (defaults: the official ones)."""

    resnet_layers: int = 18        # DispResNet encoder depth (the pose networks are always ResNet-18)
    rotation_mode: str = 'euler'   # pose vectors: Euler angles or quaternion (pose_vec2mat)
    img_height: int = 256          # frame size of the training data
    img_width: int = 832
    mni: int = 20                  # maximum number of instances per frame
    depth_scale: float = 1.0       # depth = depth_scale / disparity inside the step
    antisymmetric_ego_pose: bool = False  # ego pose = (f(view, source) - f(source, view)) / 2 (experiment option)

    def as_dict(self):
        """Plain types only (a checkpoint is read with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values, source):
        """The config of a checkpoint's ``'model_config'`` dict; unknown keys (a newer version) are ignored.

        Raises:
            ConfigError: not a dict, or a value of the wrong type or range.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{CONFIG_KEY}' is not a dict")
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        config = cls(**kept)
        problems = []
        if config.resnet_layers not in RESNET_DEPTHS:
            problems.append(f"resnet_layers {config.resnet_layers!r} (18 or 50)")
        if config.rotation_mode not in ROTATION_MODES:
            problems.append(f"rotation_mode {config.rotation_mode!r} (euler or quat)")
        for name in ('img_height', 'img_width', 'mni'):
            if not isinstance(getattr(config, name), int) or getattr(config, name) < 0:
                problems.append(f"{name} {getattr(config, name)!r} (a non-negative integer)")
        if not isinstance(config.depth_scale, (int, float)) or not config.depth_scale > 0:
            problems.append(f"depth_scale {config.depth_scale!r} (a positive number)")
        if not isinstance(config.antisymmetric_ego_pose, bool):
            problems.append(f"antisymmetric_ego_pose {config.antisymmetric_ego_pose!r} (true or false)")
        if problems:
            raise ConfigError(f"{source}: unusable saved {CONFIG_KEY}: " + '; '.join(problems))
        return config


def saved_config(checkpoint, source):
    """The :class:`ModelConfig` stored in a loaded checkpoint dict, or ``None`` (official files have none)."""
    if CONFIG_KEY not in checkpoint:
        return None
    return ModelConfig.from_dict(checkpoint[CONFIG_KEY], source)


RUN_ARGUMENTS_FILE = 'args.json'   # train.py's arguments, beside every checkpoint it writes
RUN_ARGUMENT_FIELDS = ('resnet_layers', 'rotation_mode', 'mni', 'depth_scale', 'antisymmetric_ego_pose')


def run_arguments_config(checkpoint_path):
    """The :class:`ModelConfig` of the ``train.py`` run that wrote ``checkpoint_path``, from its ``args.json``.

    For checkpoints written before ``train.py`` saved ``'model_config'``: without it such a checkpoint would
    silently load with the defaults (depth scale 1, the official EgoPoseNet) whatever its run used.
    Returns None when the checkpoint's folder holds no ``args.json`` (official files).
    Raises:
        ConfigError: an ``args.json`` that is not a JSON object, or holds unusable values.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), RUN_ARGUMENTS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            arguments = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable run arguments ({error})") from None
    if not isinstance(arguments, dict):
        raise ConfigError(f"{path}: the run arguments are not a JSON object")
    return ModelConfig.from_dict({key: arguments[key] for key in RUN_ARGUMENT_FIELDS if key in arguments}, path)


def resolve_config(saved, explicit, source=''):
    """The config to use: ``explicit`` values (flags given on the command line) over ``saved`` over defaults.

    Args:
        saved: the checkpoint's :class:`ModelConfig`, or ``None``.
        explicit: ``{field: value}`` of the flags the user gave (``None`` values are ignored).
        source: the checkpoint file, named in the warnings.
    Returns:
        ``(ModelConfig, warnings)``: one line per explicit value that differs from the saved one.
    """
    given = {key: value for key, value in explicit.items() if value is not None}
    base = saved if saved is not None else ModelConfig()
    warnings = [f"warning: {source} was trained with {key} {getattr(saved, key)!r}, using {value!r} as given"
                for key, value in given.items() if saved is not None and getattr(saved, key) != value]
    return replace(base, **given), warnings


def imagenet_initialisation(with_pretrain, weights_dir=None):
    """The ``pretrained`` argument of the networks: False, True (torch hub cache) or a function of the depth.

    Args:
        with_pretrain: ImageNet initialisation wanted.
        weights_dir: folder holding torchvision's ResNet weight files (None: the torch hub cache).
    Returns:
        ``{resnet depth: False | True | path}`` for the depths 18 and 50.
    """
    if not with_pretrain:
        return dict.fromkeys(RESNET_DEPTHS, False)
    if weights_dir is None:
        return dict.fromkeys(RESNET_DEPTHS, True)
    return {layers: os.path.join(weights_dir, os.path.basename(RESNET_WEIGHTS[layers].url)) for layers in RESNET_DEPTHS}


def build_network(kind, config, pretrained=None):
    """One network of Insta-DM for ``config``: ``kind`` is ``'disp'`` (DispResNet, which owns the object
    height prior), ``'ego'`` (EgoPoseNet) or ``'obj'`` (ObjPoseNet).

    ``pretrained``: :func:`imagenet_initialisation`'s dict (None: random initialisation).
    """
    pretrained = pretrained or dict.fromkeys(RESNET_DEPTHS, False)
    if kind == 'disp':
        return DispResNet(config.resnet_layers, pretrained[config.resnet_layers])
    if kind == 'ego':
        return EgoPoseNet(POSE_RESNET_LAYERS, pretrained[POSE_RESNET_LAYERS])
    if kind == 'obj':
        return ObjPoseNet(POSE_RESNET_LAYERS, pretrained[POSE_RESNET_LAYERS])
    raise ValueError(f"unknown network kind {kind!r} (one of {', '.join(NETWORK_KINDS)})")


def build_networks(config, pretrained=None, kinds=NETWORK_KINDS):
    """``{kind: network}`` of :func:`build_network` for each of ``kinds`` (all three by default)."""
    return {kind: build_network(kind, config, pretrained) for kind in kinds}


def print_line(line):
    """Print a line of :func:`load_trained_networks`: warnings to stderr, the rest to stdout."""
    print(line, file=sys.stderr if line.startswith('warning') else sys.stdout)


def load_trained_networks(paths, explicit, device, log=print_line):
    """Networks with the weights and the saved config of their checkpoints.

    Args:
        paths: ``{kind: checkpoint path or None}``; a kind whose path is None is built untrained (randomly
            initialised, said so through ``log``).
        explicit: ``{field: value or None}`` of the configuration flags of the command line
            (see :func:`resolve_config`).
        device: where the networks go (in eval mode).
        log: receives one line per loaded network and per warning.
    Returns:
        ``({kind: network}, ModelConfig)``.
    Raises:
        checkpoint_io.CheckpointError, ConfigError: unreadable checkpoint or config, weights that do not fit.
    """
    checkpoints = {kind: load_checkpoint(path) for kind, path in paths.items() if path}
    saved, saved_from = None, None
    for kind, checkpoint in checkpoints.items():
        config = saved_config(checkpoint, paths[kind])
        if config is None:
            config = run_arguments_config(paths[kind])
            if config is None:
                continue
            log(f"=> {paths[kind]} carries no {CONFIG_KEY}: using its run's {RUN_ARGUMENTS_FILE}")
        if saved is None:
            saved, saved_from = config, paths[kind]
        else:
            for key, value in config.as_dict().items():
                if value != getattr(saved, key):
                    log(f"warning: {paths[kind]} was trained with {key} {value!r}, {saved_from} with "
                        f"{getattr(saved, key)!r}; using {getattr(saved, key)!r}")
    config, warnings = resolve_config(saved, explicit, saved_from or '')
    for line in warnings:
        log(line)
    nets = build_networks(config, kinds=tuple(paths))
    for kind, net in nets.items():
        if kind in checkpoints:
            apply_weights(net, checkpoints[kind], paths[kind])
            log(f"=> {type(net).__name__} weights from {paths[kind]}")
        else:
            log(f"=> {type(net).__name__}: no checkpoint given, using an untrained (randomly initialised) network")
    return {kind: net.to(device).eval() for kind, net in nets.items()}, config
