"""The strategy registry: every arm of the experiment, what it is, and what it freezes and trains.

    strat = STRATEGIES["finetune"](cfg)
    plan = strat.plan(model)                      # FreezePlan: groups, trainable depth, optimizer param groups
    events = strat.on_epoch_start(model, plan, epoch)   # e.g. ["unfroze group 2 (blocks.5) at lr 3e-05"]
    STRATEGIES["scratch"].label, .color, .transfer, .runner   # what the pipeline and the report need to know

Everything the rest of headstart knows about an arm is a class attribute here (order, labels, colour, whether it
reuses pretrained weights, trains a network, needs the frozen features, how it runs and what it exports), so a new
strategy is one class in this file (plus a runner in pipeline/arms.py if it is not a probe, a scikit-learn pipeline or a trained network).

Hooks, in the order the training loop (training/loop.py) calls them: `plan(model)` once, before the optimizer is
built (freezes everything and returns the groups that will ever train, each with its LR); then
`on_epoch_start(model, plan, epoch)` before epoch 0's starting-weights validation pass and before every epoch
(sets requires_grad and train/eval modes; idempotent); `describe(plan)` for the report. A plan is returned, never
stored on the strategy.

BatchNorm policy: BatchNorm layers of frozen groups always stay in eval mode, so their running statistics never
change. With bn_policy "eval-all" (default) unfrozen groups keep their pretrained statistics too (their affine
weights still train); "train-unfrozen" lets unfrozen groups update statistics. This is the Keras/fastai rule; on
small data it beats updating statistics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from headstart.models.groups import block_groups


@dataclass(frozen=True)
class FreezePlan:
    groups: list[list[str]]          # parameter names from the head down: [head], [top block group], ..., [stem]
    trainable_depth: int             # groups 0..trainable_depth train at some point; the rest never do
    param_groups: list[dict]         # optimizer groups (frozen ones included, so resuming keeps the same groups)

    def trainable_names(self) -> list[str]:
        return [n for g in self.groups[: self.trainable_depth + 1] for n in g]


class Strategy:
    name = ""
    label = ""                  # the report's name for it
    short = ""                  # its name in the scratch-vs-transfer cost table
    color = "#000000"           # its colour in every plot
    order = 0                   # listing order and the tie-break among equal validation scores (cheaper first)
    transfer = True             # reuses pretrained weights: a transfer arm (else a from-scratch baseline)
    pretrained = True           # its network starts from the pretrained weights
    trains_network = False      # runs the training loop (else: a fitted head or a scikit-learn pipeline)
    needs_features = False      # reads the frozen feature pass (probe, or the probe's head for LP-FT)
    runner = "trained"          # how pipeline/arms.py runs it: "trained" | "probe" | "sklearn"
    exports = "network"         # what model/ holds if it wins: "network" | "probe-head" | "" (not exportable)
    raced = False               # racing may stop it once its curve cannot reach the transfer arms
    progressive = False         # random-init training: small inputs first where the modality has a size to grow
    bn_policy = "train"

    def __init__(self, cfg):
        self.cfg = cfg

    def max_epochs(self) -> int:
        return self.cfg.epochs

    def patience(self) -> int:
        return self.cfg.patience

    def min_epochs(self) -> int:
        return 0

    def plan(self, model) -> FreezePlan:
        raise NotImplementedError(f"{self.name} trains no network")

    def on_epoch_start(self, model, plan: FreezePlan, epoch: int) -> list[str]:
        raise NotImplementedError(f"{self.name} trains no network")

    def describe(self, plan: FreezePlan | None = None) -> dict:
        return {"strategy": self.name, "pretrained": self.pretrained, "bn_policy": self.bn_policy,
                "patience": self.patience(), "min_epochs": self.min_epochs()}


class Classic(Strategy):
    """No network: the modality's classic features (pixels, TF-IDF n-grams, MFCC) + logistic regression, C on val."""
    name, label, color, order = "classic", "classic baseline (no pretraining)", "#7f7f7f", 0
    transfer = pretrained = False
    runner, exports = "sklearn", ""


class LinearProbe(Strategy):
    """Backbone frozen; logistic-regression head on cached features; C chosen on the validation split."""
    name, label, short, color, order = ("linear-probe", "linear probe (frozen backbone)", "transfer: linear probe",
                                        "#1f77b4", 1)
    needs_features = True
    runner, exports = "probe", "probe-head"
    bn_policy = "frozen (features from the eval-mode backbone)"


