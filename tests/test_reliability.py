"""Interrupted and repeated runs, leaked splits, diverging arms and untrusted model files.

KILL_POINTS and PLANTED count what docs/reliability.md reports."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_image_folder

ARGS = ["--image-size", "32", "--epochs", "2", "--batch-size", "8"]
# killed as soon as each path appears: a unit's folder appears when it starts, so those kills land mid-training
# (config.json, finished units' result.json files and a unit's first epoch were kill points too; they cover nothing the
# ones below do not, and each costs a run)
KILL_POINTS = ["split.json", "assessment.json", "finetune/seed0",
               "scratch/seed0/metrics.csv", "model/model.safetensors"]        # the last: during the export
CURVE_ARGS = ["--curve", "0.5", "--strategies", "linear-probe,scratch", "--no-assess", "--jobs", "1"]


def _start(data, out, env=None, extra=()):
    # a test suite started in the background (`.ci/run &`) inherits an ignored SIGINT, and Python then installs no
    # KeyboardInterrupt handler: give the run the default disposition a user's terminal gives it
    return subprocess.Popen([sys.executable, "-m", "headstart", "run", str(data), "--out", str(out), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(path: Path, proc, timeout=300):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path} appeared:\n{proc.stdout.read()}"
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def _comparable(obj):
    """results.json without what legitimately differs between runs: timings, folders, cache hits."""
    skip = ("seconds", "wall", "cached", "out", "path", "run", "torch_threads", "compute",
            "stages", "grid")          # what this invocation did: resumed runs train fewer units
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if not any(s in k for s in skip)}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def data_and_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = make_image_folder(root / "data", per_class=10)
    ref = _start(data, root / "reference")
    assert ref.wait(600) == 0, ref.stdout.read()
    return data, json.loads((root / "reference" / "results.json").read_text()), root


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_gives_the_uninterrupted_results(data_and_reference, point):
    data, reference, root = data_and_reference
    out = root / ("killed-at-" + point.replace("/", "-"))
    proc = _start(data, out)
    _wait_for(out / point, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    again = _start(data, out)
    assert again.wait(600) == 0, again.stdout.read()
    assert _comparable(json.loads((out / "results.json").read_text())) == _comparable(reference)


def test_sigkill_inside_a_curve_grid_then_resume_gives_the_uninterrupted_results(data_and_reference):
    data, _, root = data_and_reference
    ref = _start(data, root / "curve-reference", extra=CURVE_ARGS)
    assert ref.wait(600) == 0, ref.stdout.read()
    out = root / "curve-killed"
    proc = _start(data, out, extra=CURVE_ARGS)
    _wait_for(out / "curve" / "f0.5" / "scratch" / "seed0", proc)        # mid-training of a curve unit
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = _start(data, out, extra=CURVE_ARGS)
    assert again.wait(600) == 0, again.stdout.read()
    assert _comparable(json.loads((out / "results.json").read_text())) == \
        _comparable(json.loads((root / "curve-reference" / "results.json").read_text()))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(data_and_reference, tmp_path):
    data, _, _ = data_and_reference
    proc = _start(data, tmp_path / "run")
    _wait_for(tmp_path / "run" / "linear-probe" / "seed0" / "result.json", proc)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert "run the same command again to resume" in out and "Traceback" not in out


def test_diverging_arm_is_diagnosed_and_the_others_finish(tmp_path):
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    data = make_image_folder(tmp_path / "data", per_class=10)
    logs = []
    res = run_experiment(RunConfig(data=str(data), out=str(tmp_path / "run"), image_size=32, epochs=1,
                                   strategies=["linear-probe", "scratch"], scratch_lr=1e12, assess=False),
                         log=logs.append).to_dict()
    assert "learning rate too high" in res["strategies"]["scratch"]["failed"]
    assert res["recommended"] == "linear-probe" and "accuracy" in res["strategies"]["linear-probe"]
    assert any("scratch seed 0 stopped" in str(m) for m in logs)


PLANTED = {"leak-exact": ("train/cats/img 0.jpg", "test/cats/copy.jpg"),
           "conflict": ("train/cats/img 2.jpg", "train/dogs/same-image.jpg"),
           "duplicate": ("train/cats/img 3.jpg", "train/cats/again.jpg")}


def test_planted_exact_duplicates_are_found_and_dedupe_drops_the_train_side(tmp_path):
    import shutil

    from headstart.core.config import RunConfig
    from headstart.pipeline.checks import check_leakage
    from headstart.pipeline.context import build_context as prepare
    root = tmp_path / "data"
    for role, n in (("train", 8), ("val", 3), ("test", 3)):
        make_image_folder(root / role, per_class=n, seed=len(role), extras=False)
    for src, dst in PLANTED.values():
        shutil.copy(root / src, root / dst)
    cfg = RunConfig(data=str(root), out=str(tmp_path / "run"), image_size=64, dedupe=True, near_dup_threshold=1.0)
    ctx = prepare(cfg, log=lambda *a: None)
    report = check_leakage(ctx)
    found = {tuple(sorted((p["a"], p["b"]))): p["kind"] for p in report["pairs"]}
    assert found == {tuple(sorted(pair)): name.split("-")[0] for name, pair in PLANTED.items()}
    # leak: the train copy; conflict: both train items; duplicate: all but the first in dataset order
    assert set(report["removed_from_train"]) == {"train/cats/img 0.jpg", "train/cats/img 2.jpg",
                                                 "train/dogs/same-image.jpg", "train/cats/img 3.jpg"}
    assert not set(report["removed_from_train"]) & {ctx.ds.paths[i] for i in ctx.split["train"]}
    assert len(ctx.split["test"]) == 7 and len(ctx.split["val"]) == 6      # val and test untouched


def test_planted_near_duplicate_photo_is_found_and_nothing_else(tmp_path):
    """A real photo re-saved at 90% size and JPEG quality 85 into test/: a near leak (not byte-identical)."""
    import shutil

    from conftest import need_shared
    from headstart.core.config import RunConfig
    from headstart.pipeline.checks import check_leakage
    from headstart.pipeline.context import build_context as prepare
    src = need_shared("hymenoptera") / "train"
    root = tmp_path / "data"
    for c in ("ants", "bees"):
        for role, files in (("train", sorted((src / c).iterdir())[:12]), ("test", sorted((src / c).iterdir())[12:16])):
            (root / role / c).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, root / role / c / f.name)
    original = sorted((root / "train" / "ants").iterdir())[0]
    im = Image.open(original)
    im.resize((im.width * 9 // 10, im.height * 9 // 10)).save(root / "test" / "ants" / "resaved.jpg", quality=85)
    ctx = prepare(RunConfig(data=str(root), out=str(tmp_path / "run")), log=lambda *a: None)
    report = check_leakage(ctx)
    assert [(p["a"], p["b"], p["kind"], p["match"]) for p in report["pairs"]] == \
        [(f"train/ants/{original.name}", "test/ants/resaved.jpg", "leak", "near")]


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['BOOM_MARK'])}",))


def test_pickled_weights_are_never_executed(tmp_path, monkeypatch):
    from test_cli import hs
    model = tmp_path / "model"
    model.mkdir()
    (model / "headstart_model.json").write_text(json.dumps({"format": 1}))
    mark = tmp_path / "executed"
    monkeypatch.setenv("BOOM_MARK", str(mark))
    (model / "model.safetensors").write_bytes(pickle.dumps(_Boom()))
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    r = hs("predict", model, img)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert not mark.exists()


def test_config_paths_cannot_escape_the_run_folder(tmp_path):
    from headstart.core.config import RunConfig
    from headstart.core.errors import UserError
    from headstart.app.run import run_experiment
    from headstart.core.io import inside
    assert inside(tmp_path, "finetune", "seed0") == (tmp_path / "finetune" / "seed0").resolve()
    for bad in (["..", "escaped"], ["/etc", "x"], ["a/../../b"]):
        with pytest.raises(UserError, match="outside the run folder"):
            inside(tmp_path, *bad)
    data = make_image_folder(tmp_path / "data", per_class=6)
    with pytest.raises(UserError, match="unknown strategy"):
        run_experiment(RunConfig(data=str(data), out=str(tmp_path / "run"), strategies=["../../escaped"]))
    assert not (tmp_path / "escaped").exists()


def _proc_text(pid: int, name: str) -> str:
    """/proc/PID/NAME, or "" when the process ended meanwhile (a child may exit between listing and reading)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    return _proc_text(pid, "cmdline")


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (state field after the command name in /proc/PID/stat)."""
    state = _proc_text(pid, "stat").rsplit(")", 1)[-1].split()
    return bool(state) and state[0] != "Z"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc (Linux)")
def test_jobs_workers_die_with_a_killed_parent(tmp_path):
    """--jobs 2: SIGKILL the parent while its worker processes train; the kernel ends the workers too (before, they
    trained on and wrote results for a run nobody watched)."""
    data = make_image_folder(tmp_path / "data", per_class=10)
    out = tmp_path / "run"
    proc = _start(data, out, extra=["--curve", "0.5", "--strategies", "scratch", "--scratch-epochs", "30",
                                    "--no-assess", "--jobs", "2"])
    t0, workers = time.time(), []
    while time.time() - t0 < 120 and proc.poll() is None:
        workers = [c for c in _children(proc.pid) if "spawn" in _cmdline(c) or "multiprocessing" in _cmdline(c)]
        if len(workers) >= 2 and any((out / "curve").rglob("seed0")):
            break
        time.sleep(0.2)
    assert len(workers) >= 2 and proc.poll() is None, "workers never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if _running(w)]
    assert not alive, f"workers {alive} outlived their parent"
