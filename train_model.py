"""The model of a training run: its configuration, networks (ImageNet or checkpoint initialisation), optimiser,
and the :class:`models.InstaDM` module to train."""
import torch

import models
import precision
from checkpoint_io import load_network_weights
from projection import LossOptions


FUSED_ADAM_DEVICES = ('cpu', 'cuda')


def model_config(args, frame_hw=None):
    """The :class:`models.ModelConfig` of the run, saved in its network checkpoints.

    ``frame_hw``: the ``(height, width)`` of the training frames (None: the default size).
    """
    size = {} if frame_hw is None else {'img_height': int(frame_hw[0]), 'img_width': int(frame_hw[1])}
    return models.ModelConfig(resnet_layers=args.resnet_layers, rotation_mode=args.rotation_mode, mni=args.mni,
                              depth_scale=args.depth_scale, antisymmetric_ego_pose=args.antisymmetric_ego_pose, **size)


def build_networks(args, device, config=None):
    """The three networks, ImageNet-initialised with ``--with-pretrain 1`` and loaded from ``--pretrained-*``."""
    nets = models.build_networks(config or model_config(args),
                                 models.imagenet_initialisation(args.with_pretrain, args.imagenet_weights))
    for key, path in (('disp', args.pretrained_disp), ('ego', args.pretrained_ego_pose), ('obj', args.pretrained_obj_pose)):
        if path:
            load_network_weights(nets[key], path)
            print(f"=> {type(nets[key]).__name__} weights from {path}")
    return {key: net.to(device) for key, net in nets.items()}


def build_optimizer(args, nets):
    """Adam with the official parameter groups (height prior at a tenth of the DispResNet rate).

    On CPU and CUDA the fused Adam kernel is used: the same update (to float rounding) in one pass
    over the parameters instead of a dozen (about 50 ms less per step on a 2-core CPU).
    """
    disp = nets['disp']
    groups = []
    if args.disp_lr:
        groups += [{'params': list(disp.encoder.parameters()) + list(disp.decoder.parameters()), 'lr': args.disp_lr},
                   {'params': [disp.obj_height_prior], 'lr': args.disp_lr * 0.1}]
    if args.ego_lr:
        groups.append({'params': list(nets['ego'].parameters()), 'lr': args.ego_lr})
    if args.obj_lr:
        groups.append({'params': list(nets['obj'].parameters()), 'lr': args.obj_lr})
    device_type = nets['disp'].obj_height_prior.device.type
    return torch.optim.Adam(groups, betas=(args.momentum, args.beta), weight_decay=args.weight_decay,
                            fused=device_type in FUSED_ADAM_DEVICES)


def build_model(args, nets, device, dist_ctx):
    """The run's :class:`models.InstaDM`: networks prepared for ``--channels-last`` / ``--compile`` /
    ``--sync-bn``, wrapped in DistributedDataParallel under torchrun (the module to train)."""
    if args.sync_bn and dist_ctx.enabled:
        nets.update({key: torch.nn.SyncBatchNorm.convert_sync_batchnorm(net) for key, net in nets.items()})
    for net in nets.values():
        models.set_lean_activations(net, args.lean_activations == 'on')
    precision.prepare_networks(nets, channels_last=args.channels_last, compile_networks=args.compile)
    insta_dm = models.InstaDM(nets['disp'], nets['ego'], nets['obj'], LossOptions.from_args(args),
                              precision.NetworkPrecision.from_flags(args.amp, args.channels_last, device))
    return dist_ctx.wrap(insta_dm, device)
