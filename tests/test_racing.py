"""Racing scratch against transfer (racing.py), bf16 mixed-precision parity, and the machine-sized --jobs default."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.stats.racing import decide, optimistic_final


def _curve(a, b=0.35, c=0.8, n=20, noise=0.0, seed=0):
    """Validation accuracy of a saturating learning curve a - b t^-c (t = 1..n), with binomial-like noise."""
    t = np.arange(1, n + 1)
    rng = np.random.default_rng(seed)
    return list(np.clip(a - b * t ** -c + rng.normal(0, noise, n), 0, 1))


def test_stops_a_hopeless_scratch_curve_early():
    accs = _curve(0.62, noise=0.02)                      # above chance (0.2) from its first epoch
    stops = [k for k in range(1, 21) if decide(accs[:k], 20, rival_acc=0.98, margin=0.05, chance=0.2).stop]
    assert stops and stops[0] <= 6                       # within a third of the budget
    d = decide(accs[: stops[0]], 20, 0.98, 0.05, rival="linear-probe", chance=0.2)
    assert d.bound < 0.93 and d.bound >= max(accs[: stops[0]])
    assert "stopped at epoch" in d.message() and "linear-probe (98.0%)" in d.message()


@pytest.mark.parametrize("seed", range(20))
def test_never_stops_a_scratch_curve_that_ends_close_to_or_above_transfer(seed):
    """Curves whose final value is within the margin of the rival (or above it): no prefix may stop them."""
    rng = np.random.default_rng(seed)
    accs = _curve(rng.uniform(0.6, 1.0), b=rng.uniform(0.2, 0.6), c=rng.uniform(0.3, 1.5), noise=0.01, seed=seed)
    rival = min(1.0, accs[-1] + rng.uniform(-0.1, 0.045))     # the real final value is within the margin
    for k in range(1, 21):
        assert not decide(accs[:k], 20, rival, 0.05, chance=0.1).stop, (k, accs[:k], rival)


def test_never_stops_a_curve_leaving_a_plateau():
    """Scratch often sits at chance for a few epochs, then climbs: the flat start and the acceleration must not
    read as hopeless."""
    accs = [0.11, 0.1, 0.12, 0.1, 0.11, 0.2, 0.35, 0.55, 0.7, 0.8, 0.86, 0.9]
    for k in range(1, len(accs) + 1):
        assert not decide(accs[:k], 20, 0.97, 0.05, chance=0.1).stop, k


def test_does_not_mistake_noise_at_chance_for_a_curve():
    """digits-20, seed 1 (40 validation items, 10 classes): 6/40 once is noise at chance, not learning. Seed 0 of the
    same run sat at chance for 4 epochs, then climbed to 0.90, above the linear probe's 0.85."""
    plateau = [0.1, 0.1, 0.15, 0.12]
    assert not decide(plateau, 30, 0.85, 0.05, chance=0.1, n_val=40).stop
    seed0 = [0.07, 0.1, 0.1, 0.1, 0.17, 0.23, 0.4, 0.65, 0.47, 0.57, 0.8, 0.72, 0.78, 0.8, 0.78, 0.8, 0.85, 0.82,
             0.88, 0.88, 0.88, 0.88, 0.9, 0.9, 0.88, 0.9, 0.9, 0.9, 0.9]
    assert not any(decide(seed0[:k], 30, 0.85, 0.05, chance=0.1, n_val=40).stop for k in range(1, len(seed0) + 1))


def test_a_sigmoid_take_off_is_fitted_from_where_it_left_chance():
    """digits-20 at 224 px, two seeds with the same start (40 validation items, 10 classes, the rival at 0.95):
    seed 0 read 0.10 0.10 0.12 0.15 0.25 0.30 0.28 and the first rule (fitting the plateau too) stopped it at
    epoch 7; seed 1 read the same and ended at 0.90. Fitted from where it left chance, neither is stopped."""
    seed0 = [0.1, 0.1, 0.12, 0.15, 0.25, 0.3, 0.28]
    seed1 = [0.1, 0.1, 0.12, 0.12, 0.17, 0.25, 0.33, 0.5, 0.65, 0.8, 0.85, 0.8, 0.82, 0.85, 0.9, 0.42, 0.68, 0.65,
             0.88, 0.9, 0.82, 0.88, 0.88, 0.88, 0.9, 0.9]
    for curve in (seed0, seed1):
        for k in range(1, len(curve) + 1):
            assert not decide(curve[:k], 30, 0.95, 0.10 if k <= 15 else 0.05, chance=0.1, n_val=40).stop, k
    d = decide(seed0[:6] + [0.3, 0.3, 0.3, 0.3, 0.3, 0.3], 30, 0.95, 0.1, chance=0.1, n_val=40)
    assert d.stop and d.epoch == 12         # a climb that flattened far below the rival is still stopped


