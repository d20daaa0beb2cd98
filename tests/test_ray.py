"""--executor ray against a real local Ray cluster (started by the run itself, as without RAY_ADDRESS): the units
spread over Ray workers, land in the run folder with the node that ran them, give the local executor's numbers,
and a unit whose worker is killed mid-training is retried and never half-written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'headstart[ray]')")


def test_ray_grid_survives_a_killed_worker(tmp_path):
    from conftest import make_image_folder
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    data = make_image_folder(tmp_path / "data", per_class=10, extras=False)
    out = tmp_path / "ray-run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "headstart", "run", str(data), "--out", str(out), "--executor", "ray",
           "--strategies", "classic,linear-probe,scratch", "--image-size", "32", "--epochs", "2", "--no-assess",
           "--no-check-labels", "--full-scratch"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = out / "scratch" / "seed0" / "running.json"
    killed = None
    deadline = time.time() + 400
    while proc.poll() is None and time.time() < deadline and killed is None:
        try:
            pid = json.loads(running.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
            continue
        os.kill(pid, signal.SIGKILL)            # the Ray worker training the scratch unit dies mid-unit
        killed = pid
    log, _ = proc.communicate(timeout=600)
    assert killed is not None, log[-2000:]
    assert proc.returncode == 0, log[-2000:]
    assert "after a dead worker" in log and "on a local Ray instance" in log
    res = json.loads((out / "results.json").read_text())
    grid = res["grid"]
    assert grid["executor"] == "ray" and grid["units"] == 3 and grid["retried"] >= 1
    assert sum(grid["nodes"].values()) == 3
    unit = json.loads((out / "scratch" / "seed0" / "result.json").read_text())
    assert unit["node"] and unit["epochs_run"] == unit["epoch_budget"] and not unit.get("failed")
    assert not running.exists()                  # the retry finished the unit and cleared the marker
    assert "### How the work was spread" in (out / "report.md").read_text()
    # the same numbers as the local executor (probe and classic do not depend on thread counts)
    local = run_experiment(RunConfig(data=str(data), out=str(tmp_path / "local"), image_size=32, epochs=2,
                                     assess=False, check_labels=False, strategies=["classic", "linear-probe"]),
                           log=lambda *a: None)
    for arm in ("classic", "linear-probe"):
        assert res["strategies"][arm]["accuracy"] == pytest.approx(local.strategies[arm].accuracy)
        assert res["strategies"][arm]["val_loss"] == pytest.approx(local.strategies[arm].val_loss, rel=1e-5)
