"""The GPU check of issue 6, prepared to run in one short call on a lent GPU (the `device` tool):

    python benchmarks/gpu_check.py            # ~2 minutes; needs ../shared/data/hymenoptera and a CUDA device

Prints the card, then Lite0 images/s on synthetic input (forward+backward of the top two block groups, bf16 mixed
precision, channels-last) beside headstart's fine-tune arm on hymenoptera on the same GPU (whole network each
epoch, and with the cached trunk), and the frozen feature pass. Not run yet: no GPU was lent to the session that
wrote it; record the numbers in benchmarks/README.md with the card's name when it runs.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from hymenoptera import DATA  # noqa: E402


def synthetic_top2(n_batches: int = 20, batch: int = 32) -> float:
    from headstart.backbones import block_groups, create_backbone
    model, _ = create_backbone("efficientnet_lite0", 2)
    model = model.cuda().to(memory_format=torch.channels_last)
    groups = block_groups(model)
    trainable = {n for g in groups[:3] for n in g}
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device="cuda")
    for i in range(n_batches + 3):
        if i == 3:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return n_batches * batch / (time.perf_counter() - t0)


def main():
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return
    from headstart.config import RunConfig
    from headstart.experiment import run_experiment
    from headstart.units import unit_result
    print(f"card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"synthetic, top 2 groups trainable, bf16-mixed, channels-last: {synthetic_top2():.0f} images/s")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in (("finetune, whole network each epoch", dict(trunk_views=0)),
                         ("finetune, cached trunk", dict(trunk_views=4))):
            cfg = RunConfig(data=str(DATA / "hymenoptera"), out=f"{tmp}/{kw['trunk_views']}", assess=False,
                            strategies=["linear-probe", "finetune"], accelerator="cuda", cache_dir=f"{tmp}/c", **kw)
            res = run_experiment(cfg, log=lambda *a: None)
            r = unit_result(Path(cfg.out), "finetune", 0)
            per = statistics.median(h["seconds"] for h in r["history"])
            n = sum(res["data"]["counts"]["train"].values()) + sum(res["data"]["counts"]["val"].values())
            lp = unit_result(Path(cfg.out), "linear-probe", 0)
            print(f"{name}: {per:.2f} s / epoch ({n / per:.0f} images/s incl. validation), test accuracy "
                  f"{res['strategies']['finetune']['accuracy']:.3f}; precision {res['precision']} on {res['device']}; "
                  f"feature pass {lp['features_seconds']:.1f} s")


if __name__ == "__main__":
    main()
