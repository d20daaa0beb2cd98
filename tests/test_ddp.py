"""Multi-process training through Lightning Fabric: DDP over 2 CPU processes (gloo) on tiny data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_image_folder


def test_ddp_two_cpu_processes_identical_weights_and_rank0_writes(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=12)
    out, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_run.py"), str(data), str(out), str(logs)],
                       capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [json.loads((logs / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert set(ranks[0]["digests"]) == {"finetune (seed 0)", "scratch (seed 0)"}
    assert ranks[0]["digests"] == ranks[1]["digests"]            # gradients all-reduced: identical weights
    inside = [[p for p in r["written"] if Path(p).is_relative_to(out)] for r in ranks]
    assert inside[1] == []                                        # rank 1 writes nothing into the run folder
    assert any(p.endswith("results.json") for p in inside[0]) and (out / "model" / "model.safetensors").exists()
    res = json.loads((out / "results.json").read_text())
    assert res["strategies"]["finetune"]["accuracy"] == ranks[1]["accuracy"]["finetune"]
