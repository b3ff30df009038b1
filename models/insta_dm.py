"""InstaDM: the three networks and the object height prior as one module whose forward is the training step."""
import torch.nn as nn

import projection  # a module import: projection itself imports models (depth_from_disparity)
from precision import NetworkPrecision


class InstaDM(nn.Module):
    """DispResNet, EgoPoseNet and ObjPoseNet; the learnable object height prior is DispResNet's
    ``obj_height_prior``, as in the official checkpoints.

    ``forward`` runs one training step's objective (:func:`projection.run_step`) and returns its
    :class:`projection.StepOutputs`; ``outputs.total`` is the loss to back-propagate.  Because every
    parameter is used inside this one ``forward`` (the height prior included), the module can be wrapped
    in ``DistributedDataParallel`` as a whole.  The checkpoints stay one file per network, so the official
    checkpoints keep loading strictly into ``disp_net``, ``ego_pose_net`` and ``obj_pose_net``.
    """

    def __init__(self, disp_net, ego_pose_net, obj_pose_net, options=None, precision=NetworkPrecision()):
        super().__init__()
        self.disp_net = disp_net
        self.ego_pose_net = ego_pose_net
        self.obj_pose_net = obj_pose_net
        self.options = options or projection.LossOptions()
        self.precision = precision

    def forward(self, tgt_img, ref_imgs, K, tgt_insts, ref_insts) -> 'projection.StepOutputs':
        """One step's objective.

        Args:
            tgt_img: ``[B,3,H,W]`` normalised target; ref_imgs: list of R ``[B,3,H,W]``.
            K: ``[B,3,3]`` intrinsics.
            tgt_insts, ref_insts: lists of R ``[B,1+M,H,W]`` matched instance tensors.
        """
        return projection.run_step(self.disp_net, self.ego_pose_net, self.obj_pose_net, tgt_img, ref_imgs, K,
                                   tgt_insts, ref_insts, self.options, self.precision)
