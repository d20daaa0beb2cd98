"""Helper for test_ddp.py: one headstart run with Fabric DDP over 2 CPU processes (gloo). Every rank records
the files it writes and a digest of its fine-tuned weights, in files named by rank, outside the run folder."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def main(data: str, out: str, log_dir: str):
    import headstart.pipeline.arms as train        # the runner calls fit through its module globals
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment

    written = []
    real_replace = os.replace

    def recording_replace(src, dst, *a, **k):       # every headstart file write ends in an atomic rename
        written.append(str(dst))
        return real_replace(src, dst, *a, **k)
    os.replace = recording_replace
    digests = {}
    real_fit = train.fit

    def recording_fit(fabric, model, *a, **k):
        res = real_fit(fabric, model, *a, **k)
        flat = torch.cat([v.detach().float().flatten() for v in model.state_dict().values()])
        digests[k.get("label", "")] = [float(flat.sum()), float((flat * flat).sum()),
                                       float((flat * torch.arange(len(flat)).float()).sum())]
        return res
    train.fit = recording_fit
    cfg = RunConfig(data=data, out=out, devices=2, accelerator="cpu", image_size=32, epochs=2, batch_size=4,
                    strategies=["linear-probe", "finetune", "scratch"], assess=False)
    res = run_experiment(cfg, log=lambda *a: None).to_dict()
    rank = int(os.environ.get("LOCAL_RANK", 0))
    Path(log_dir, f"rank{rank}.json").write_text(json.dumps({"written": written, "digests": digests,
                                                            "accuracy": {s: m.get("accuracy") for s, m in
                                                                         res["strategies"].items()}}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
