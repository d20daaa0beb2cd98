"""Progress of a long stage over items (reading files, the frozen pass, tokenizing): a live bar when one shows,
else a log line every few seconds with items/s and the time left, so a pipe or a log file never sits silent.

    tick = stage_progress(ctx.progress, ctx.log, "reading images", total=len(entries))
    tick(256)                  # 256 more items done
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
