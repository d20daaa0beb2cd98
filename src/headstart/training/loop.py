"""The one training loop. It knows nothing of transfer: a strategy hands it a freeze plan and an epoch hook.

    result = fit(fabric, model, strategy, train_ds, val_ds, batch_fn=..., max_epochs=10, patience=3)

Hook order (training/strategies.py): plan = strategy.plan(model) (unless a plan is passed in) -> optimizer ->
strategy.on_epoch_start(model, plan, 0) -> validation of the starting weights -> for every epoch:
on_epoch_start(model, plan, epoch), train pass, validation pass, stop_check(history).
    result.history  # per epoch: train/val loss and accuracy, LRs, events (e.g. unfreezing), seconds

Early stopping on validation loss (class-weighted when class_weights are given; the training loss then is weighted
too, or logit-adjusted with logit_offset) with patience (never before `min_epochs`); the best epoch's weights are restored.
Progressive resizing (sizes=[128]*10 + [224]*10; datasets with resize_to): train and validation inputs follow the
schedule; a size change starts best-epoch tracking afresh (a validation loss at another input size is another
measurement) and early stopping waits for the last size (only racing may end the small-input epochs).
Rounds (round_items; large training sets): n >= 2 x round_items training items train in rounds of round_items (whole
batches) drawn from one endless stream of per-pass permutations (Rounds: every item still seen once per pass), and
each round is an epoch of this loop: validation, early stopping, the LR schedule, racing and the budget count rounds.
Overfitting flag: validation loss rose `window` epochs in a row while training loss fell over the same epochs.
Goes through Lightning Fabric, so --devices/--precision/DDP need no change here (metrics are all-reduced).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from headstart.models.device import loader_kwargs
from headstart.stats.metrics import from_confusion


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf: this arm stops, the others go on."""


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    epochs_run: int = 0
    stopped_early: bool = False
    overfit: bool = False
    events: list[str] = field(default_factory=list)
    start_val: dict = field(default_factory=dict)     # val loss/acc of the starting weights (epoch -1)
    stopped_by: dict | None = None                    # what a stop_check said when it ended the run (racing)
    round_items: int = 0                              # training items per epoch when epochs are rounds, else 0

    def best(self) -> dict:
        return self.history[self.best_epoch] if self.best_epoch >= 0 else self.start_val


def overfitting(history: list[dict], window: int = 3) -> bool:
    """True if some `window` consecutive epochs had strictly rising val loss and falling train loss."""
    for end in range(window, len(history)):
        seg = history[end - window: end + 1]
        val_up = all(b["val_loss"] > a["val_loss"] for a, b in zip(seg, seg[1:]))
        if val_up and seg[-1]["train_loss"] < seg[0]["train_loss"]:
            return True
    return False


def _cosine(max_epochs: int, floor: float = 0.1):
    return lambda e: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, max_epochs) / max(1, max_epochs)))


def _run_epoch(fabric, model, loader, batch_fn, optimizer=None, progress=None, task=None, weight=None,
               metric: str = "accuracy", offset=None):
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy, score in `metric`) over all ranks.
    weight: per-class loss weights (imbalanced data): the loss is the weighted mean; offset: added to the logits in
    the loss only (logit adjustment: the log class prior), never to the predictions.
    Sums stay on the device and are read once per pass: no host synchronisation per step (a GPU runs ahead);
    a non-finite loss poisons the sum and ends the arm at the end of the pass (TrainingDiverged)."""
    train = optimizer is not None
    tot = torch.zeros(4, dtype=torch.float64, device=fabric.device)  # loss sum, weight sum, correct, count
    cm = None                                                          # confusion counts (true x predicted)
    ctx = torch.enable_grad() if train else torch.inference_mode()
    with ctx:
        for x, y in loader:
            logits = model(batch_fn(x))
            loss = F.cross_entropy(logits.float() + offset if offset is not None else logits.float(), y, weight=weight)
            if train:
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                optimizer.step()
            w = weight[y].sum() if weight is not None else len(y)
            pred = logits.argmax(1)
            tot[0] += loss.detach() * w
            tot[1] += w
            tot[2] += (pred == y).sum()
            tot[3] += len(y)
            k = logits.shape[1]
            cm = torch.zeros(k * k, dtype=torch.float64, device=fabric.device) if cm is None else cm
            cm += torch.bincount(y * k + pred, minlength=k * k)
            if progress is not None:
                progress.advance(task, 1)
    if fabric.world_size > 1:
        tot, cm = fabric.all_reduce(tot, reduce_op="sum"), fabric.all_reduce(cm, reduce_op="sum")
    loss_sum, w_sum, correct, count = tot.tolist()
    if not math.isfinite(loss_sum):
        raise TrainingDiverged(f"loss became {loss_sum} (learning rate too high, or bad inputs?)")
    k = int(round(math.sqrt(cm.numel())))
    return loss_sum / w_sum, correct / count, from_confusion(metric, cm.reshape(k, k).tolist())


def round_size(n: int, round_items: int, batch_size: int) -> int:
    """Items per round for n training items: round_items rounded up to whole batches when n >= 2 x round_items; 0: no
    rounds (an epoch is one pass)."""
    return batch_size * math.ceil(round_items / batch_size) if 0 < round_items and 2 * round_items <= n else 0


class Rounds(torch.utils.data.Sampler):
    """`size` items per iteration from `order` (a sampler drawing a fresh permutation per pass) read as one endless
    stream: every item is still seen once per pass, and a pass spans several of the loop's epochs."""

    def __init__(self, order, size: int):
        self.order, self.size, self._it = order, size, iter(())

    def __len__(self):
        return self.size

    def __iter__(self):
        for _ in range(self.size):
            i = next(self._it, None)
            if i is None:
                self._it = iter(self.order)
                i = next(self._it)
            yield i


