"""Where a text run's training time goes: padding. Fine-tuning MiniLM-L6 on batches drawn at random (as before
issue 27) against batches of similar lengths (transformers' LengthGroupedSampler, what the training loop now
uses for text): padded tokens per real token, and the seconds of `--steps` training steps each way, interleaved.

    python benchmarks/text_speed.py [CSV ...] [--steps 30]     # default: TREC train (../shared/data) and
                                                               # /tmp/hs-scale/texts-10000.csv (benchmarks/scale.py)
    python benchmarks/text_speed.py --breakdown [CSV ...]      # where a grouped step's time goes: forward,
                                                               # backward, AdamW step (default vs fused)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def load_texts(path: str) -> list[str]:
    if path.endswith(".label"):
        return [line.split(" ", 1)[1].strip() for line in open(path, encoding="latin-1") if " " in line]
    import csv
    with open(path, newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


def batches(lengths: list[int], batch: int, grouped: bool, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    if grouped:
        from transformers.trainer_pt_utils import LengthGroupedSampler
        order = list(LengthGroupedSampler(batch, lengths=lengths, generator=gen))
    else:
        order = torch.randperm(len(lengths), generator=gen).tolist()
    return [order[i: i + batch] for i in range(0, len(order) - batch + 1, batch)]


def main():
    from headstart.models.factory import create_backbone, resolve_spec
    from headstart.modalities.text import TokenBatches, tokenize
    from conftest import shared_data
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--breakdown", action="store_true")
    a = ap.parse_args()
    files = a.files or [str(p) for p in (shared_data() / "trec" / "train_5500.label",
                                         Path("/tmp/hs-scale/texts-10000.csv")) if p.exists()]
    spec = resolve_spec("minilm_l6")
    for path in files:
        texts = load_texts(path)
        ids, stats = tokenize(spec.path, texts, spec.input_size)
        lengths = ids.lengths.tolist()
        ds = TokenBatches(ids, [0] * len(ids), range(len(ids)), stats["pad_id"])
        model, _ = create_backbone("minilm_l6", 4)
        model.train()
        if a.breakdown:
            breakdown(model, ds, batches(lengths, a.batch, True), a.steps, Path(path).name)
            continue
        opt = torch.optim.AdamW(model.parameters(), 1e-5)
        row = {"file": Path(path).name, "texts": len(texts), "mean_tokens": round(float(np.mean(lengths)), 1)}
        secs = {False: 0.0, True: 0.0}
        plans = {g: batches(lengths, a.batch, g) for g in (False, True)}
        for g in (False, True):
            padded = sum(len(b) * max(lengths[i] for i in b) for b in plans[g])
            row[f"padding_{'grouped' if g else 'random'}"] = round(padded / sum(lengths[i] for b in plans[g]
                                                                               for i in b) - 1, 2)
        for step in range(a.steps):                 # interleaved: both ways see the same machine load
            for g in (False, True):
                x, _ = ds.collate([ds[i] for i in plans[g][step]])
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(x).float().logsumexp(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                secs[g] += time.perf_counter() - t0
        row.update({"s_per_step_random": round(secs[False] / a.steps, 3),
                    "s_per_step_grouped": round(secs[True] / a.steps, 3),
                    "speedup": round(secs[False] / secs[True], 2)})
        print(row, flush=True)


def breakdown(model, ds, plan, steps: int, name: str) -> None:
    """Seconds per grouped step in forward (bf16 autocast), backward and the optimizer step, with torch's AdamW
    default (on the CPU a loop over the parameters) and fused AdamW, interleaved."""
    opts = {"default": torch.optim.AdamW(model.parameters(), 1e-5),
            "fused": torch.optim.AdamW(model.parameters(), 1e-5, fused=True)}
    secs = {k: 0.0 for k in ("forward", "backward", "step default", "step fused")}
    for step in range(steps + 2):
        for kind, opt in opts.items():
            x, _ = ds.collate([ds[i] for i in plan[step % len(plan)]])
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x).float().logsumexp(1).mean()
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if step >= 2:           # after warm-up
                secs["forward"] += (t1 - t0) / 2
                secs["backward"] += (t2 - t1) / 2
                secs[f"step {kind}"] += t3 - t2
    print({"file": name, **{k: round(v / steps, 3) for k, v in secs.items()}}, flush=True)


if __name__ == "__main__":
    main()
