"""End-to-end CLI runs on a tiny generated image folder (with a corrupt file and an RGBA png)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


def hs(*args, env=None, stdin=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "headstart", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=600, input=stdin)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import make_image_folder
    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "my images", per_class=10)
    out = root / "run"
    r = hs("run", data, "--out", out, "--image-size", 32, "--epochs", 2, "--batch-size", 8)
    return r, data, out


def test_run_writes_the_run_folder(finished_run):
    r, data, out = finished_run
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("config.json", "split.json", "results.json", "report.md", "model/model.safetensors",
              "model/headstart_model.json", "linear-probe/seed0/metrics.csv", "finetune/seed0/metrics.csv",
              "scratch/seed0/weights.safetensors"):
        assert (out / f).exists(), f
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["skipped"][0]["path"] == "dogs/broken.jpg"
    assert "cats/alpha.png" in (out / "split.json").read_text()
    assert set(res["strategies"]) == {"classic", "linear-probe", "finetune", "scratch"}
    assert res["strategies"]["scratch"]["epoch_budget"] >= res["strategies"]["finetune"]["epoch_budget"]
    assert "finetune - scratch" in res["paired_differences"]
    n_val = len(json.loads((out / "split.json").read_text())["val"])
    for s, m in res["strategies"].items():     # per-item validation record (paired choices) agrees with val_acc
        assert len(m["val_correct"]) == n_val and abs(sum(m["val_correct"]) / n_val - m["val_acc"]) <= 1 / n_val, s
    report = (out / "report.md").read_text()
    assert "Deploy" in report and "broken.jpg" in report and "test accuracy (95% CI)" in report
    assert "strategy" in r.stdout and "stopped early?" in r.stdout
    # a pipe is no terminal: one line per phase and per epoch instead of a live progress bar
    # (read from the session's cache when an earlier test embedded the same synthetic images: order-dependent)
    assert re.search(r"frozen features: (computed|read from the cache) in", r.stdout)
    assert "finetune seed 0: started" in r.stdout
    assert "scratch seed 0: epoch 1/" in r.stdout and "| val loss" in r.stdout


def test_summary_on_an_80_column_terminal_keeps_names_whole(finished_run):
    from rich.console import Console
    import headstart.app.cli as cli
    _, _, out = finished_run
    res = json.loads((out / "results.json").read_text())
    cli.console, before = Console(width=80, record=True, force_terminal=False), cli.console
    try:
        cli.print_summary(res)
        text = cli.console.export_text()
    finally:
        cli.console = before
    assert all(len(line) <= 80 for line in text.splitlines())
    for s in ("linear-probe", "finetune", "scratch", "classic"):
        assert f"│ {s}" in text
    assert "narrow terminal" in text and "report.md" in text


def test_rerun_resumes(finished_run):
    _, data, out = finished_run
    r = hs("run", data, "--out", out, "--image-size", 32, "--epochs", 2, "--batch-size", 8)
    assert r.returncode == 0
    assert "4 of 4 unit(s) already finished" in r.stdout


def test_changed_config_is_refused(finished_run):
    _, data, out = finished_run
    r = hs("run", data, "--out", out, "--image-size", 32, "--epochs", 3, "--batch-size", 8)
    assert r.returncode == 2 and "different config (epochs differ)" in r.stdout and "Traceback" not in r.stderr


def test_predict_lists_bad_files(finished_run):
    _, data, out = finished_run
    r = hs("predict", out / "model", data, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 22 and [x["path"].endswith("broken.jpg") for x in rows if "error" in x] == [True]
    assert [x["path"] for x in rows] == sorted(x["path"] for x in rows)
    assert {x["label"] for x in rows if "error" not in x} <= {"cats", "dogs"}
    # file paths piped in (one per line), CSV out; the broken file is a row with its reason, not a crash
    good = next(x["path"] for x in rows if "error" not in x)
    r = hs("predict", out / "model", "-", "--format", "csv", stdin=f"{data / good}\n{data / 'dogs/broken.jpg'}\n")
    assert r.returncode == 0, r.stderr
    import csv
    got = list(csv.DictReader(r.stdout.splitlines()))
    assert len(got) == 2 and got[0]["label"] in {"cats", "dogs"} and float(got[0]["prob"]) >= 0.5
    assert got[1]["error"] and not got[1]["label"]


def test_new_task_from_exported_model(finished_run, tmp_path):
    from conftest import make_image_folder
    _, _, out = finished_run
    data = make_image_folder(tmp_path / "new", classes=("a", "b", "c"), per_class=6, extras=False)
    r = hs("run", data, "--out", tmp_path / "run2", "--backbone", out / "model", "--strategies", "linear-probe",
           "--image-size", 32)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert res["backbone"]["source"].startswith("checkpoint:") and len(res["data"]["classes"]) == 3


@pytest.mark.parametrize("args, message", [
    (["run", "/no/such/folder"], "does not exist"),
    (["run", ".", "--strategies", "probe"], "unknown strategy 'probe'"),
    (["run", ".", "--backbone", "resnet999"], "unknown backbone 'resnet999'"),
    (["predict", "/tmp", "x.jpg"], "not a headstart model folder"),
])
def test_user_errors_have_no_traceback(args, message, tmp_path):
    r = hs(*args)
    assert r.returncode == 2
    assert message in r.stdout and "Traceback" not in r.stdout + r.stderr


def test_too_few_images_is_a_clear_error(tmp_path):
    from conftest import make_image_folder
    data = make_image_folder(tmp_path / "d", per_class=2, extras=False)
    r = hs("run", data, "--out", tmp_path / "o")
    assert r.returncode == 2 and "has 2 item(s); needs at least 3" in r.stdout


def test_unwritable_output_folder(tiny_folder, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/headstart-run"      # root can write anywhere else
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "run"
    r = hs("run", tiny_folder, "--out", target)
    assert r.returncode == 2 and "cannot write to the output folder" in r.stdout


def test_backbones_lists_packaged_weights():
    r = hs("backbones")
    assert r.returncode == 0 and "efficientnet_lite0" in r.stdout and "timm:<model>" in r.stdout


def test_demo_runs_on_bundled_digits(tmp_path):
    r = hs("demo", "--out", tmp_path / "demo", "--per-class", "5", "--curve", "0.5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "digits: test accuracy by training labels" in r.stdout
    run = tmp_path / "demo" / "run-5-per-class"
    assert (run / "report.md").exists() and (run / "report.html").exists()
    res = json.loads((run / "results.json").read_text())
    assert sorted(int(n) for n in res["curve"]["points"]["scratch"]) == [20, 40]     # 2 and 4 per digit


def test_help_loads_no_model_library():
    """`headstart --help` stays instant: the CLI module and what the summary printer needs load no torch,
    transformers, timm or matplotlib (the error gallery once pulled the modalities, hence torch, into --help)."""
    import subprocess
    import sys
    code = ("import sys, headstart.app.cli; heavy = [m for m in ('torch', 'transformers', 'timm', 'matplotlib', "
            "'cleanlab', 'peft') if m in sys.modules]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
