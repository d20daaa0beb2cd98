"""Large data (issue 27): images read from disk per batch beyond the decoded-image budget give the numbers of images
kept in memory; the near-duplicate index finds what the exact search finds; the C sweep on a sample fits the chosen
C on every item; token ids in one array; progress lines with items/s and time left; stage times counted once."""
from __future__ import annotations

import numpy as np
import pytest


def test_streamed_images_give_the_in_memory_results(tmp_path, monkeypatch):
    """HEADSTART_DECODED_GIB=0: every image decoded again per access (DataLoader workers on the CPU); the run's
    frozen features, probe, classic and scratch numbers equal those of the same run with the images kept."""
    from conftest import make_image_folder
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    data = make_image_folder(tmp_path / "data", per_class=10)
    base = dict(data=str(data), image_size=32, epochs=1, strategies=["classic", "linear-probe", "scratch"],
                assess=False, check_labels=False)
    kept = run_experiment(RunConfig(out=str(tmp_path / "kept"), **base), log=lambda *a: None)
    monkeypatch.setenv("HEADSTART_DECODED_GIB", "0")
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "fresh-cache"))     # the frozen pass runs again
    streamed = run_experiment(RunConfig(out=str(tmp_path / "streamed"), **base), log=lambda *a: None)
    assert streamed.data.n_items == kept.data.n_items and streamed.data.skipped == kept.data.skipped
    for arm in ("classic", "linear-probe", "scratch"):
        a, b = kept.strategies[arm], streamed.strategies[arm]
        assert b.accuracy == a.accuracy and b.val_loss == pytest.approx(a.val_loss, rel=1e-5, abs=1e-6), arm


def test_image_files_decode_on_access_and_refuse_a_changed_file(tmp_path, monkeypatch):
    from conftest import make_image_folder
    from headstart.core.errors import UserError
    from headstart.modalities.image_files import load_image_folder, thumbnail
    from headstart.models.device import loader_kwargs
    data = make_image_folder(tmp_path / "data", per_class=4, extras=False)
    kept = load_image_folder(data, short_side=40)
    monkeypatch.setenv("HEADSTART_DECODED_GIB", "0")
    seen = []
    lazy = load_image_folder(data, short_side=40, progress=lambda n, total: seen.append((n, total)))
    assert not kept.items.streamed and lazy.items.streamed and not lazy.items.kept
    assert sum(n for n, _ in seen) == 8 and {t for _, t in seen} == {8}
    for j in range(len(kept)):
        assert (lazy.items[j] == kept.items[j]).all()
        assert np.array_equal(lazy.items.thumbs[j], thumbnail(kept.items[j]))
    assert loader_kwargs("cpu", 0, streamed=True)["num_workers"] >= 1 and loader_kwargs("cpu")["num_workers"] == 0
    victim = data / lazy.paths[0]
    victim.write_bytes(b"\xff\xd8\xff\xe0 not an image any more")
    with pytest.raises(UserError, match="changed or became unreadable during the run"):
        lazy.items[0]


def test_indexed_near_duplicates_match_the_exact_search(monkeypatch):
    """Above EXACT_MAX items the FAISS index finds the planted near copies the all-pairs search finds, with the
    same data-relative threshold (estimated from a sample of exact nearest neighbours)."""
    from headstart.stats import leakage
    rng = np.random.default_rng(0)
    n, d = 3000, 64
    f = rng.standard_normal((n, d)).astype(np.float32)
    src = rng.choice(n, 60, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), 60, replace=False)
    f[dst] = f[src] + 0.1 * rng.standard_normal((60, d))
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    exact, t_exact = leakage.exact_near_pairs(unit, 0.9)
    indexed, t_index = leakage.indexed_near_pairs(unit, 0.9)
    assert len(exact) >= 60 and set(exact) == set(indexed) and t_index == pytest.approx(t_exact, abs=0.01)

    class DS:                                       # find_duplicates switches to the index above EXACT_MAX
        hashes = [str(i) for i in range(n)]
        labels = [0] * n
        paths = [f"x{i}" for i in range(n)]
        classes = ["a"]

        def __len__(self):
            return n
    split = {"train": list(range(n)), "val": [], "test": []}
    monkeypatch.setattr(leakage, "EXACT_MAX", 1000)
    rep = leakage.find_duplicates(DS(), split, f, 0.9)
    assert {(p["ia"], p["ib"]) for p in rep["_pairs"]} == set(exact)