def test_a_curve_at_chance_for_half_its_budget_is_judged_on_what_it_did():
    """hymenoptera's scratch (49 validation items, chance 0.51, threshold 0.653) never left chance in 20 epochs while
    the linear probe had 1.00: it waits out half its budget, then its own curve bounds it."""
    hym = [0.51, 0.49, 0.51, 0.49, 0.531, 0.49, 0.592, 0.551, 0.571, 0.551, 0.571, 0.592, 0.592, 0.571, 0.612,
           0.633, 0.612, 0.633, 0.592, 0.571]
    decisions = [decide(hym[:k], 20, 1.0, 0.05, chance=0.51, n_val=49) for k in range(1, 20)]
    assert not any(d.stop for d in decisions[:9])
    assert decisions[9].stop and decisions[9].epoch == 10 and decisions[9].bound < 0.95
    assert not decide(hym[:10], 20, 0.70, 0.05, chance=0.51, n_val=49).stop     # a close rival: it runs on


def test_needs_a_rival_and_enough_epochs():
    accs = _curve(0.55, noise=0.0)
    assert not decide(accs[:3], 20, 0.99, 0.05).stop                       # too few points to fit
    assert not decide(accs[:10], 20, None, 0.05).stop                      # no finished transfer arm yet
    assert decide(accs[:10], 20, 0.99, 0.05).stop


def test_bound_is_optimistic_against_the_true_final_value():
    """On noisy saturating curves the bound made at epoch 5 is above the curve's real value at the budget."""
    misses = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        a = rng.uniform(0.5, 0.9)
        accs = _curve(a, b=rng.uniform(0.1, 0.4), c=rng.uniform(0.3, 1.2), noise=0.02, seed=seed)
        misses += optimistic_final(accs[:5], 20)["bound"] < accs[-1] - 0.02
    assert misses == 0


def test_racing_stops_scratch_in_a_run_and_the_report_says_bounded(tmp_path, monkeypatch):
    """Wiring: a hopeless bound stops the loop after MIN_POINTS epochs, result.json and the report mark the numbers
    bounded, and --full-scratch trains the whole budget."""
    from conftest import make_image_folder
    from headstart.stats import racing
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    from headstart.outputs.report import render_markdown
    from headstart.pipeline import units
    orig = racing.decide         # a margin of -2 makes any bound hopeless; chance -1 lets a chance-level curve stop
    monkeypatch.setattr(units, "decide", lambda *a, **k: orig(*a, **{**k, "chance": -1.0}))
    data = make_image_folder(tmp_path / "data", per_class=10, extras=False)
    base = dict(data=str(data), image_size=32, epochs=2, scratch_epochs=8, scratch_patience=99,
                strategies=["linear-probe", "scratch"], assess=False, jobs=1, race_margin=-2.0)
    res = run_experiment(RunConfig(out=str(tmp_path / "raced"), **base), log=lambda *a: None).to_dict()
    m = res["strategies"]["scratch"]
    assert m["epochs_run"] == [racing.MIN_POINTS] and m["provenance"]["kind"] == "bounded"
    raced = m["provenance"]["raced"][0]
    assert raced["rival"] == "linear-probe" and raced["epoch"] == racing.MIN_POINTS and raced["budget"] == 8
    md = render_markdown(res)
    assert "(bounded)" in md and "scratch stopped at epoch 4 of 8" in md and "--full-scratch" in md
    full = run_experiment(RunConfig(out=str(tmp_path / "full"), full_scratch=True, **base), log=lambda *a: None).to_dict()
    assert full["strategies"]["scratch"]["epochs_run"] == [8]
    assert full["strategies"]["scratch"]["provenance"]["kind"] == "full"


