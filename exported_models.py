"""Deployable copies of the networks: ONNX and TorchScript export, verification, ONNX Runtime inference.

Every exported network has a dynamic batch axis and a fixed image size (the one it was exported
at; height and width are multiples of 32).  Inputs are images normalised as in training
(``[B,3,H,W]``, mean 0.5, std 0.5: range -1..1).

| network | inputs | output |
|---|---|---|
| DispResNet | ``image [B,3,H,W]`` | ``disparity [B,1,H,W]`` (depth = 1 / disparity) |
| EgoPoseNet | ``image1, image2 [B,3,H,W]`` | ``pose [B,6]`` (tx, ty, tz, rx, ry, rz), image1 -> image2 |
| ObjPoseNet | ``image1, image2 [B,3,H,W]`` | ``translation [B,3]`` |

    export_onnx(net, 'dispnet.onnx', example_inputs, ['image'], ['disparity'])   # checked by onnx.checker
    export_torchscript(net, 'dispnet.pt', example_inputs)
    difference = compare_outputs(net, OnnxNetwork('dispnet.onnx'), inputs)      # max abs / relative difference
"""
import os
import secrets
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime
import torch

ONNX_OPSET = 18
RELATIVE_TOLERANCE = 1e-4
NETWORK_IO = {  # file stem: (input names, output name)
    'dispnet': (('image',), 'disparity'),
    'ego_pose': (('image1', 'image2'), 'pose'),
    'obj_pose': (('image1', 'image2'), 'translation'),
}


class ExportError(ValueError):
    """An export that failed or did not reproduce PyTorch, or an unusable exported file (one line)."""


class Difference(NamedTuple):
    """Largest difference between the exported network's and PyTorch's outputs."""

    max_abs: float
    max_reference: float  # largest |PyTorch output|, the scale of the relative difference

    @property
    def relative(self):
        return self.max_abs / max(self.max_reference, 1e-12)


def temporary_path(path):
    """A hidden temporary file name next to ``path`` (the export is moved into place once verified)."""
    path = Path(path)
    return path.with_name(f'.{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}')


def export_onnx(net, path, example_inputs, input_names, output_name, opset=ONNX_OPSET):
    """Export ``net`` (eval mode) to one ONNX file (weights inside) with a dynamic batch axis.

    The graph is checked with ``onnx.checker`` (full check, shape inference included).

    Args:
        net: the network; example_inputs: tuple of ``[B,3,H,W]`` tensors with ``B >= 2`` (a batch of 1
            would be specialised); input_names: one name per input; output_name: name of the output.
    Raises:
        ExportError: the exporter or the checker failed (one line).
    """
    batch = torch.export.Dim('batch')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(net.eval(), tuple(example_inputs), str(path), input_names=list(input_names),
                              output_names=[output_name], opset_version=opset, dynamo=True, verbose=False,
                              external_data=False, dynamic_shapes=tuple({0: batch} for _ in example_inputs))
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # the exporter and the checker raise many types
        raise ExportError(f"{path}: ONNX export failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})") \
            from None


def export_torchscript(net, path, example_inputs):
    """Trace ``net`` (eval mode) to TorchScript and save it to ``path`` (batch size stays free)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit is deprecated in favour of torch.export, still what LibTorch loads
        traced = torch.jit.trace(net.eval(), tuple(example_inputs))
        torch.jit.save(traced, str(path))


def load_torchscript(path):
    """A saved TorchScript module, on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return torch.jit.load(str(path), map_location='cpu')


class OnnxNetwork:
    """An exported network run by ONNX Runtime, called like the PyTorch one.

    ``net(*inputs)`` takes ``[B,3,H,W]`` tensors (any device) and returns the output as a tensor
    on the device of the first input.  ``image_hw`` is the ``(H, W)`` the model was exported at.
    """

    def __init__(self, path, threads=0):
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: ONNX model not found")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ExportError(f"{path}: not a loadable ONNX model ({str(exc).strip().splitlines()[0]})") from None
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        shape = self.session.get_inputs()[0].shape
        self.image_hw = tuple(shape[2:4]) if len(shape) == 4 else None

    def __call__(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise ExportError(f"{self.path}: takes {len(self.input_names)} input(s) {self.input_names}, "
                              f"got {len(inputs)}")
        feeds = {name: x.detach().float().cpu().numpy() for name, x in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run(None, feeds)[0]).to(inputs[0].device)

    def check_image_size(self, height, width):
        """One-line ExportError when the model was exported for another image size."""
        if self.image_hw is not None and tuple(self.image_hw) != (height, width):
            raise ExportError(f"{self.path}: exported for {self.image_hw[0]}x{self.image_hw[1]} (HxW) images, "
                              f"asked for {height}x{width}: give --img-height {self.image_hw[0]} "
                              f"--img-width {self.image_hw[1]} or export again")


@torch.inference_mode()
def compare_outputs(reference, exported, inputs):
    """Largest difference between ``exported(*inputs)`` and ``reference(*inputs)``: a :class:`Difference`."""
    expected = reference(*inputs).double()
    actual = exported(*inputs).double()
    if actual.shape != expected.shape:
        raise ExportError(f"exported output has shape {list(actual.shape)}, PyTorch's {list(expected.shape)}")
    return Difference(float((actual - expected).abs().max()), float(expected.abs().max()))


def check_difference(name, difference, tolerance=RELATIVE_TOLERANCE):
    """ExportError when the relative difference exceeds ``tolerance``."""
    if not np.isfinite(difference.relative) or difference.relative > tolerance:
        raise ExportError(f"{name}: exported model differs from PyTorch by {difference.max_abs:.3g} "
                          f"({difference.relative:.3g} relative > {tolerance:g}): refused")
