"""The strategy registry: every arm of the experiment, what it is, and what it freezes and trains.

    strat = STRATEGIES["finetune"](cfg)
    plan = strat.plan(model)                      # FreezePlan: groups, trainable depth, optimizer param groups
    events = strat.on_epoch_start(model, plan, epoch)   # e.g. ["unfroze group 2 (blocks.5) at lr 3e-05"]
    STRATEGIES["scratch"].label, .color, .transfer, .runner   # what the pipeline and the report need to know

Everything the rest of headstart knows about an arm is a class attribute here (order, labels, colour, whether it
reuses pretrained weights, trains a network, needs the frozen features, how it runs and what it exports, whether a
default run includes it), so a new strategy is one class registered with `@register` (in this file, or from any
module: `tests/test_strategy_registry.py` registers a subclass and runs it), plus a runner in pipeline/arms.py only
if it is not a probe, a scikit-learn pipeline or a trained network.

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

from headstart.models.groups import block_groups, classifier_prefix


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
    default = True              # part of a run without --strategies
    adapters = False            # adds modules to the network (LoRA): BatchNorm folding and the trunk cache stay off
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

    def finish(self, model) -> dict | None:
        """After training, before the kept weights are saved and evaluated: e.g. merge adapters into the network.
        Returns tensors to save beside the weights (the adapter alone), or None."""
        return None


STRATEGIES: dict[str, type[Strategy]] = {}
ORDER: list[str] = []            # the registry's order; also the tie-break order: cheaper first
DEFAULT: list[str] = []          # what a run trains without --strategies
TRANSFER: list[str] = []
BASELINES: list[str] = []        # the from-scratch baselines, the same-network one first, then the classic ones


def register(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class to the registry (a class decorator); the lists above are updated in place, so modules
    that imported them see it."""
    if not cls.name or cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is empty or taken")
    STRATEGIES[cls.name] = cls
    _refresh()
    return cls


def unregister(name: str) -> None:
    STRATEGIES.pop(name, None)
    _refresh()


def _refresh() -> None:
    ranked = sorted(STRATEGIES, key=lambda s: (STRATEGIES[s].order, s))
    ORDER[:] = ranked
    DEFAULT[:] = [s for s in ranked if STRATEGIES[s].default]
    TRANSFER[:] = [s for s in ranked if STRATEGIES[s].transfer]
    BASELINES[:] = sorted((s for s in ranked if not STRATEGIES[s].transfer),
                          key=lambda s: not STRATEGIES[s].trains_network)


@register
class Classic(Strategy):
    """No network: the modality's classic features (pixels, TF-IDF n-grams, MFCC) + logistic regression, C on val."""
    name, label, color, order = "classic", "classic baseline (no pretraining)", "#7f7f7f", 0
    transfer = pretrained = False
    runner, exports = "sklearn", ""


@register
class LinearProbe(Strategy):
    """Backbone frozen; logistic-regression head on cached features; C chosen on the validation split."""
    name, label, short, color, order = ("linear-probe", "linear probe (frozen backbone)", "transfer: linear probe",
                                        "#1f77b4", 1)
    needs_features = True
    runner, exports = "probe", "probe-head"
    bn_policy = "frozen (features from the eval-mode backbone)"


@register
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


@register
class LoRA(Strategy):
    """Low-rank adapters (Hugging Face peft's LoRA) on every linear and 1x1-convolution layer of the frozen backbone,
    the head from the probe (as LP-FT); after training the adapters are merged into the weights, so the exported
    model is the plain architecture (and the adapter alone is kept beside the unit's weights). Not in a default run:
    --strategies linear-probe,finetune,lora."""
    name, label, short, color, order = "lora", "LoRA adapters (frozen backbone)", "transfer: LoRA", "#9467bd", 3
    trains_network = needs_features = adapters = True
    default = False
    bn_policy = "eval-all"

    def targets(self, model) -> list[str]:
        """Every nn.Linear and pointwise nn.Conv2d below the head (depthwise and spatial convolutions stay frozen)."""
        import torch
        head = classifier_prefix(model)
        return [n for n, m in model.named_modules() if n and not n.startswith(head) and (
            isinstance(m, torch.nn.Linear) or isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
            and m.groups == 1)]

    def plan(self, model) -> FreezePlan:
        from peft import LoraConfig, inject_adapter_in_model
        r = self.cfg.lora_rank
        inject_adapter_in_model(LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                           target_modules=self.targets(model)), model)
        head = set(n for n, _ in model.get_classifier().named_parameters(prefix=classifier_prefix(model)))
        params = dict(model.named_parameters())
        lora = [n for n in params if "lora_" in n]
        for n, p in params.items():
            p.requires_grad_(n in head or "lora_" in n)
        return FreezePlan([sorted(head), lora], 1, [
            {"params": [params[n] for n in sorted(head)], "lr": self.cfg.lr_head, "name": "head", "depth": 0},
            {"params": [params[n] for n in lora], "lr": self.cfg.lr_head, "name": "lora", "depth": 1}])

    def on_epoch_start(self, model, plan: FreezePlan, epoch: int) -> list[str]:
        model.train()
        for m in model.modules():       # frozen sub-trees (BatchNorm, dropout outside the adapters) as at inference
            ps = list(m.parameters())
            if ps and not any(p.requires_grad for p in ps):
                m.eval()
        return []

    def describe(self, plan: FreezePlan | None = None) -> dict:
        out = {**super().describe(), "head_init": "linear probe (LP-FT)", "lr": self.cfg.lr_head,
               "adapters": f"LoRA rank {self.cfg.lora_rank} (alpha {2 * self.cfg.lora_rank}) on every linear and "
                           "1x1 convolution, merged into the weights after training"}
        if plan is not None:
            n = sum(p.numel() for g in plan.param_groups[1:] for p in g["params"])
            out.update(adapter_params=n, adapter_mb=round(n * 4 / 2 ** 20, 3))   # float32 on disk
        return out

    def finish(self, model) -> dict:
        """Merge every adapter into its layer and put the plain layer back; returns the adapter's tensors."""
        from peft.tuners.lora import LoraLayer
        kept = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n}
        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, leaf, module.get_base_layer())
        return kept


@register
class Scratch(Strategy):
    """Same architecture, random init, everything trains; budget >= finetune's epochs."""
    name, label, short, color, order = "scratch", "from scratch (same architecture)", "from scratch", "#d62728", 4
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


NETWORK_BASELINE = BASELINES[0]          # scratch: whose curve sets the default label target
PROBE_FIRST, FINETUNE_FIRST = LinearProbe.name, FineTune.name    # what the assessment may advise trying first


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