def test_precision_auto_rule(monkeypatch):
    from headstart.models import device
    from headstart.core.config import RunConfig
    from headstart.modalities import MODALITIES
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for has_bf16 in (True, False):
        monkeypatch.setattr(device, "native_bf16", lambda d="cpu", v=has_bf16: v)
        cfg = RunConfig(accelerator="cpu")
        assert device.resolve_precision(cfg) == "32-true"                       # the run-wide Fabric
        assert device.resolve_precision(cfg, MODALITIES["image"]()) == "32-true"  # depthwise convs: slower in bf16
        for m in ("text", "audio"):
            assert device.resolve_precision(cfg, MODALITIES[m]()) == ("bf16-mixed" if has_bf16 else "32-true")
    assert device.resolve_precision(RunConfig(precision="32-true"), MODALITIES["text"]()) == "32-true"
    assert device.resolve_precision(RunConfig(accelerator="cuda")) == "bf16-mixed"


def test_bf16_mixed_training_matches_float32_on_a_tiny_model():
    """Same seed, same data: bf16-mixed reaches the float32 accuracy and loss, and keeps float32 master weights and
    optimizer state (Fabric's autocast: only the matmuls run in bf16)."""
    from lightning.fabric import Fabric
    from torch.utils.data import TensorDataset

    from headstart.core.config import RunConfig
    from headstart.training.strategies import Scratch
    from headstart.training.loop import fit
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 2
    y = torch.randint(0, 4, (600,), generator=g)
    x = centers[y] + torch.randn(600, 16, generator=g)
    tr, va = TensorDataset(x[:400], y[:400]), TensorDataset(x[400:], y[400:])
    out = {}
    for prec in ("32-true", "bf16-mixed"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 4))
        fabric = Fabric(accelerator="cpu", devices=1, precision=prec)
        res = fit(fabric, model, Scratch(RunConfig(epochs=6, scratch_lr=3e-3)), tr, va, batch_fn=lambda b: b,
                  max_epochs=6, patience=99, batch_size=32, weight_decay=0.0, seed=0)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        out[prec] = res.history[-1]
    assert out["bf16-mixed"]["val_acc"] == pytest.approx(out["32-true"]["val_acc"], abs=0.02)
    assert out["bf16-mixed"]["val_loss"] == pytest.approx(out["32-true"]["val_loss"], rel=0.1, abs=0.02)
    assert out["32-true"]["val_acc"] > 0.8


def test_auto_jobs_follows_scratch_units_cores_and_memory(tiny_folder, tmp_path, monkeypatch):
    import os

    from headstart.pipeline import grid
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context as prepare
    ctx = prepare(RunConfig(data=str(tiny_folder), out=str(tmp_path / "r"), image_size=32), log=lambda *a: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(grid, "available_gib", lambda: 64.0)
    one = [(1.0, "linear-probe", 0), (1.0, "finetune", 0), (1.0, "scratch", 0)]
    assert grid.auto_jobs(ctx, one)[0] == 1                       # a single scratch unit: no workers
    many = [(f, "scratch", s) for f in (0.25, 0.5, 1.0) for s in range(2)]
    jobs, why = grid.auto_jobs(ctx, many)
    assert jobs == 4 and "4 cores" in why                         # bounded by cores
    monkeypatch.setattr(grid, "available_gib", lambda: 11.0)     # 0.8 * 11 GiB holds two 4.2 GiB units
    assert grid.auto_jobs(ctx, many)[0] == 2


def test_scratch_checkpoints_activations_only_when_memory_is_short(monkeypatch):
    from types import SimpleNamespace

    from headstart.core.config import RunConfig
    from headstart.pipeline import arms as units
    cpu, gpu = SimpleNamespace(device=torch.device("cpu")), SimpleNamespace(device=torch.device("cuda", 0))
    monkeypatch.setattr(units, "available_gib", lambda: 20.0)
    assert not units._needs_checkpointing(RunConfig(), cpu)                        # the default: speed
    assert units._needs_checkpointing(RunConfig(grad_checkpointing=True), cpu)     # asked for
    assert not units._needs_checkpointing(RunConfig(grad_checkpointing=True), gpu)
    monkeypatch.setattr(units, "available_gib", lambda: 5.0)
    assert units._needs_checkpointing(RunConfig(), cpu)                            # memory is short


def test_a_long_unit_says_how_long_its_budget_may_take_after_its_first_epoch():
    from headstart.pipeline.progress import EpochLog
    logs = []
    check = EpochLog(lambda h: {"stop": True} if len(h) == 2 else None, 20, logs.append, "scratch seed 0")
    assert check([{"seconds": 10.0}]) is None and "about 3 more minute(s)" in logs[0]
    assert check([{"seconds": 10.0}] * 2) == {"stop": True} and len(logs) == 1       # once, and racing still decides
    quiet = EpochLog(None, 4, logs.append, "finetune seed 0")
    assert quiet([{"seconds": 5.0}]) is None and len(logs) == 1                       # short units stay quiet


class _Sized(torch.utils.data.Dataset):
    """A dataset with resize_to: items are `size`-dependent, and every size it was asked for is recorded."""

    def __init__(self, x, y, log):
        self.x, self.y, self.log, self.size = x, y, log, None

    def resize_to(self, size):
        self.size = size
        self.log.append(size)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] * (self.size / 10), self.y[i]


