"""Progress of a long stage over items (reading files, the frozen pass, tokenizing): a live bar when one shows,
else a log line every few seconds with items/s and the time left, so a pipe or a log file never sits silent.

    tick = stage_progress(ctx.progress, ctx.log, "reading images", total=len(entries))
    tick(256)                  # 256 more items done

and of a trained unit's epochs (or rounds): EpochLog, a stop_check wrapper that logs each epoch and the budget's
likely duration.
"""
from __future__ import annotations

import time


def live(progress) -> bool:
    """A rich Progress that is really drawn (not disabled because stderr is not a terminal)."""
    return progress is not None and not getattr(progress, "disable", False)


def stage_progress(progress, log, label: str, total: int, every: float = 10.0, clock=time.perf_counter):
    """tick(n) for a stage of `total` items: advances a bar on `progress` when it is live, else logs
    "<label>: done/total (rate/s, ~ETA left)" at most every `every` seconds (and at the end, if it took longer)."""
    if live(progress):
        task = progress.add_task(label, total=total)
        return lambda n: progress.advance(task, n)
    t0, done, last = clock(), 0, [clock()]

    def tick(n: int) -> None:
        nonlocal done
        done += n
        now = clock()
        if now - last[0] >= every or (done >= total and now - t0 >= every):
            last[0] = now
            rate = done / max(now - t0, 1e-9)
            left = (total - done) / rate if rate > 0 else 0.0
            log(f"{label}: {done:,}/{total:,} ({rate:,.0f}/s" + (f", ~{_duration(left)} left)" if done < total
                                                                  else f", {_duration(now - t0)})"))
    return tick


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class EpochLog:
    """A stop_check that, after the first epoch, says how long the unit's budget may take when that is over a minute
    (many classes, large inputs: the user learns it before waiting), writes one line per epoch where no live
    progress bar shows it (logs, pipes), then defers to the real check (racing)."""

    def __init__(self, inner, budget: int, log, label: str, quiet_below_s: float = 60.0, note=None):
        self.inner, self.budget, self.log, self.label, self.quiet = inner, budget, log, label, quiet_below_s
        self.note = note

    def __call__(self, history: list[dict]):
        h = history[-1]
        if self.note is not None:
            size = f", {h['input_size']} px" if "input_size" in h else ""
            items = f" ({h['round_items']:,} items)" if "round_items" in h else ""
            self.note(f"{self.label}: {self._epoch(h)} {len(history)}/{self.budget}{items}: train loss "
                      f"{h['train_loss']:.3f} acc {100 * h['train_acc']:.1f}% | val loss {h['val_loss']:.3f} acc "
                      f"{100 * h['val_acc']:.1f}% | "
                      f"{h['seconds']:.1f} s{size}")
        if len(history) == 1:
            rest = history[0]["seconds"] * (self.budget - 1)
            if rest > self.quiet:
                self.log(f"{self.label}: {self._epoch(h)} 1 took {history[0]['seconds']:.0f} s; its budget of "
                         f"{self.budget} {self._epoch(h)}s may take about {rest / 60:.0f} more minute(s) (early "
                         "stopping or racing usually ends it sooner)")
        return self.inner(history) if self.inner is not None else None

    @staticmethod
    def _epoch(h: dict) -> str:
        return "round" if "round_items" in h else "epoch"


def rounds_policy(per_round: int, n_train: int) -> dict:
    """What an epoch was, for the report's policy table, when a large training set trained in rounds."""
    if not per_round:
        return {}
    return {"epoch": f"a round of {per_round:,} training items ({per_round / n_train:.2f} of a pass over "
                     f"{n_train:,}): validation, early stopping, racing and the budget count rounds"}
