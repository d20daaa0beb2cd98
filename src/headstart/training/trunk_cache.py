"""Partial fine-tuning without recomputing the frozen trunk: cache its output once, train only the top.

When only the top block groups train (and frozen BatchNorm layers run in eval mode, the default policy), the
frozen trunk is a fixed function of its input. So for K augmented views of every training image (and the centre
crop of every validation image) the input of the first trainable block is computed once and stored (bfloat16 with
the bf16 feature dtype, else float32);
each epoch then runs only the trainable top on a randomly chosen stored view.

    k = trunk_split(model, plan, "eval-all")       # first trainable stage index, or None (cannot cache)
    with CachedTrunk(modality, ctx.inputs, split, model, k, views=4) as ct:
        fit(..., ct.train_ds, ct.val_ds, batch_fn=ct.batch_fn)     # model.forward runs only the top meanwhile

The difference from uncached training: augmentation is limited to K views per image (reported in the results).
Which modules form the stem, the stages and the neck comes from models/archs.py, so any architecture listed there
(EfficientNet, ResNet) gets the cache; others train uncached.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from headstart.modalities.base import sample_batch
from headstart.models.archs import arch_meta, stages
from headstart.models.device import bf16_autocast, loader_kwargs, model_device, to_device
from headstart.models.groups import classifier_prefix
from headstart.training.costs import flops_per_item

MAX_CACHE_GIB = 4.0


def trunk_split(model, plan, bn_policy: str) -> int | None:
    """Index of the first stage that will ever train, if everything below it stays frozen (and frozen BatchNorms
    run in eval mode); else None."""
    meta = arch_meta(model)
    if meta is None or plan is None or bn_policy != "eval-all":
        return None
    st = [prefix for prefix, _ in stages(model)]
    top = tuple(f"{n}." for n in meta.neck) + (classifier_prefix(model) + ".",)
    idx, below = [], []
    for n in plan.trainable_names():
        k = next((i for i, prefix in enumerate(st) if n.startswith(prefix)), None)
        if k is not None:
            idx.append(k)
        elif not n.startswith(top):
            below.append(n)
    if below or not idx or min(idx) == 0:
        return None
    return min(idx)


class _Views(Dataset):
    def __init__(self, acts: torch.Tensor, labels: list[int], views: int):
        self.acts, self.labels, self.views = acts, labels, views       # acts: (n * views, C, H, W)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        v = int(torch.randint(self.views, (1,))) if self.views > 1 else 0   # seeded by the loop's seed
        return self.acts[i * self.views + v], self.labels[i]

    @property
    def on_device(self) -> bool:
        return self.acts.device.type != "cpu"


class CachedTrunk:
    """Context manager: builds the caches, patches model.forward to the top part, restores it on exit."""

    def __init__(self, modality, data, split: dict, model, k: int, views: int, batch_size: int = 64,
                 dtype: str = "float32"):
        """modality + data (modalities/base.Inputs): how items become model inputs; split: train/val indices."""
        self.mod, self.data, self.split = modality, data, split
        self.model, self.k, self.views, self.batch_size = model, k, views, batch_size
        self.stage_name = stages(model)[k][0].rstrip(".")     # the first stage that trains, e.g. blocks.5
        self.bf16 = dtype == "bfloat16"      # autocast the trunk pass (CPUs/GPUs with native bf16), store bf16
        self.store = torch.bfloat16 if self.bf16 else torch.float32

    def _trunk(self, x):
        m, meta = self.model, arch_meta(self.model)
        for name in meta.stem:
            x = getattr(m, name)(x)
        for _, stage in stages(m)[: self.k]:
            x = stage(x)
        return x

    def _top(self, h):
        # float32 even when the trunk pass ran in bf16: on the CPU, bf16 autocast made the top's
        # forward+backward slower (1.46 vs 1.30 s per hymenoptera epoch), only the forward-only trunk pass gains
        m, meta = self.model, arch_meta(self.model)
        h = h.to(next(m.parameters()).dtype).contiguous(memory_format=torch.channels_last)
        for _, stage in stages(m)[self.k:]:
            h = stage(h)
        for name in meta.neck:
            h = getattr(m, name)(h)
        return m.forward_head(h)

    @torch.inference_mode()
    def _encode(self, indices, train: bool, views: int) -> torch.Tensor:
        from torch.utils.data import DataLoader
        mod, data = self.mod, self.data
        batch_fn = mod.batch_fn(data)
        out = []
        self.model.eval()
        device = model_device(self.model)
        for _ in range(views):            # view v of every item, in order; interleaved below
            ds = mod.dataset(data, indices, train=train)
            with bf16_autocast(device, self.bf16):
                out.append(torch.cat([self._trunk(batch_fn(to_device(x, device))).to(self.store)
                                      for x, _ in DataLoader(ds, batch_size=self.batch_size,
                                                                **loader_kwargs(device, 0, getattr(ds, "streamed", False)))]))
        acts = torch.stack(out, 1)        # (n, views, C, H, W)
        # channels-last, as the trunk made them: the top's convolutions run ~25% faster on it than on NCHW
        # (the depthwise weight gradient most of all)
        return acts.reshape(-1, *acts.shape[2:]).contiguous(memory_format=torch.channels_last)

    def estimate_gib(self, n_items: int) -> float:
        self.model.eval()
        with torch.inference_mode():
            x = to_device(sample_batch(self.mod, self.data, self.split["val"], False, n=1), self.model)
            per = self._trunk(x).numel() * self.store.itemsize
        return per * n_items / 2 ** 30

    def __enter__(self):
        labels = self.data.ds.labels
        tr, va = self.split["train"], self.split["val"]
        self.train_ds = _Views(self._encode(tr, True, self.views), [labels[i] for i in tr], self.views)
        self.val_ds = _Views(self._encode(va, False, 1), [labels[i] for i in va], 1)
        self.batch_fn = lambda h: h
        self.model.forward = self._top
        return self

    def flops(self, epochs: float) -> float:
        """Training FLOPs with the cache: the trunk once per stored view, the top every epoch (counted; epochs in
        passes, a fraction when epochs were rounds)."""
        from torch.utils.flop_counter import FlopCounterMode

        x = to_device(sample_batch(self.mod, self.data, self.split["val"], False, n=4), self.model)
        self.model.eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            h = self._trunk(x)
        trunk = counter.get_total_flops() / len(x)
        top_train = flops_per_item(self.model, h.clone(), train=True)
        top_eval = flops_per_item(self.model, h.clone(), train=False)
        n_tr, n_va = len(self.train_ds), len(self.val_ds)
        return trunk * (n_tr * self.views + n_va) + top_train * n_tr * epochs + top_eval * n_va * (epochs + 1)

    def __exit__(self, *exc):
        del self.model.forward            # back to the class's full forward
        self.train_ds = self.val_ds = None


def cache_fits(ct: CachedTrunk, n_train: int, n_val: int) -> bool:
    return ct.estimate_gib(n_train * ct.views + n_val) <= MAX_CACHE_GIB


def for_unit(modality, data, split: dict, model, strat, plan):
    """A CachedTrunk when only top stages of a known architecture train (and the cache fits in memory), else None.
    data: modalities/base.Inputs (its cfg.trunk_views views per training item)."""
    views = data.cfg.trunk_views
    if plan is None or views <= 0:
        return None
    k = trunk_split(model, plan, strat.bn_policy)
    if k is None:
        return None
    ct = CachedTrunk(modality, data, split, model, k, views, dtype=modality.feature_dtype(data))
    return ct if cache_fits(ct, len(split["train"]), len(split["val"])) else None