def test_progressive_sizes_follow_the_schedule_and_early_stopping_waits_for_full_size():
    """The loop resizes train and validation data at the switch, records each epoch's size, tracks the best epoch
    afresh at the new size, and never early-stops inside the small-input epochs (only racing may end those)."""
    from lightning.fabric import Fabric
    from headstart.core.config import RunConfig
    from headstart.training.loop import fit
    from headstart.training.strategies import Scratch
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.randn(64, 8, generator=g)              # labels carry no signal: validation loss never improves for long
    log_tr, log_va = [], []
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    res = fit(Fabric(accelerator="cpu", devices=1), model, Scratch(RunConfig(epochs=2, scratch_lr=1e-2)),
              _Sized(x[:48], y[:48], log_tr), _Sized(x[48:], y[48:], log_va), batch_fn=lambda b: b, max_epochs=8,
              patience=1, batch_size=16, weight_decay=0.0, seed=0, sizes=[5, 5, 5, 5, 10, 10, 10, 10])
    assert log_tr == [5, 10] and log_va == [5, 10]
    sizes = [h["input_size"] for h in res.history]
    assert sizes == [5, 5, 5, 5, 10, 10, 10, 10][: res.epochs_run]
    assert res.epochs_run >= 5                      # patience 1 could not end it among the size-5 epochs
    assert res.best_epoch >= 4                      # the kept weights are from a full-size epoch
    assert any("input size 5 -> 10 px" in e for e in res.events)


def test_image_schedule_and_small_input_evaluation(tmp_path):
    """224 px: 10 epochs at 112 then 10 at 224; under 160 px no schedule; a small evaluation crop shows the same view
    as the full-size centre crop (resized, not cut out of the middle)."""
    from types import SimpleNamespace
    from headstart.modalities.image import ImageModality, ImageTensors
    mod = ImageModality()
    assert mod.progressive_sizes(SimpleNamespace(size=224), 20) == [112] * 10 + [224] * 10
    assert mod.progressive_sizes(SimpleNamespace(size=260), 7) == [128] * 3 + [260] * 4
    assert mod.progressive_sizes(SimpleNamespace(size=96), 20) is None
    img = torch.zeros(3, 256, 256, dtype=torch.uint8)
    img[:, :, 128:] = 255                            # left half black, right half white
    ds = ImageTensors([img], [0], [0], 224, short_side=256)
    full = ds[0][0].float().mean().item()
    ds.resize_to(128)
    small = ds[0][0]
    assert small.shape == (3, 128, 128) and small.float().mean().item() == pytest.approx(full, abs=3)


