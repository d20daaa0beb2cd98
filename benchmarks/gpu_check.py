"""GPU acceptance: every command, every modality on CUDA, and the training throughput against synthetic input.

    python benchmarks/gpu_kit.py        # here, once: .gpukit/{image,text,audio} (weights stand-ins + data), < 64 MiB each
    # on the GPU machine, from the repo root, one call per part; with the device tool: carry [".gpukit/image"] etc.
    export PYTHONPATH=src:.gpukit/image HEADSTART_SHARED_DATA=.gpukit/image/data
    python3 benchmarks/gpu_check.py image                                            # ~3 min on an H200
    export PYTHONPATH=src:.gpukit/text HEADSTART_SHARED_DATA=.gpukit/text/data
    python3 benchmarks/gpu_check.py text                                             # ~2 min
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpukit/audio/wheels/*.whl
    export PYTHONPATH=src:.gpukit/audio:/tmp/site HEADSTART_SHARED_DATA=.gpukit/audio/data
    python3 benchmarks/gpu_check.py audio                                            # ~2 min

The GPU machine has torch, timm, lightning, transformers, typer, rich, scikit-learn, scipy, matplotlib and
safetensors; gpu_kit.py brings the rest (the packages that ship our weights, soundfile and its cffi) and the data
(../shared does not travel). A part whose set is absent is reported as skipped.
Parts:
- image: `headstart run` (default strategies, 1 seed), `--curve 0.25,0.5 --jobs 2`, `assess --backbones`
  Lite0+Lite1, `predict` on the run's model; then the throughput lines: whole-network fine-tune and scratch as
  headstart trains them vs the same model, dtype and batch on synthetic input already on the GPU (target >= 0.6).
- text: `headstart run` on TREC (train + official test file), `predict` on two questions.
- audio: `headstart run` on FSDD (official split), `predict` on two clips.
Prints one table (command, status, seconds, what it measured) and exits 1 if anything failed, 2 without CUDA.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bf16_parity import layout  # noqa: E402
from hymenoptera import DATA  # noqa: E402

ROWS: list[tuple[str, str, float, str]] = []


def cli(name: str, args: list[str], tmp: Path, timeout: int = 400) -> dict | None:
    """Run `headstart ARGS` in a fresh process; record a row; return results.json of a run (or {} for others)."""
    env = {**os.environ, "HEADSTART_CACHE": str(tmp / "cache")}
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "headstart", *args], capture_output=True, text=True, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        ROWS.append((name, "FAIL", time.perf_counter() - t0, f"timed out after {timeout} s"))
        return None
    wall = time.perf_counter() - t0
    if p.returncode != 0 or "Traceback" in p.stderr:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        ROWS.append((name, "FAIL", wall, f"exit {p.returncode}: {tail[0][:150]}"))
        return None
    if "--out" in args and args[0] == "run":
        res = json.loads((Path(args[args.index("--out") + 1]) / "results.json").read_text())
        accs = ", ".join(f"{s} {m['accuracy']:.3f}" for s, m in res["strategies"].items() if "accuracy" in m)
        ROWS.append((name, "ok", wall, f"{res['device']}, {res['precision']}; {accs}; deploy {res['recommended']}"))
        return res
    ROWS.append((name, "ok", wall, p.stdout.strip().splitlines()[-1][:150] if p.stdout.strip() else ""))
    return {}


def synthetic(model, batch: int, steps: int, train: bool) -> float:
    """Images/s of the model on random input already on the GPU: bf16 autocast, channels-last, AdamW."""
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    model.train(train)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16), torch.set_grad_enabled(train):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        if train:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def throughput(strategy: str, extra: dict, tmp: Path, data: str) -> None:
    """headstart's epoch time for `strategy` vs the synthetic time of the same work (train items + val items)."""
    from headstart.models.factory import create_backbone
    cfg = tmp / f"{strategy}.json"
    cfg.write_text(json.dumps(extra))
    res = cli(f"{strategy} whole network, 4 epochs", ["run", data, "--out", str(tmp / f"tp-{strategy}"),
              "--strategies", strategy, "--no-assess", "--accelerator", "cuda", "--config", str(cfg)], tmp)
    if res is None:
        return
    unit = json.loads((tmp / f"tp-{strategy}" / strategy / "seed0" / "result.json").read_text())
    per_epoch = statistics.median(h["seconds"] for h in unit["history"][1:] or unit["history"])
    n_tr, n_va = (sum(res["data"]["counts"][r].values()) for r in ("train", "val"))
    model = create_backbone("efficientnet_lite0", 2, pretrained=strategy != "scratch")[0].cuda()
    model = model.to(memory_format=torch.channels_last)
    ideal = n_tr / synthetic(model, 32, 30, True) + n_va / synthetic(model, 64, 30, False)
    ROWS.append((f"throughput: {strategy}", "ok" if ideal / per_epoch >= 0.6 else "LOW", per_epoch,
                 f"{n_tr / per_epoch:.0f} train img/s in headstart's epoch; {ideal / per_epoch:.2f} of synthetic "
                 f"(same model, bf16, batch 32; target >= 0.6)"))