def test_the_sweep_on_a_sample_fits_the_chosen_c_on_every_item():
    from headstart.stats import probe as P
    rng = np.random.default_rng(1)
    x = rng.standard_normal((900, 8)).astype(np.float32)
    y = (x[:, 0] + 0.7 * rng.standard_normal(900) > 0).astype(int)
    split = {"train": list(range(600)), "val": list(range(600, 750)), "test": list(range(750, 900))}
    full = P.fit_probe(x, y, split, [0.01, 1.0], 2)
    assert "stratified" not in full.chosen_by
    sub = P.sweep_sample(y, np.arange(600), limit=200)
    assert len(sub) == 200 and abs(y[sub].mean() - y[:600].mean()) < 0.01     # stratified
    orig = P.SWEEP_MAX
    try:
        P.SWEEP_MAX = 200
        sampled = P.fit_probe(x, y, split, [0.01, 1.0], 2)
    finally:
        P.SWEEP_MAX = orig
    assert "stratified 200 of 600" in sampled.chosen_by
    w, b, _ = P.fit_head(x[:600], y[:600], sampled.C, 2, 0)     # oracle: the chosen C on every training item
    np.testing.assert_allclose(sampled.train_weight, w, atol=2e-3)     # lbfgs tolerance (warm-started)
    np.testing.assert_allclose(sampled.train_bias, b, atol=2e-3)
    on_sample, _, _ = P.fit_head(x[sub], y[sub], sampled.C, 2, 0)      # what a fit on the sample alone gives
    assert np.abs(on_sample - w).max() > 10 * np.abs(sampled.train_weight - w).max()


def test_token_store_round_trip_and_batches():
    from headstart.modalities.text import TokenBatches, TokenStore
    lists = [[101, 7, 8, 102], [101, 102], [101, 5, 6, 7, 8, 9, 102]]
    store = TokenStore([np.asarray(t, dtype=np.int32) for t in lists])
    assert len(store) == 3 and [list(s) for s in store] == lists and list(store.lengths) == [4, 2, 7]
    a, _ = TokenBatches(lists, [0, 1, 0], range(3)).collate([(t, 0) for t in lists])
    b, _ = TokenBatches(store, [0, 1, 0], range(3)).collate([(store[j], 0) for j in range(3)])
    assert (a["input_ids"] == b["input_ids"]).all() and (a["attention_mask"] == b["attention_mask"]).all()
    assert b["input_ids"].dtype == a["input_ids"].dtype