def test_racing_wants_twice_the_margin_on_small_inputs(tmp_path, monkeypatch):
    """A curve seen at small inputs must fall twice the margin short of the rival before racing stops it."""
    from headstart.pipeline import units
    from headstart.stats.racing import Decision
    seen = []

    def record(accs, budget, rival_acc, margin, rival=None, **k):
        seen.append(margin)
        return Decision(False, len(accs), budget, None, rival, rival_acc, margin, {})
    monkeypatch.setattr(units, "decide", record)
    race = units._Race.__new__(units._Race)
    race.ctx = type("C", (), {"size": 224, "cfg": type("G", (), {"race_margin": 0.05})()})()
    race.budget, race.seed, race.n_val, race.chance, race.last, race.metric = 20, 0, 50, 0.5, None, "accuracy"
    race.rival = lambda: (0.9, "linear-probe")
    race([{"val_acc": 0.5, "input_size": 128}])
    race([{"val_acc": 0.5, "input_size": 224}])
    race([{"val_acc": 0.5}])
    assert seen == [0.1, 0.05, 0.05]


def test_a_run_resizes_scratch_progressively_and_evaluates_it_at_the_size_it_trained(tmp_path, monkeypatch):
    """160 px: scratch trains at 80 px first; stopped there by racing, it is evaluated (and would be exported) at
    80 px, and result.json and the report say so; --no-progressive-resize keeps every epoch at 160 px."""
    from conftest import make_image_folder
    from headstart.stats import racing
    from headstart.core.config import RunConfig
    from headstart.core.results import unit_result
    from headstart.app.run import run_experiment
    from headstart.outputs.report import render_markdown
    from headstart.pipeline import units
    orig = racing.decide
    monkeypatch.setattr(units, "decide", lambda *a, **k: orig(*a, **{**k, "chance": -1.0}))
    data = make_image_folder(tmp_path / "data", per_class=8, extras=False)
    base = dict(data=str(data), image_size=160, epochs=2, scratch_epochs=8, scratch_patience=99,
                strategies=["linear-probe", "scratch"], assess=False, jobs=1, race_margin=-2.0)
    res = run_experiment(RunConfig(out=str(tmp_path / "p"), **base), log=lambda *a: None).to_dict()
    r = unit_result(tmp_path / "p", "scratch", 0)
    assert [h["input_size"] for h in r.history] == [80] * racing.MIN_POINTS
    assert r.details["eval_size"] == 80 and r.details["progressive_sizes"] == [[80, racing.MIN_POINTS]]
    assert res["strategies"]["scratch"]["input_sizes"][0]["eval_size"] == 80
    assert "progressive resizing, 80 px for 4 epochs; evaluated at 80 px" in render_markdown(res)
    off = run_experiment(RunConfig(out=str(tmp_path / "off"), progressive_resize=False, **base), log=lambda *a: None).to_dict()
    assert "input_sizes" not in off["strategies"]["scratch"]
    assert all("input_size" not in h for h in unit_result(tmp_path / "off", "scratch", 0).history)


class _SizeEcho(torch.utils.data.Dataset):
    """Items whose values are the current size: what a worker process returns shows which size it knows."""

    def __init__(self, n):
        self.n, self.size = n, None

    def resize_to(self, size):
        self.size = size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((4,), float(self.size)), i % 2


class _Seen(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.seen = torch.nn.Linear(4, 2), []

    def forward(self, x):
        if self.training:
            self.seen.append(float(x.max()))
        return self.lin(x / 100)


def test_progressive_sizes_reach_dataloader_worker_processes(monkeypatch):
    """The GPU feed (worker processes, kept alive by default) must not keep serving the first size: the loop turns
    persistent workers off when the size changes. Run on the CPU with the GPU's loader settings."""
    from lightning.fabric import Fabric
    from headstart.core.config import RunConfig
    from headstart.training import loop
    from headstart.training.strategies import Scratch
    monkeypatch.setattr(loop, "loader_kwargs", lambda device, n=0, streamed=False: {"num_workers": 1, "persistent_workers": True})
    model = _Seen()
    loop.fit(Fabric(accelerator="cpu", devices=1), model, Scratch(RunConfig(epochs=1, scratch_lr=1e-3)),
             _SizeEcho(16), _SizeEcho(8), batch_fn=lambda b: b, max_epochs=4, patience=99, batch_size=8,
             weight_decay=0.0, seed=0, sizes=[24, 24, 48, 48])
    assert model.seen == [24.0] * 4 + [48.0] * 4       # two training batches per epoch
