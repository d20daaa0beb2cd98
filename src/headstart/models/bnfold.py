"""BatchNorm layers whose statistics are frozen, folded into the convolution before them while training.

Under bn_policy "eval-all" every BatchNorm of a fine-tuned CNN runs in eval mode, so it is a per-channel affine map
y = s*x + t with s = gamma / sqrt(var + eps) and t = beta - mean * s. Folded into the preceding convolution
(weight * s, bias t) it is the same function with the same gradients for the convolution weight, gamma and beta,
but it skips one pass over the activations forward and one backward (measured on the cached Lite0 top: 15% less
time per epoch; benchmarks/README.md). Parameters, state_dict and optimizer are untouched: only the forward of
each (conv, BatchNorm) instance is replaced (which pairs: models/archs.py) for the duration of the context, and a
BatchNorm in train mode runs unfolded (checked at every call, so scratch and train-unfrozen are unaffected). A
folded BatchNorm's forward pre-hooks see its input already mapped by s and t; models/bnshift.py compares in that
space (the Gaussian KL is unchanged).

    with folded_batchnorm(model) as pairs:     # number of (conv, BatchNorm) pairs that fold when in eval mode
        fit(...)
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from headstart.models.archs import bn_pairs


def _foldable(conv, bn) -> bool:
    return (type(conv) is nn.Conv2d and conv.bias is None and type(bn) in _folded_tail() and bn.affine
            and bn.running_var is not None and bn.num_features == conv.out_channels)


def _folded_tail() -> dict:
    """BatchNorm classes that fold, each with what remains of its forward once folded (timm's BatchNormAct2d keeps
    its dropout and activation; a plain BatchNorm2d leaves nothing)."""
    from timm.layers import BatchNormAct2d
    return {BatchNormAct2d: lambda bn, x: bn.act(bn.drop(x)), nn.BatchNorm2d: lambda bn, x: x}


def fold_pairs(model) -> list[tuple[nn.Conv2d, nn.Module]]:
    out = []
    for m in model.modules():
        for c, b in bn_pairs(m).items():
            conv, bn = getattr(m, c, None), getattr(m, b, None)
            if conv is not None and bn is not None and _foldable(conv, bn):
                out.append((conv, bn))
    return out


def _patch(conv, bn) -> None:
    conv_forward, bn_forward = type(conv).forward, type(bn).forward
    tail = _folded_tail()[type(bn)]

    def conv_folded(x):
        if bn.training:
            return conv_forward(conv, x)
        s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return conv._conv_forward(x, conv.weight * s.view(-1, 1, 1, 1), bn.bias - bn.running_mean * s)

    def bn_folded(x):
        return bn_forward(bn, x) if bn.training else tail(bn, x)

    conv.forward, bn.forward = conv_folded, bn_folded
    bn.folded_into_conv = True          # BatchNorm hooks (shift.py) see s*x + t, not x, while it is eval


@contextlib.contextmanager
def folded_batchnorm(model, enabled: bool = True):
    pairs = fold_pairs(model) if enabled else []
    for conv, bn in pairs:
        _patch(conv, bn)
    try:
        yield len(pairs)
    finally:
        for conv, bn in pairs:
            del conv.forward, bn.forward, bn.folded_into_conv    # back to the classes' own forward
