"""Lean backward passes: the kernels of PyTorch's autograd, fewer tensors kept between forward and backward.

Three compositions in the networks make autograd keep a tensor that the backward pass can recompute
cheaply from another tensor it keeps anyway:

* batch norm -> ReLU -> convolution (the first half of every ResNet block): autograd keeps the batch norm's
  input *and* the ReLU's output (for the ReLU and the convolution's weight gradient).
  :func:`batch_norm_relu_conv` keeps only the input and recomputes the ReLU's output in the backward pass.
* batch norm -> ReLU -> max pool (the ResNet stem): autograd keeps the batch norm's input, the ReLU's output
  (4 bytes a value) and the pool's indices; :func:`batch_norm_relu_max_pool` keeps the input, the indices and
  where the ReLU passed (1 byte a value), which is all the backward pass reads.
* reflection pad -> convolution (DispResNet's decoder): autograd keeps the padded copy for the convolution and
  the unpadded input for the pad's backward pass; :func:`reflection_pad_conv` keeps only the unpadded input
  (which the ELU before it keeps anyway) and pads it again in the backward pass.

The forward pass calls the same ATen kernels as the modules, and the backward pass the same backward kernels
on the recomputed values, which the CPU batch-norm kernel's own formula (``y * alpha + beta`` from the batch
statistics of the forward pass) gives bit for bit on the hosts we tested; outputs, gradients and batch-norm
running statistics equal PyTorch's autograd (``tests/test_lean_ops.py``: bit for bit for the outputs and the
running statistics, to float rounding for the gradients).  The price is the recomputation, one multiply-add and
ReLU or one pad per block or decoder convolution: elementwise work next to the convolutions.

:func:`lean_enabled` decides per call: only while a module trains with gradients on, on the CPU in float32
(autocast, ``torch.compile`` and CUDA keep PyTorch's modules: cuDNN's batch norm is a different kernel), and
the encoders use it only with plain batch norms (:func:`plain_batch_norm`: not under ``--sync-bn``).
Each network module that can run lean holds a ``lean_activations`` attribute (default False, PyTorch's modules as
they are); :func:`set_lean_activations` sets it (``train.py --lean-activations on``).
"""
import torch
from torch.nn.modules.utils import _pair

aten = torch.ops.aten


def lean_enabled(module, x):
    """Whether ``module`` (holding ``lean_activations``) should run its lean path on input ``x``."""
    return (getattr(module, 'lean_activations', False) and module.training and torch.is_grad_enabled()
            and x.device.type == 'cpu' and x.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
            and not torch.compiler.is_compiling())


def plain_batch_norm(bn):
    """Whether ``bn`` is an ``nn.BatchNorm2d`` the lean path may replace (a ``SyncBatchNorm``, ``--sync-bn``,
    gathers its statistics over the processes: it runs as it is)."""
    return type(bn) is torch.nn.BatchNorm2d


def set_lean_activations(module, enabled):
    """Set ``lean_activations`` on every submodule of ``module`` that has the attribute."""
    for sub in module.modules():
        if hasattr(sub, 'lean_activations'):
            sub.lean_activations = bool(enabled)


def _batch_norm_factor(bn):
    """Count a training batch in ``bn`` as ``nn.BatchNorm2d.forward`` does; the running-average factor."""
    if not bn.track_running_stats:
        return 0.0
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def _normalise_relu(y, weight, bias, eps, running_mean, running_var, factor):
    """``relu(batch_norm(y))`` in training mode (batch statistics) -> ``(z, mean, invstd)``."""
    normed, mean, invstd = aten.native_batch_norm(y, weight, bias, running_mean, running_var, True, factor, eps)
    return normed.relu_(), mean, invstd


def _renormalise_relu(y, weight, bias, mean, invstd):
    """``relu(batch_norm(y))`` again in the backward pass from the forward pass's batch statistics: the CPU
    kernel's own ``y * alpha + beta`` with ``alpha = invstd * weight``, ``beta = bias - mean * alpha``."""
    alpha = invstd * weight
    beta = bias - mean * alpha
    shape = (1, -1) + (1,) * (y.dim() - 2)
    return torch.addcmul(beta.reshape(shape), y, alpha.reshape(shape)).relu_()


def _batch_norm_backward(grad_normed, y, weight, mean, invstd, eps):
    """Gradients ``(y, weight, bias)`` of a training-mode batch norm of ``y`` from the gradient of its output."""
    return aten.native_batch_norm_backward(grad_normed, y, weight, None, None, mean, invstd, True, eps,
                                           [True, True, True])


