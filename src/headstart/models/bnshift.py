"""Domain shift from the source data, measured without the source data.

Vision: every BatchNorm layer stores the running mean/variance of its input over the source training set. Feeding
the target images and comparing per channel gives a shift profile by depth: shift in early layers means low-level
statistics differ (X-rays, satellite, digits); shift only near the top means new semantics on familiar pixels.

    with BatchNormShift(model, include=mask) as bn:   # during the (one) feature-extraction pass
        feats = embed(...)
    profile = bn.profile()                            # per layer: mean over channels of KL(target || source)

Text and speech evidence (tokenizer fit, signal facts) lives with their modalities (modalities/text.py, audio.py).
"""
from __future__ import annotations

import numpy as np
import torch

from headstart.models.device import to_numpy


def gaussian_kl(mu_t, var_t, mu_s, var_s, eps=1e-5) -> np.ndarray:
    """KL(N(mu_t, var_t) || N(mu_s, var_s)) per channel; 0 when the target matches the stored statistics."""
    var_t, var_s = np.asarray(var_t) + eps, np.asarray(var_s) + eps
    return 0.5 * (np.log(var_s / var_t) + (var_t + (np.asarray(mu_t) - mu_s) ** 2) / var_s - 1.0)


class BatchNormShift:
    """Forward pre-hooks on every BatchNorm layer accumulating per-channel sums of its input, only for the samples
    where `include` is true (batches are assumed to arrive in dataset order, as in the embedding pass)."""

    def __init__(self, model, include: np.ndarray | None = None):
        self.model, self.include = model, include
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       and m.running_mean is not None]
        self.sums = {n: [0.0, 0.0, 0] for n, _ in self.layers}
        self.seen, self.mask, self.handles, self.folded = 0, None, [], {}

    def __enter__(self):
        first = self.layers[0][0] if self.layers else None
        for name, mod in self.layers:
            self.handles.append(mod.register_forward_pre_hook(self._hook(name, name == first)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []

    def _hook(self, name: str, first: bool):
        def hook(mod, args):
            x = args[0]
            if first:                      # a new batch starts at the first BatchNorm layer
                b = x.shape[0]
                sel = np.ones(b, bool) if self.include is None else self.include[self.seen: self.seen + b]
                # row indices on the activations' device (a boolean mask needs a data-dependent nonzero)
                self.mask, self.seen = torch.from_numpy(np.flatnonzero(sel)).to(x.device), self.seen + b
            if not len(self.mask):
                return
            self.folded[name] = getattr(mod, "folded_into_conv", False) and not mod.training
            # per (sample, channel) first and second moments, pooled over samples in float64. Large maps are read
            # at every other row and column: a quarter of the cost, and still >= 196 positions per image
            while x.dim() == 4 and min(x.shape[2:]) >= 28:
                x = x[:, :, ::2, ::2]
            # one float copy laid out (sample, position, channel): reducing over positions is then a contiguous
            # sweep (2-3x faster than reducing a channels-last map over its spatial dims)
            xf = (x.permute(0, 2, 3, 1) if x.dim() == 4 else x.unsqueeze(-1).transpose(1, -1)).float().contiguous()
            xf = xf.view(xf.shape[0], -1, xf.shape[-1])
            mean = xf.mean(1).index_select(0, self.mask).double()
            sq = (xf * xf).mean(1).index_select(0, self.mask).double()
            acc = self.sums[name]
            acc[0] = acc[0] + to_numpy(mean.sum(0), np.float64)
            acc[1] = acc[1] + to_numpy(sq.sum(0), np.float64)
            acc[2] += int(mean.shape[0])
        return hook

    def profile(self) -> list[dict]:
        out = []
        for name, mod in self.layers:
            s, s2, cnt = self.sums[name]
            if not cnt:
                continue
            mu = s / cnt
            var = np.maximum(s2 / cnt - mu ** 2, 0.0)
            mu_s, var_s, eps = to_numpy(mod.running_mean, np.float64), to_numpy(mod.running_var, np.float64), 1e-5
            if self.folded.get(name):   # bnfold: the hook saw s*x + t; map the source there too (same KL)
                w, b = to_numpy(mod.weight, np.float64), to_numpy(mod.bias, np.float64)
                sc = w / np.sqrt(var_s + mod.eps)
                mu_s, var_s, eps = sc * mu_s + (b - mu_s * sc), sc * sc * var_s, np.maximum(sc * sc, 1e-12) * eps
            kl = gaussian_kl(mu, var, mu_s, var_s, eps)
            out.append({"layer": name, "channels": int(len(mu)), "kl": float(np.mean(kl))})
        return out


def summarize_profile(profile: list[dict]) -> dict:
    """Early / middle / late thirds of the BatchNorm layers by depth (median KL of each third)."""
    kl = np.array([p["kl"] for p in profile])
    if not len(kl):
        return {}
    thirds = np.array_split(kl, 3)
    early, middle, late = (float(np.median(t)) if len(t) else float("nan") for t in thirds)
    return {"early": early, "middle": middle, "late": late, "layers": len(kl)}