def test_progress_lines_say_rate_and_time_left():
    from headstart.pipeline.progress import stage_progress
    now = [0.0]
    lines = []
    tick = stage_progress(None, lines.append, "reading image files", 1000, every=10, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 3
        tick(100)
    assert lines[0] == "reading image files: 400/1,000 (33/s, ~18s left)"
    assert lines[-1].startswith("reading image files: 1,000/1,000 (33/s, 30s)")

    class Bar:
        disable = False

        def __init__(self):
            self.done = 0

        def add_task(self, label, total):
            return 1

        def advance(self, task, n):
            self.done += n
    bar = Bar()
    tick = stage_progress(bar, lines.append, "x", 10)
    tick(4)
    assert bar.done == 4


def test_stage_times_are_counted_once():
    import time
    from headstart.pipeline.state import Stages
    st = Stages()
    with st("assessment"):
        time.sleep(0.05)
        with st("frozen pass"):
            time.sleep(0.1)
    assert st.seconds["frozen pass"] >= 0.1 and 0.05 <= st.seconds["assessment"] < 0.1


def test_a_second_read_of_a_folder_decodes_only_what_changed(tmp_path, monkeypatch):
    """The read cache: with nothing kept in memory, a second read decodes no file (hashes, thumbnails and the
    skipped list from the cache); a file whose content changes is decoded again, alone."""
    import os

    from conftest import make_image_folder
    from headstart.modalities import image_files
    data = make_image_folder(tmp_path / "data", per_class=4)           # with a broken jpg among them
    monkeypatch.setenv("HEADSTART_DECODED_GIB", "0")
    decoded = []
    real = image_files.read_image_file
    monkeypatch.setattr(image_files, "read_image_file", lambda p, s: decoded.append(p.name) or real(p, s))
    first = image_files.load_image_folder(data, short_side=40, cache_dir=tmp_path / "cache")
    assert len(decoded) == 10 and len(first.skipped) == 1
    decoded.clear()
    again = image_files.load_image_folder(data, short_side=40, cache_dir=tmp_path / "cache")
    assert decoded == [] and again.hashes == first.hashes and again.skipped == first.skipped
    assert np.array_equal(again.items.thumbs, first.items.thumbs)
    victim = data / first.paths[0]
    other = data / first.paths[-1]
    victim.write_bytes(other.read_bytes())
    os.utime(victim, ns=(1, 1))                 # a new mtime too
    third = image_files.load_image_folder(data, short_side=40, cache_dir=tmp_path / "cache")
    assert decoded == [victim.name] and third.hashes[0] == first.hashes[-1]
    assert (third.items[0] == first.items[len(first) - 1]).all()       # decoded on access, as the new content


def test_classic_with_a_sampled_sweep_fits_the_chosen_c_on_every_text(tmp_path, monkeypatch):
    """Above SWEEP_MAX the classic sweep fits on a sample; its final fits see every item and learn the larger
    vocabulary that brings (a warm start from the sample's fit once failed on exactly that)."""
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    from headstart.stats import probe as P
    rng = np.random.default_rng(0)
    words = {"sport": "goal team match coach", "money": "bank loan rate fund"}
    rows = ["text,label"] + [f"{' '.join(rng.choice(words[t].split(), 2))} w{k} x{k % 7},{t}"
                             for k in range(160) for t in [("sport", "money")[k % 2]]]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(P, "SWEEP_MAX", 40)
    res = run_experiment(RunConfig(data=str(tmp_path / "t.csv"), out=str(tmp_path / "run"), strategies=["classic"],
                                   assess=False, check_labels=False), log=lambda *a: None)
    arm = res.strategies["classic"]
    assert arm.ok and "stratified 40 of" in arm.policy["chosen_by"] and arm.accuracy > 0.9


def test_rounds_split_passes_and_count_as_epochs():
    """A training set of at least 2 x round_items trains in rounds of round_items (whole batches), every item exactly
    once per pass (also with length-grouped batches), one validation per round; smaller sets and round_items 0 keep
    plain epochs. The text default leaves TREC (4,361 training questions) in plain epochs."""
    import torch
    from lightning.fabric import Fabric
    from torch.utils.data import TensorDataset
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from headstart.core.config import RunConfig
    from headstart.modalities.text import TextModality
    from headstart.training.loop import Rounds, fit, round_size
    from headstart.training.strategies import Scratch
    assert round_size(4361, TextModality.defaults["round_items"], 32) == 0
    assert round_size(6400, 2500, 32) == round_size(100_000, 2500, 32) == 2528 and round_size(4999, 2500, 32) == 0
    assert round_size(99, 0, 8) == 0
    lengths = list(np.random.default_rng(0).integers(3, 40, 640))
    r = Rounds(LengthGroupedSampler(32, lengths=lengths, generator=torch.Generator().manual_seed(0)), 160)
    rounds = [list(r) for _ in range(8)]           # two passes
    assert all(len(x) == 160 for x in rounds)
    for p in (0, 1):
        assert sorted(i for x in rounds[4 * p: 4 * p + 4] for i in x) == list(range(640))
    assert rounds[:4] != rounds[4:]                 # a fresh permutation per pass

    class Counted(TensorDataset):
        seen: list = []

        def __getitem__(self, i):
            self.seen.append(i)
            return super().__getitem__(i)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    tr, va = Counted(x[:200], y[:200]), TensorDataset(x[200:], y[200:])
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    for items, rounds_per_pass in ((50, 4), (0, 1), (150, 1)):
        Counted.seen = []
        torch.manual_seed(0)
        res = fit(fabric, torch.nn.Linear(8, 3), Scratch(RunConfig(epochs=4)), tr, va, batch_fn=lambda b: b,
                  max_epochs=4, patience=99, batch_size=10, weight_decay=0.0, seed=0, round_items=items)
        assert len(res.history) == 4 and res.round_items == (50 if rounds_per_pass > 1 else 0)
        per_epoch = 200 // rounds_per_pass
        assert len(Counted.seen) == 4 * per_epoch
        assert sorted(Counted.seen[:200]) == list(range(200))     # the first pass: every item once
        assert all(("round_items" in h) == (rounds_per_pass > 1) for h in res.history)


def test_similarity_blocks_stay_bounded_and_give_the_same_pairs(monkeypatch):
    """The all-pairs and nearest-neighbour products run in blocks of at most 2**26 similarities (a 1024-row block was
    4 GiB at a million items); any block size finds the same pairs and threshold."""
    from headstart.stats import leakage
    assert leakage._block(1_000_000) * 1_000_000 <= 2 ** 26 and leakage._block(3000) == 1024
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 16)).astype(np.float32)
    f[250:260] = f[:10] + 0.01 * rng.normal(size=(10, 16))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    whole = leakage.exact_near_pairs(f, 0.9)
    monkeypatch.setattr(leakage, "_block", lambda n: 7)
    assert leakage.exact_near_pairs(f, 0.9) == whole and len(whole[0]) >= 10


def test_classic_probabilities_in_chunks_equal_one_pass():
    """The classic arm predicts 20,000 items at a time (the TF-IDF of 200,000 texts at once took GiBs): per-row
    probabilities, so chunks give the same numbers; a class missing from training gets a zero column."""
    from headstart.modalities.text import TextModality
    from headstart.pipeline.arms import _full_probs
    texts = [f"{w} {w} item {i}" for i, w in enumerate(["goal match", "bread soup", "chip code"] * 8)]
    pipe = TextModality().classic_pipeline(1.0, 0).fit(texts, [0, 1, 3] * 8)
    one = _full_probs(pipe, texts, 4, chunk=10_000)
    assert np.array_equal(_full_probs(pipe, texts, 4, chunk=5), one) and not one[:, 2].any()