class _BatchNormReLUConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, bn_weight, bn_bias, running_mean, running_var, factor, eps, conv_weight, conv_args):
        z, mean, invstd = _normalise_relu(y, bn_weight, bn_bias, eps, running_mean, running_var, factor)
        ctx.save_for_backward(y, bn_weight, bn_bias, mean, invstd, conv_weight)
        ctx.eps, ctx.conv_args = eps, conv_args
        return aten.convolution(z, conv_weight, None, *conv_args)

    @staticmethod
    def backward(ctx, grad_out):
        y, bn_weight, bn_bias, mean, invstd, conv_weight = ctx.saved_tensors
        z = _renormalise_relu(y, bn_weight, bn_bias, mean, invstd)
        grad_z, grad_conv_weight, _ = aten.convolution_backward(grad_out, z, conv_weight, None, *ctx.conv_args,
                                                                [True, True, False])
        grad_y, grad_bn_weight, grad_bn_bias = _batch_norm_backward(aten.threshold_backward(grad_z, z, 0), y,
                                                                    bn_weight, mean, invstd, ctx.eps)
        return grad_y, grad_bn_weight, grad_bn_bias, None, None, None, None, grad_conv_weight, None


class _BatchNormReLUMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, bn_weight, bn_bias, running_mean, running_var, factor, eps, pool_args):
        z, mean, invstd = _normalise_relu(y, bn_weight, bn_bias, eps, running_mean, running_var, factor)
        pooled, indices = aten.max_pool2d_with_indices(z, *pool_args)
        ctx.save_for_backward(y, bn_weight, mean, invstd, indices, z > 0)
        ctx.eps, ctx.pool_args = eps, pool_args
        ctx.set_materialize_grads(False)
        return z, pooled

    @staticmethod
    def backward(ctx, grad_z, grad_pooled):
        y, bn_weight, mean, invstd, indices, positive = ctx.saved_tensors
        if grad_pooled is not None:
            # the pool's backward reads only the shape and layout of its input: y has those of z
            through_pool = aten.max_pool2d_with_indices_backward(grad_pooled, y, *ctx.pool_args, indices)
            grad_z = through_pool if grad_z is None else grad_z + through_pool
        if grad_z is None:
            return (None,) * 8
        grad_normed = grad_z * positive   # ReLU's backward from its one-byte mask (a NaN gradient stays NaN)
        return _batch_norm_backward(grad_normed, y, bn_weight, mean, invstd, ctx.eps) + (None,) * 5


class _ReflectionPadConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, padding, weight, bias, conv_args):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.conv_args, ctx.has_bias = padding, conv_args, bias is not None
        return aten.convolution(aten.reflection_pad2d(x, padding), weight, bias, *conv_args)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        padded = aten.reflection_pad2d(x, ctx.padding)
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        grad_padded, grad_weight, grad_bias = aten.convolution_backward(
            grad_out, padded, weight, bias_sizes, *ctx.conv_args, [True, True, ctx.has_bias])
        grad_x = aten.reflection_pad2d_backward(grad_padded, x, ctx.padding)
        return grad_x, None, grad_weight, grad_bias if ctx.has_bias else None, None


def _conv_args(conv):
    """The positional arguments of ``aten.convolution`` after ``(input, weight, bias)`` for ``conv``."""
    if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
        raise ValueError(f"lean path supports numeric zero padding only, not {conv.padding!r}/{conv.padding_mode}")
    return [list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups]


def batch_norm_relu_conv(y, bn, conv):
    """``conv(relu(bn(y)))`` for a training ``nn.BatchNorm2d`` (updates its running statistics) and a bias-free
    ``nn.Conv2d``; keeps only ``y`` for the backward pass."""
    factor = _batch_norm_factor(bn)
    return _BatchNormReLUConv.apply(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps,
                                    conv.weight, _conv_args(conv))


def batch_norm_relu_max_pool(y, bn, pool):
    """``(z, pool(z))`` with ``z = relu(bn(y))`` for a training ``nn.BatchNorm2d`` and an ``nn.MaxPool2d``;
    keeps only ``y`` for the backward pass (``z`` lives as long as the caller holds it)."""
    factor = _batch_norm_factor(bn)
    pool_args = [list(_pair(value)) for value in (pool.kernel_size, pool.stride, pool.padding, pool.dilation)] \
        + [pool.ceil_mode]
    return _BatchNormReLUMaxPool.apply(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps,
                                       pool_args)


def reflection_pad_conv(x, pad, conv):
    """``conv(pad(x))`` for an ``nn.ReflectionPad2d`` and an ``nn.Conv2d``; keeps ``x``, not the padded copy."""
    return _ReflectionPadConv.apply(x, list(pad.padding), conv.weight, conv.bias, _conv_args(conv))


def basic_block(block, x):
    """torchvision ``BasicBlock.forward`` with its first batch norm -> ReLU -> convolution kept lean."""
    out = block.bn2(batch_norm_relu_conv(block.conv1(x), block.bn1, block.conv2))
    out += x if block.downsample is None else block.downsample(x)
    return block.relu(out)


def bottleneck(block, x):
    """torchvision ``Bottleneck.forward`` with both batch norm -> ReLU -> convolution compositions kept lean."""
    out = batch_norm_relu_conv(block.conv1(x), block.bn1, block.conv2)
    out = block.bn3(batch_norm_relu_conv(out, block.bn2, block.conv3))
    out += x if block.downsample is None else block.downsample(x)
    return block.relu(out)