def length_order(ds) -> list[int] | None:
    """The order of an evaluation pass: by length where items vary in length (text: random batches carry 0.5-0.9
    padded tokens per real token, benchmarks/text_speed.py), else None (as given)."""
    return np.argsort(ds.lengths, kind="stable").tolist() if hasattr(ds, "lengths") else None


def _resize(size: int, *datasets) -> None:
    for ds in datasets:
        ds.resize_to(size)


def fit(fabric, model, strategy, train_ds, val_ds, *, batch_fn, max_epochs: int, patience: int, batch_size: int,
        weight_decay: float, seed: int, num_workers: int = 0, progress=None, label: str = "",
        restore_best: bool = True, min_epochs: int = 0, stop_check=None, plan=None,
        sizes: list[int] | None = None, class_weights=None, logit_offset=None,
        metric: str = "accuracy", round_items: int = 0, fused: bool = False) -> FitResult:
    """Train `model` in place (best-validation-loss weights restored unless restore_best=False).
    stop_check(history) -> dict | None, after every epoch: a dict ends training now (recorded as stopped_by).
    sizes: input size per epoch (progressive resizing), or None.
    class_weights: per-class weights (a sequence) of the validation loss that early stopping watches, and of the
    training loss unless logit_offset is given (then the training loss is logit-adjusted instead: the offset, the
    log class prior, is added to the logits, Menon et al. 2021); metric: the decision metric recorded per epoch as
    val_score (stats/metrics.py; racing reads it). round_items: a training set of at least twice this many items
    trains in rounds of this many (rounded up to whole batches), each an epoch here (0: never). fused: AdamW fused
    (where every parameter is on the CPU or a CUDA device)."""
    from torch.utils.data import DataLoader

    fabric.seed_everything(seed, verbose=False)
    as_t = lambda v: None if v is None else torch.as_tensor(v, dtype=torch.float32, device=fabric.device)  # noqa
    val_w, offset = as_t(class_weights), as_t(logit_offset)

    def run(loader, opt=None, prog=None):
        if opt is None:                       # validation: the class-weighted loss early stopping watches
            return _run_epoch(fabric, fmodel, loader, batch_fn, None, prog, task, val_w, metric)
        # training: logit-adjusted when an offset is given, else weighted like validation
        return _run_epoch(fabric, fmodel, loader, batch_fn, opt, prog, task, None if offset is not None else val_w,
                          metric, offset)
    plan = strategy.plan(model) if plan is None else plan
    groups = [{k: v for k, v in g.items() if k in ("params", "lr")} for g in plan.param_groups]
    # fused AdamW (one kernel over all parameters): a MiniLM-L6 step's update took 74 ms with torch's CPU default
    # (a loop over the parameters) and 10 ms fused, of ~0.45 s per step on 2 cores (benchmarks/text_speed.py
    # --breakdown); a 30-step scratch epoch 11.3-12.3 -> 9.0 s, the same validation loss
    fused = fused and all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay, fused=fused or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(max_epochs))
    gen = torch.Generator().manual_seed(seed)
    lone_last = len(train_ds) % batch_size == 1 and len(train_ds) > 1   # BatchNorm cannot train on 1 sample
    collate = getattr(train_ds, "collate", None)    # datasets whose batches need padding bring their own
    # a dataset already on the device (the trunk cache on a GPU) is read in-process, unpinned
    feed = {} if getattr(train_ds, "on_device", False) else loader_kwargs(fabric.device, num_workers,
                                                                              getattr(train_ds, "streamed", False))
    if sizes:       # kept-alive workers hold a copy of the dataset: they would never see a new size
        feed["persistent_workers"] = False
        sizes = list(sizes)[:max_epochs] + [sizes[-1]] * max(0, max_epochs - len(sizes))
        _resize(sizes[0], train_ds, val_ds)
    order = {"shuffle": True}
    if hasattr(train_ds, "lengths"):    # variable-length items (text): batches of similar lengths, in random order
        from transformers.trainer_pt_utils import LengthGroupedSampler
        order = {"sampler": LengthGroupedSampler(batch_size, lengths=train_ds.lengths, generator=gen)}
    per_round = round_size(len(train_ds), round_items, batch_size)
    if per_round:      # whole batches per round: no lone last batch
        order = {"sampler": Rounds(order.get("sampler") or torch.utils.data.RandomSampler(train_ds, generator=gen),
                                   per_round)}
    train_loader = DataLoader(train_ds, batch_size=batch_size, generator=gen, drop_last=lone_last,
                              collate_fn=collate, **order, **feed)
    val_loader = DataLoader(val_ds, batch_size=batch_size * 2, sampler=length_order(val_ds), collate_fn=collate,
                            **feed)
    ddp = fabric.world_size > 1
    if ddp:   # DDP syncs only parameters that require grad when it wraps: enable all that will ever train
        before = {p: p.requires_grad for p in model.parameters()}
        strategy.on_epoch_start(model, plan, max_epochs - 1)
    fmodel, opt = fabric.setup(model, opt)
    if ddp:   # back to the starting freeze; later unfreezing is seen through find_unused_parameters
        for p, rg in before.items():
            p.requires_grad_(rg)
    train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader)
    task = None
    if progress is not None:
        task = progress.add_task(label, total=max_epochs * (len(train_loader) + len(val_loader)))
    res = FitResult(round_items=per_round)
    # the starting weights are a candidate too: LP-FT never ends worse on validation than the probe it began from
    res.events += strategy.on_epoch_start(model, plan, 0)
    fmodel.eval()
    loss0, acc0, score0 = run(val_loader)
    res.start_val = {"epoch": -1, "val_loss": loss0, "val_acc": acc0, "val_score": score0}
    best_loss, bad = loss0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for epoch in range(max_epochs):
        t0 = time.perf_counter()
        res.events += strategy.on_epoch_start(model, plan, epoch)   # sets train/eval modes; idempotent
        if sizes and epoch and sizes[epoch] != sizes[epoch - 1]:
            _resize(sizes[epoch], train_ds, val_ds)
            best_loss, bad = math.inf, 0
            res.events.append(f"epoch {epoch}: input size {sizes[epoch - 1]} -> {sizes[epoch]} px "
                              "(progressive resizing; best epoch tracked afresh)")
        tr_loss, tr_acc, _ = run(train_loader, opt, progress)
        fmodel.eval()
        va_loss, va_acc, va_score = run(val_loader, None, progress)
        res.history.append({"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss,
                            "val_acc": va_acc, "val_score": va_score, "lr": [g["lr"] for g in opt.param_groups],
                            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                            "seconds": time.perf_counter() - t0, **({"input_size": sizes[epoch]} if sizes else {}),
                            **({"round_items": per_round} if per_round else {})})
        sched.step()
        res.epochs_run = epoch + 1
        if va_loss < best_loss - 1e-6:
            best_loss, bad, res.best_epoch = va_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience and epoch + 1 >= min_epochs and (not sizes or sizes[epoch] == sizes[-1]):
                res.stopped_early = epoch + 1 < max_epochs
                break
        res.stopped_by = stop_check(res.history) if stop_check is not None else None
        if res.stopped_by is not None:
            res.stopped_early = True
            break
    if progress is not None:
        progress.update(task, completed=progress.tasks[task].total)
    if best_state is not None and restore_best:
        model.load_state_dict(best_state)
    res.overfit = overfitting(res.history)
    model.eval()
    return res
