"""Learning-curve fit, labels needed/saved, cost arithmetic, FLOP counting, the unit executor, and report.html in
a real browser."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from headstart.stats.curve import fit_power_law, labels_needed, labels_saved, nested_subset, solve_labels


def test_power_law_fit_recovers_known_parameters():
    n = np.array([10, 20, 50, 100, 200, 500])
    a, b = 2.0, 0.6
    assert fit_power_law(n, 1 - a * n ** -b) == pytest.approx((a, b), rel=1e-6)
    rng = np.random.default_rng(0)
    noisy = 1 - a * n ** -b * np.exp(rng.normal(0, 0.02, len(n)))
    fa, fb = fit_power_law(n, noisy)
    assert fa == pytest.approx(a, rel=0.15) and fb == pytest.approx(b, abs=0.05)


def _points(a=2.0, b=0.6, counts=(10, 20, 40, 80), seeds=3, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return {n: list(1 - a * n ** -b + rng.normal(0, noise, seeds)) for n in counts}


def test_labels_needed_is_monotone_in_target_and_refuses_wild_extrapolation():
    pts = _points()
    targets = [0.7, 0.75, 0.8, 0.85, 0.87]
    needed = [labels_needed(pts, t)["labels"] for t in targets]
    assert all(x is not None for x in needed) and needed == sorted(needed)
    exact = solve_labels(2.0, 0.6, 0.85, 10, 80)
    assert exact == pytest.approx((2.0 / 0.15) ** (1 / 0.6))            # 75 labels, inside the measured range
    assert labels_needed(pts, 0.97)["reached"] is False                  # would need ~2,400 labels: > 2 x 80
    flat = {n: [0.6, 0.61, 0.59] for n in (10, 20, 40)}
    assert labels_needed(flat, 0.8)["reached"] is False                  # no improvement with labels
    easy = labels_needed(pts, 0.3)
    assert easy["labels"] == 10 and easy["at_most"]                       # reached at the smallest count


def test_labels_saved_paired_and_bounded():
    transfer = labels_needed(_points(a=1.0, b=0.6), 0.85)                # needs fewer labels
    scratch = labels_needed(_points(a=2.0, b=0.6), 0.85)
    saved = labels_saved(transfer, scratch)
    assert saved["saved"] == pytest.approx(scratch["labels"] - transfer["labels"]) and saved["saved"] > 0
    assert saved["ci"] is None or saved["ci"][0] <= saved["saved"] <= saved["ci"][1]
    never = labels_needed(_points(a=5.0, b=0.2), 0.85)
    bound = labels_saved(transfer, never)
    assert bound["saved"] is None and bound["at_least"] == pytest.approx(2 * 80 - transfer["labels"])


def test_nested_subsets_are_nested_and_stratified():
    labels = [0] * 30 + [1] * 10 + [2] * 3
    train = list(range(43))
    small, big = nested_subset(train, labels, 0.25, 0), nested_subset(train, labels, 0.5, 0)
    assert set(small) <= set(big)
    assert [sum(labels[i] == c for i in small) for c in range(3)] == [8, 3, 1]
    assert nested_subset(train, labels, 0.25, 1) != small                # another seed, another subset


def test_cost_arithmetic():
    from headstart.training.costs import cost
    c = cost(3600, "cpu", devices=2, price_per_hour=0.5, watts=100)
    assert (c["device_hours"], c["energy_kwh"], c["money"]) == pytest.approx((2.0, 0.2, 1.0))
    d = cost(1800, "gpu")                                                  # documented defaults
    assert (d["price_per_hour"], d["watts"], d["money"]) == pytest.approx((2.5, 700, 1.25))


def test_flop_counter_matches_matmul_arithmetic():
    from headstart.training.costs import flops_per_item
    lin = torch.nn.Linear(10, 5)
    x = torch.randn(4, 10)
    assert flops_per_item(lin, x, train=False) == 2 * 10 * 5               # one multiply-add per weight
    assert flops_per_item(lin, x, train=True) == 2 * 2 * 10 * 5            # + weight gradient (input needs none)
    lin.weight.requires_grad_(False)
    lin.bias.requires_grad_(False)
    assert flops_per_item(lin, x, train=True) == 2 * 10 * 5                # frozen: forward only
    assert lin.weight.grad is None


def _comparable(obj):
    from test_reliability import _comparable as c
    return c(obj)


def test_process_executor_gives_the_local_results(tmp_path):
    from conftest import make_image_folder
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    data = make_image_folder(tmp_path / "data", per_class=10)
    base = dict(data=str(data), image_size=32, epochs=1, curve=[0.5], strategies=["linear-probe", "scratch"],
                assess=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # as in each of the 2 workers on 2 cores: same float reduction order
    try:
        local = run_experiment(RunConfig(out=str(tmp_path / "local"), **base), log=lambda *a: None).to_dict()
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(2)              # shared out: 1 thread per worker
    try:
        par = run_experiment(RunConfig(out=str(tmp_path / "par"), executor="process", jobs=2, **base),
                             log=lambda *a: None).to_dict()
    finally:
        torch.set_num_threads(threads)
    assert _comparable(par["strategies"]) == _comparable(local["strategies"])
    assert _comparable(par["curve"]) == _comparable(local["curve"])
    assert (tmp_path / "par" / "curve" / "f0.5" / "scratch" / "seed0" / "result.json").exists()


def test_ray_executor_without_ray_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    from conftest import make_image_folder
    from headstart.core.config import RunConfig
    from headstart.core.errors import UserError
    from headstart.app.run import run_experiment
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ray" else real_import(name, *a, **k))
    data = make_image_folder(tmp_path / "data", per_class=6)
    with pytest.raises(UserError, match="pip install 'headstart\\[ray\\]'"):
        run_experiment(RunConfig(data=str(data), out=str(tmp_path / "r"), image_size=32, executor="ray",
                                 strategies=["classic"], assess=False), log=lambda *a: None)


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory):
    from conftest import make_image_folder
    from test_cli import hs
    root = tmp_path_factory.mktemp("curve")
    data = make_image_folder(root / "data", per_class=12)
    out = root / "run"
    r = hs("run", data, "--out", out, "--image-size", 32, "--epochs", 2, "--curve", "0.25,0.5", "--seeds", 2,
           "--cost-per-label", "5,20", "--price-per-hour", "1.5")
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_curve_run_reports_labels_and_costs(curve_run):
    res = json.loads((curve_run / "results.json").read_text())
    c = res["curve"]
    assert set(c["points"]) == {"classic", "linear-probe", "finetune", "scratch"}
    assert all(len(v) == 2 for p in c["points"].values() for v in p.values())          # 2 seeds per point
    assert {"linear-probe vs scratch", "finetune vs scratch"} == set(c["saved"])
    comp = res["strategies"]["finetune"]["compute"]
    assert comp["flops_train"] > 0 and comp["price_per_hour"] == 1.5
    assert comp["money"] == pytest.approx(comp["device_hours"] * 1.5)
    md = (curve_run / "report.md").read_text()
    for heading in ("## Label efficiency", "## Compute and cost", "| approach | data required | compute cost | "
                    "time to deploy |", "plots/curve.png", "## Before training: predicted vs measured"):
        assert heading in md
    assert all((curve_run / "plots" / f"{p}.png").exists() for p in ("curve", "losses", "confusion"))


def _records(x):
    """Every typed record inside x (a record, or dicts and lists of them)."""
    from headstart.core.records import Record
    if isinstance(x, Record):
        yield x
        x = {f: getattr(x, f) for f in x.__dataclass_fields__ if f != "extra"}
    for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else []):
        yield from _records(v)


def test_results_json_is_a_typed_record_that_round_trips_exactly(curve_run):
    """results.json <-> RunResults: the same JSON back (keys and their order), and every key of a full run (curve,
    assessment, leaks, export) is a typed field, none left over in `extra`."""
    from headstart.core.run_results import RunResults
    d = json.loads((curve_run / "results.json").read_text())
    res = RunResults.from_dict(d)
    assert res.to_dict() == d and json.dumps(res.to_dict()) == json.dumps(d)
    left = [(type(r).__name__, sorted(r.extra)) for r in _records(res) if r.extra]
    assert not left, left
    assert res.strategies["finetune"].compute.price_per_hour == 1.5 and res.curve.saved["finetune vs scratch"]
    assert res.assessment.check.best_transfer in ("linear-probe", "finetune") and res.model_dir.is_dir()


def test_results_from_older_versions_and_newer_keys_load_and_render():
    """A results.json from before the decision metric (no metric block, no score / val_score) still loads, ranks
    and renders as accuracy; a key this version does not know survives a rewrite."""
    from headstart.core.run_results import RunResults
    from headstart.outputs.report import render_markdown
    arm = {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95], "macro_f1": 0.9, "val_acc": 0.85, "val_loss": 0.3,
           "train_seconds": 2.0, "epochs_run": [3], "epoch_budget": 4, "n_test": 40, "per_class_recall": {"a": 0.9, "b": 0.9},
           "confusion": [[18, 2], [2, 18]], "from_the_future": 1}
    old = {"config": {"data": "d", "out": "runs/x", "seeds": 1}, "recommended": "finetune",
           "data": {"root": "d", "classes": ["a", "b"],
                    "counts": {"train": {"a": 5, "b": 5}, "val": {"a": 2, "b": 2}, "test": {"a": 20, "b": 20}},
                    "roles": {"train": "d", "val": "d", "test": "d"}},
           "strategies": {"finetune": arm, "linear-probe": {**arm, "val_acc": 0.8}, "classic": {"failed": "x"}}}
    res = RunResults.from_dict(old)
    assert res.metric_name == "accuracy" and res.strategies["finetune"].score == 0.9 and res.best_arm(
        ["linear-probe", "finetune"]) == "finetune"
    assert res.to_dict()["strategies"]["finetune"]["from_the_future"] == 1
    assert res.to_dict()["strategies"]["classic"] == {"failed": "x"} and "metric" not in res.to_dict()
    assert "**Deploy `finetune`**" in render_markdown(res)


def test_report_html_is_self_contained_and_renders_in_chromium(curve_run, tmp_path):
    html = (curve_run / "report.html").read_text()
    res = json.loads((curve_run / "results.json").read_text())
    pictures = 3 + sum(bool(m.get("picture")) for m in (res.get("gallery") or {}).get("mistakes", []))
    assert html.count("data:image/png;base64,") == pictures and 'src="plots/' not in html
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", (curve_run / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table>" in dom.stdout and "Label efficiency" in dom.stdout and dom.stdout.count("<img") == pictures
    assert "What the deployed model gets wrong (test)" in dom.stdout and "Labels to check" in dom.stdout
    from PIL import Image
    for width in (1280, 420):               # a laptop and a phone
        shot = tmp_path / f"page{width}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={shot}", f"--window-size={width},2000", (curve_run / "report.html").as_uri()], capture_output=True,
                       timeout=120, check=True)
        pixels = np.asarray(Image.open(shot).convert("L"))
        assert pixels.shape[1] == width and pixels.std() > 10         # something was drawn, not a blank page
        assert (pixels[:, -8:] > 250).mean() > 0.97       # the right margin stays blank: nothing runs off the page
    assert 'name="viewport"' in html and "overflow-x:auto" in html   # wide tables scroll inside a narrow page


def test_a_target_the_measured_points_hit_counts_as_reached():
    """Noisy, flat scratch curve: its fit misses the target (its own best mean), the measured points do not."""
    noisy = {20: [0.57, 0.57], 50: [0.46, 0.47], 98: [0.50, 0.55], 195: [0.57, 0.63]}
    need = labels_needed(noisy, target=0.60)
    assert need["reached"] and need["labels"] == 195


def test_a_spawned_worker_does_not_report_its_parents_memory():
    """Linux keeps ru_maxrss across fork + exec, so a worker (--jobs, the backbone memory probe) measured with it
    reports at least its parent's memory at the fork; VmHWM starts again at exec."""
    import multiprocessing as mp
    import resource
    from concurrent.futures import ProcessPoolExecutor
    from headstart.training.costs import peak_rss_gib_since_exec
    ballast = np.ones(2 ** 28 // 8 * 5, dtype=np.float64)      # 1.25 GiB, touched
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        child = pool.submit(peak_rss_gib_since_exec).result()
    assert ballast[-1] == 1 and parent > 1.25
    assert child < parent - 1.0, (child, parent)
