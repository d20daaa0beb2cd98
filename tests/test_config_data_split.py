"""Config validation, image decoding (every mode to RGB, bad files listed), stratified saved splits."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headstart.core.config import RunConfig
from headstart.modalities.image_files import decode_image, load_image_folder, scan_image_folder
from headstart.core.errors import UserError
from headstart.stats.split import load_split, make_split, save_split


def test_config_roundtrip_and_errors(tmp_path):
    cfg = RunConfig(data="x", seeds=3, strategies=["scratch"])
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(UserError, match="valid keys: data, out"):
        RunConfig.from_dict({"data": "x", "epoch": 3})
    with pytest.raises(UserError, match="'seeds'"):
        RunConfig.from_dict({"seeds": "3"})
    assert RunConfig(epochs=10, scratch_epochs=4).effective_scratch_epochs() == 10   # never a smaller budget


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((rng.integers(0, 65535, (20, 30))).astype(np.uint16))
    else:
        img = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode in ("I;16",) else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, fmt)
    arr = decode_image(path.read_bytes(), short_side=16)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert min(arr.shape[:2]) == 16


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a = np.full((10, 10), 32768, dtype=np.uint16)    # mid-grey in 16 bits
    Image.fromarray(a).save(tmp_path / "g.tiff")
    arr = decode_image((tmp_path / "g.tiff").read_bytes(), short_side=10)
    assert 120 <= arr.mean() <= 135


@pytest.mark.parametrize("make, lo, hi", [
    (lambda g: (g / 255.0).astype(np.float32), 0.0, 1.0),                     # float TIFF in [0, 1] (was black)
    (lambda g: g.astype(np.float32), 0.0, 255.0),                             # float in [0, 255]
    (lambda g: (g / 255.0 * 2 - 1).astype(np.float32), -1.0, 1.0),            # signed float
    (lambda g: (g / 255.0 * 4095).astype(np.uint16), 0, 4095),                # 12-bit in 16 (was mean 7.9)
    (lambda g: (g / 255.0 * 65535).astype(np.uint16), 0, 65535),              # full 16-bit
    (lambda g: (g.astype(np.int32) - 128) * 100, -12800, 12700),              # signed 32-bit integers
])
def test_high_range_tiffs_decode_by_their_real_range(tmp_path, make, lo, hi):
    """A horizontal gradient in every range scientific exports use comes out as the same 8-bit gradient."""
    g = np.tile(np.arange(256, dtype=np.float64), (16, 1))
    a = make(g)
    assert a.min() == pytest.approx(lo, abs=1) and a.max() == pytest.approx(hi, abs=hi / 100 + 1)
    Image.fromarray(a).save(tmp_path / "g.tiff")
    arr = decode_image((tmp_path / "g.tiff").read_bytes(), short_side=16)
    row = arr[8, :, 0].astype(float)
    assert 110 <= arr.mean() <= 145 and row[-5:].mean() - row[:5].mean() > 200     # full contrast, not black


def test_not_a_number_pixels_are_refused(tmp_path):
    a = np.full((16, 16), np.nan, dtype=np.float32)
    Image.fromarray(a).save(tmp_path / "n.tiff")
    with pytest.raises(ValueError, match="not-a-number"):
        decode_image((tmp_path / "n.tiff").read_bytes(), short_side=16)


def test_alpha_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert decode_image((tmp_path / "t.png").read_bytes(), 8).min() == 255


def test_bad_files_skipped_and_listed(tiny_folder):
    (tiny_folder / "dogs" / "empty.png").write_bytes(b"")
    ds = load_image_folder(tiny_folder, short_side=32)
    skipped = {s["path"]: s["reason"] for s in ds.skipped}
    assert set(skipped) == {"dogs/broken.jpg", "dogs/empty.png"}
    assert "0 bytes" in skipped["dogs/empty.png"]
    assert len(ds) == 17 and ds.classes == ["cats", "dogs"]
    assert all(t.shape[0] == 3 and min(t.shape[1:]) == 32 for t in ds.items)


def test_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "only" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "only" / "a" / "x.png")
    with pytest.raises(UserError, match="at least 2 class"):
        scan_image_folder(tmp_path / "only")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        scan_image_folder(tmp_path / "empty")


def test_too_few_images_says_how_many():
    with pytest.raises(UserError, match="class 'b' has 2 item.*at least 3"):
        make_split([""] * 7, [0, 0, 0, 0, 0, 1, 1], ["a", "b"], 0.2, 0.2, seed=0)


def test_split_stratified_deterministic_and_disjoint():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    a = make_split([""] * 100, labels, ["a", "b", "c"], 0.2, 0.2, seed=0)
    b = make_split([""] * 100, labels, ["a", "b", "c"], 0.2, 0.2, seed=0)
    assert a == b
    sets = [set(a[r]) for r in ("train", "val", "test")]
    assert sum(map(len, sets)) == 100 and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    test_counts = np.bincount(np.asarray(labels)[a["test"]])
    assert list(test_counts) == [10, 6, 4]


def test_given_val_without_test_becomes_test():
    sources = ["train"] * 20 + ["val"] * 6
    labels = [0, 1] * 13
    s = make_split(sources, labels, ["a", "b"], 0.2, 0.2, seed=0)
    assert sorted(s["test"]) == list(range(20, 26))          # the given val/ is the held-out test set
    assert set(s["val"]) <= set(range(20)) and "val/" in s["roles"]["test"]


def test_saved_split_refuses_changed_data(tmp_path):
    paths, labels, classes = ["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"], [0, 0, 0, 1, 1, 1], ["a", "b"]
    s = make_split([""] * 6, labels, classes, 0.3, 0.3, seed=0)
    save_split(tmp_path / "split.json", s, paths, labels, classes)
    assert load_split(tmp_path / "split.json", paths, labels, classes)["test"] == s["test"]
    with pytest.raises(UserError, match="data changed"):
        load_split(tmp_path / "split.json", paths, [0, 0, 1, 1, 1, 1], classes)


def test_precision_auto_is_mixed_on_gpu_and_float32_on_cpu():
    from headstart.core.config import RunConfig
    from headstart.models.device import resolve_precision
    assert resolve_precision(RunConfig(accelerator="cpu")) == "32-true"
    assert resolve_precision(RunConfig(accelerator="cuda")) == "bf16-mixed"
    assert resolve_precision(RunConfig(accelerator="cuda", precision="16-mixed")) == "16-mixed"


def test_runs_resume_from_anywhere_grow_by_a_seed_and_failed_starts_do_not_pin_the_config(tmp_path, monkeypatch):
    """config.json stores the data and run folder absolute (resume and "Reproduce" work from another directory);
    a finished run takes another seed or strategy without retraining; a run that stopped before any unit finished
    may be started again with other settings."""
    import json
    from conftest import make_image_folder
    from headstart.app.run import run_experiment
    from headstart.core.results import unit_result
    make_image_folder(tmp_path / "data", per_class=6, extras=False)
    monkeypatch.chdir(tmp_path)
    base = dict(data="data", out="run", image_size=32, strategies=["classic"], assess=False, jobs=1)
    run_experiment(RunConfig(**base), log=lambda *a: None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"] == str(tmp_path / "data") and saved["out"] == str(tmp_path / "run")
    first = (tmp_path / "run" / "classic" / "seed0" / "result.json").stat().st_mtime_ns
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    logs = []
    res = run_experiment(RunConfig(**{**base, "data": "../data", "out": "../run", "seeds": 2,
                                      "strategies": ["classic", "linear-probe"]}), log=logs.append).to_dict()
    assert (tmp_path / "run" / "classic" / "seed0" / "result.json").stat().st_mtime_ns == first   # reused
    assert unit_result(tmp_path / "run", "classic", 1) and unit_result(tmp_path / "run", "linear-probe", 1)
    assert res["strategies"]["classic"]["seeds"] == 2 and any("1 of 4 unit(s) already finished" in x for x in logs)
    # a start that failed before training (every image unreadable) leaves no finished unit: new settings are fine
    bad = tmp_path / "bad"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        for i in range(6):
            (bad / c / f"{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError):
        run_experiment(RunConfig(data=str(bad), out=str(tmp_path / "run2"), image_size=32, assess=False),
                       log=lambda *a: None)
    make_image_folder(bad, per_class=6, extras=False)
    for f in bad.rglob("*.jpg"):
        if f.read_bytes() == b"not an image":
            f.unlink()
    run_experiment(RunConfig(data=str(bad), out=str(tmp_path / "run2"), image_size=48, strategies=["classic"],
                             assess=False, jobs=1), log=lambda *a: None)
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["image_size"] == 48
