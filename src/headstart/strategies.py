"""Strategies decide only three things: what is frozen, what LR each parameter group gets, and when to unfreeze.

    strat = STRATEGIES["finetune"](cfg)
    param_groups = strat.param_groups(model)     # fixed for the whole run (resume-safe), frozen ones included
    events = strat.on_epoch_start(model, epoch)  # e.g. ["unfroze group 2 (blocks.5) at lr 3e-05"]

`linear-probe` trains no network: it fits a logistic-regression head on cached features (see probe.py).
BatchNorm policy: BatchNorm layers of frozen groups always stay in eval mode, so their running statistics never
change. With bn_policy "eval-all" (default) unfrozen groups keep their pretrained statistics too (their affine
weights still train); "train-unfrozen" lets unfrozen groups update statistics. This is the Keras/fastai rule; on small data it beats updating statistics.
"""
from __future__ import annotations

import torch.nn as nn

from headstart.backbones import block_groups


def _modules_of(model, names: set[str]) -> list[nn.Module]:
    """BatchNorm modules whose parameters are all in `names`."""
    out = []
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            pnames = {f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False)}
            if pnames and pnames <= names:
                out.append(m)
    return out


class Strategy:
    name = ""
    pretrained = True
    transfer = True             # reuses pretrained weights (a rival that racing holds scratch against)
    uses_probe_head = False
    bn_policy = "train"

    def __init__(self, cfg):
        self.cfg = cfg

    def max_epochs(self) -> int:
        return self.cfg.epochs

    def patience(self) -> int:
        return self.cfg.patience

    def min_epochs(self) -> int:
        return 0

    def describe(self) -> dict:
        return {"strategy": self.name, "pretrained": self.pretrained, "bn_policy": self.bn_policy,
                "patience": self.patience(), "min_epochs": self.min_epochs()}


class FineTune(Strategy):
    """LP-FT: head starts from the linear probe; top block groups unfreeze one by one with discriminative LRs."""
    name = "finetune"
    uses_probe_head = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn_policy = cfg.bn_policy

    def lr_of(self, depth: int) -> float:
        """depth 0 = head; depth k = k-th block group below the head."""
        return self.cfg.lr_head if depth == 0 else self.cfg.lr_body * self.cfg.lr_decay ** (depth - 1)

    def param_groups(self, model) -> list[dict]:
        self.groups = block_groups(model)
        params = dict(model.named_parameters())
        for p in params.values():
            p.requires_grad_(False)
        self.trainable_depth = min(self.cfg.unfreeze_groups, len(self.groups) - 1)
        return [{"params": [params[n] for n in g], "lr": self.lr_of(d), "name": f"group{d}", "depth": d}
                for d, g in enumerate(self.groups[: self.trainable_depth + 1])]

    def unfrozen_depth(self, epoch: int) -> int:
        if self.cfg.unfreeze_every < 0:          # everything that will ever train, from the first epoch
            return self.trainable_depth
        return min(self.trainable_depth, 1 + epoch // max(1, self.cfg.unfreeze_every))

    def on_epoch_start(self, model, epoch: int) -> list[str]:
        depth = self.unfrozen_depth(epoch)
        params = dict(model.named_parameters())
        events = []
        trainable: set[str] = set()
        for d, g in enumerate(self.groups):
            on = d <= depth
            if on and not params[g[0]].requires_grad:
                events.append(f"epoch {epoch}: unfroze group {d} ({_label(g)}) at lr {self.lr_of(d):.2g}")
            for n in g:
                params[n].requires_grad_(on)
            if on:
                trainable |= set(g)
        model.train()
        for m in model.modules():       # fully frozen sub-trees run as at inference (BatchNorm, dropout)
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
        if self.bn_policy == "eval-all":
            for m in _modules_of(model, set(params)):
                m.eval()
        return events

    def describe(self) -> dict:
        return {**super().describe(), "head_init": "linear probe (LP-FT)",
                "schedule": [{"epoch": e, "unfrozen_groups": self.unfrozen_depth(e)}
                             for e in range(self.max_epochs()) if e == 0 or
                             self.unfrozen_depth(e) != self.unfrozen_depth(e - 1)],
                "lr_by_depth": {d: self.lr_of(d) for d in range(self.trainable_depth + 1)},
                "groups": [_label(g) for g in self.groups[: self.trainable_depth + 1]]}


class Scratch(Strategy):
    """Same architecture, random init, everything trains; budget >= finetune's epochs."""
    name = "scratch"
    pretrained = False
    transfer = False

    def max_epochs(self) -> int:
        return self.cfg.effective_scratch_epochs()

    def patience(self) -> int:
        return self.cfg.scratch_patience or 2 * self.cfg.patience

    def min_epochs(self) -> int:
        """A fair budget: scratch always gets at least the fine-tune budget before early stopping may end it."""
        return self.cfg.epochs

    def param_groups(self, model) -> list[dict]:
        for p in model.parameters():
            p.requires_grad_(True)
        return [{"params": list(model.parameters()), "lr": self.cfg.scratch_lr, "name": "all", "depth": 0}]

    def on_epoch_start(self, model, epoch: int) -> list[str]:
        model.train()
        return []


class Classic(Strategy):
    """No network: the modality's classic features (pixels, TF-IDF n-grams, MFCC) + logistic regression, C on val."""
    name = "classic"
    pretrained = False
    transfer = False


class LinearProbe(Strategy):
    """Backbone frozen; logistic-regression head on cached features; C chosen on the validation split."""
    name = "linear-probe"
    bn_policy = "frozen (features from the eval-mode backbone)"


def _label(names: list[str]) -> str:
    import os
    common = os.path.commonprefix([n.split(".")[:-1] for n in names])
    if common:
        return ".".join(common)
    tops = sorted({n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "") for n in names})
    return ",".join(tops)


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Classic, LinearProbe, FineTune, Scratch)}