class FineTune(Strategy):
    """LP-FT: head starts from the linear probe; top block groups unfreeze one by one with discriminative LRs."""
    name, label, short, color, order = "finetune", "fine-tune (LP-FT)", "transfer: fine-tune", "#2ca02c", 2
    trains_network = needs_features = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.bn_policy = cfg.bn_policy

    def lr_of(self, depth: int) -> float:
        """depth 0 = head; depth k = k-th block group below the head."""
        return self.cfg.lr_head if depth == 0 else self.cfg.lr_body * self.cfg.lr_decay ** (depth - 1)

    def plan(self, model) -> FreezePlan:
        groups = block_groups(model)
        params = dict(model.named_parameters())
        for p in params.values():
            p.requires_grad_(False)
        depth = min(self.cfg.unfreeze_groups, len(groups) - 1)
        return FreezePlan(groups, depth, [{"params": [params[n] for n in g], "lr": self.lr_of(d),
                                           "name": f"group{d}", "depth": d} for d, g in enumerate(groups[: depth + 1])])

    def unfrozen_depth(self, plan: FreezePlan, epoch: int) -> int:
        if self.cfg.unfreeze_every < 0:          # everything that will ever train, from the first epoch
            return plan.trainable_depth
        return min(plan.trainable_depth, 1 + epoch // max(1, self.cfg.unfreeze_every))

    def on_epoch_start(self, model, plan: FreezePlan, epoch: int) -> list[str]:
        depth = self.unfrozen_depth(plan, epoch)
        params = dict(model.named_parameters())
        events = []
        for d, g in enumerate(plan.groups):
            on = d <= depth
            if on and not params[g[0]].requires_grad:
                events.append(f"epoch {epoch}: unfroze group {d} ({group_label(g)}) at lr {self.lr_of(d):.2g}")
            for n in g:
                params[n].requires_grad_(on)
        model.train()
        for m in model.modules():       # fully frozen sub-trees run as at inference (BatchNorm, dropout)
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
        if self.bn_policy == "eval-all":
            for m in _batchnorms_of(model, set(params)):
                m.eval()
        return events

    def describe(self, plan: FreezePlan | None = None) -> dict:
        out = {**super().describe(), "head_init": "linear probe (LP-FT)"}
        if plan is not None:
            out.update(schedule=[{"epoch": e, "unfrozen_groups": self.unfrozen_depth(plan, e)}
                                 for e in range(self.max_epochs()) if e == 0 or
                                 self.unfrozen_depth(plan, e) != self.unfrozen_depth(plan, e - 1)],
                       lr_by_depth={d: self.lr_of(d) for d in range(plan.trainable_depth + 1)},
                       groups=[group_label(g) for g in plan.groups[: plan.trainable_depth + 1]])
        return out


class Scratch(Strategy):
    """Same architecture, random init, everything trains; budget >= finetune's epochs."""
    name, label, short, color, order = "scratch", "from scratch (same architecture)", "from scratch", "#d62728", 3
    transfer = pretrained = False
    trains_network = raced = progressive = True

    def max_epochs(self) -> int:
        return self.cfg.effective_scratch_epochs()

    def patience(self) -> int:
        return self.cfg.scratch_patience or 2 * self.cfg.patience

    def min_epochs(self) -> int:
        """A fair budget: scratch always gets at least the fine-tune budget before early stopping may end it."""
        return self.cfg.epochs

    def plan(self, model) -> FreezePlan:
        names = [n for n, _ in model.named_parameters()]
        for p in model.parameters():
            p.requires_grad_(True)
        return FreezePlan([names], 0, [{"params": list(model.parameters()), "lr": self.cfg.scratch_lr, "name": "all",
                                        "depth": 0}])

    def on_epoch_start(self, model, plan: FreezePlan, epoch: int) -> list[str]:
        model.train()
        return []


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in sorted(Strategy.__subclasses__(), key=lambda s: s.order)}
ORDER = list(STRATEGIES)                 # the registry's order; also the tie-break order: cheaper first
TRANSFER = [s for s, c in STRATEGIES.items() if c.transfer]
# the from-scratch baselines, the same-network one first (the controlled comparison), then the classic ones
BASELINES = sorted((s for s, c in STRATEGIES.items() if not c.transfer), key=lambda s: not STRATEGIES[s].trains_network)
NETWORK_BASELINE = BASELINES[0]          # scratch: whose curve sets the default label target


def _batchnorms_of(model, names: set[str]) -> list:
    """BatchNorm modules whose parameters are all in `names`."""
    import torch.nn as nn
    out = []
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            pnames = {f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False)}
            if pnames and pnames <= names:
                out.append(m)
    return out


def group_label(names: list[str]) -> str:
    common = os.path.commonprefix([n.split(".")[:-1] for n in names])
    if common:
        return ".".join(common)
    tops = sorted({n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "") for n in names})
    return ",".join(tops)