def image(tmp: Path) -> None:
    root = DATA / "hymenoptera"
    if not root.exists():
        ROWS.append(("image", "skipped", 0, f"{root} not present"))
        return
    d, cuda = str(root), ["--accelerator", "cuda"]
    res = cli("run (image, default)", ["run", d, "--out", str(tmp / "img"), *cuda], tmp)
    cli("run --curve 0.25,0.5 --jobs 2", ["run", d, "--out", str(tmp / "curve"), "--curve", "0.25,0.5", "--jobs", "2",
                                          "--no-assess", *cuda], tmp)
    cli("assess --backbones lite0,lite1", ["assess", d, "--out", str(tmp / "assess"), "--backbones",
                                           "efficientnet_lite0,efficientnet_lite1"], tmp)
    if res is not None:
        cli("predict (image)", ["predict", str(tmp / "img" / "model"), str(root / "val" / "ants")], tmp)
    throughput("finetune", {"trunk_views": 0, "unfreeze_groups": 99, "unfreeze_every": -1, "epochs": 4}, tmp, d)
    throughput("scratch", {"full_scratch": True, "epochs": 4, "scratch_epochs": 4}, tmp, d)


def run_and_predict(part: str, data_set: str, tmp: Path, inputs) -> None:
    """`headstart run` on a shared set (default strategies) and `predict` with its model on inputs(tmp)."""
    args = layout(data_set, tmp)
    if args is None:
        ROWS.append((part, "skipped", 0, f"{data_set} not present"))
        return
    out = tmp / part
    if cli(f"run ({part}, default)", ["run", *args, "--out", str(out), "--accelerator", "cuda"], tmp) is not None:
        cli(f"predict ({part})", ["predict", str(out / "model"), *inputs(tmp)], tmp)


def text(tmp: Path) -> None:
    run_and_predict("text", "trec", tmp, lambda t: ["how far is the moon ?", "who wrote hamlet ?"])


def audio(tmp: Path) -> None:
    run_and_predict("audio", "fsdd", tmp, lambda t: map(str, sorted((t / "fsdd" / "test" / "3").glob("*.wav"))[:2]))


def main():
    parts = sys.argv[1:] or ["image", "text", "audio"]
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        sys.exit(2)
    print(f"card: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as t:
        for part in parts:
            {"image": image, "text": text, "audio": audio}[part](Path(t))
    print(f"\n{'command':<36}{'status':<8}{'s':>7}  measured")
    for name, status, secs, what in ROWS:
        print(f"{name:<36}{status:<8}{secs:>7.1f}  {what}")
    sys.exit(1 if any(r[1] == "FAIL" for r in ROWS) else 0)


if __name__ == "__main__":
    main()
