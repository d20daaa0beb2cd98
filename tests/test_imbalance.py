"""Imbalanced classes (issue 25): the decision metric, class weights in every arm, splits that keep the rare class,
collapse flags, the binary operating point through export and predict, and one CLI run on an imbalanced folder."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch


def test_the_default_metric_follows_the_imbalance_ratio_and_the_user_wins():
    from headstart.stats.metrics import choose_metric, rebalance_mode
    assert choose_metric([0] * 193 + [1] * 14, 2)[0] == "balanced_accuracy"
    assert choose_metric([0] * 124 + [1] * 121, 2)[0] == "accuracy"          # hymenoptera: nothing changes
    assert choose_metric([0] * 30 + [1] * 10, 2)[0] == "accuracy"            # 3:1 exactly is still balanced enough
    assert choose_metric([0] * 31 + [1] * 10, 2)[0] == "balanced_accuracy"
    assert choose_metric([0] * 193 + [1] * 14, 2, "macro_f1")[0] == "macro_f1"
    assert rebalance_mode("auto", [0] * 50 + [1] * 5, 2) == "logit-adjust"
    assert rebalance_mode("auto", [0] * 1000 + [1] * 69, 2) == "none"         # rare but not scarce (TREC's ABBR)
    assert rebalance_mode("auto", [0, 1] * 20, 2) == "none"
    assert rebalance_mode("class-weights", [0, 1] * 20, 2) == "class-weights"
    assert rebalance_mode("none", [0] * 50 + [1], 2) == "none"


def test_metrics_from_confusion_match_scikit_learn():
    """Oracle: the one confusion-matrix implementation (loop, racing, bootstrap) equals scikit-learn's metrics."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    from headstart.stats.metrics import item_weights, score
    rng = np.random.default_rng(0)
    for k in (2, 5):
        y = rng.choice(k, 300, p=np.r_[0.7, np.full(k - 1, 0.3 / (k - 1))])
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, k, 300))
        assert score("accuracy", y, pred, k) == pytest.approx(accuracy_score(y, pred))
        assert score("balanced_accuracy", y, pred, k) == pytest.approx(balanced_accuracy_score(y, pred))
        assert score("macro_f1", y, pred, k) == pytest.approx(f1_score(y, pred, average="macro"))
        # per-item credits average to the metric: validation ties stay paired per item
        w = item_weights("balanced_accuracy", y, k)
        assert np.mean((pred == y) * w) == pytest.approx(balanced_accuracy_score(y, pred))


def test_the_rebalanced_probes_match_their_oracles_and_recall_the_rare_class():
    """class-weights: scikit-learn's class_weight="balanced" fit; logit-adjust: the plain fit with the log prior
    subtracted from the bias (the logit-adjusted loss's solution when the intercept is not penalised)."""
    from sklearn.linear_model import LogisticRegression
    from headstart.stats.metrics import class_weights, log_prior
    from headstart.stats.probe import fit_head, fit_probe
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(190, int), np.ones(12, int)]
    x = rng.normal(size=(len(y), 6)) + 0.9 * y[:, None]
    cw = class_weights(y, 2)
    assert cw == pytest.approx([202 / (2 * 190), 202 / (2 * 12)])
    w, b, _ = fit_head(x, y, 1.0, 2, 0, class_weight=cw)
    mean, scale = x.mean(0), np.maximum(x.std(0), 0.01 * np.median(x.std(0)) + 1e-12)
    ref = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced").fit((x - mean) / scale, y)
    z = x @ w.T + b
    assert (z[:, 1] - z[:, 0]) == pytest.approx(ref.decision_function((x - mean) / scale), abs=1e-3)
    split = {"train": list(range(0, 202, 2)), "val": list(range(1, 202, 2))}
    plain = fit_probe(x, y, split, [1.0], 2)
    weighted = fit_probe(x, y, split, [1.0], 2, rebalance="class-weights")
    adjusted = fit_probe(x, y, split, [1.0], 2, rebalance="logit-adjust")
    np.testing.assert_allclose(adjusted.train_weight, plain.train_weight)
    np.testing.assert_allclose(adjusted.train_bias, plain.train_bias - log_prior(y[split["train"]], 2), rtol=1e-5)
    both = split["train"] + split["val"]
    np.testing.assert_allclose(adjusted.bias, plain.bias - log_prior(y[both], 2), rtol=1e-5)
    rare = y == 1
    recall = lambda p: float((p.logits(x[rare]).argmax(1) == 1).mean())  # noqa: E731
    assert recall(weighted) > recall(plain) + 0.2 and recall(adjusted) > recall(plain) + 0.2


def test_the_loop_loss_is_the_class_weighted_mean_and_records_the_decision_metric():
    """Oracle: _run_epoch's loss over several batches equals one weighted cross-entropy over the whole set, and its
    score equals scikit-learn's balanced accuracy of the same predictions."""
    import torch.nn.functional as F
    from lightning.fabric import Fabric
    from sklearn.metrics import balanced_accuracy_score
    from headstart.training.loop import _run_epoch
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.tensor([0] * 40 + [1] * 7 + [2] * 3)
    model = torch.nn.Linear(4, 3)
    w = torch.tensor([0.4, 2.0, 5.0])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    loss, acc, score = _run_epoch(Fabric(accelerator="cpu", devices=1), model, loader, lambda b: b, weight=w,
                                  metric="balanced_accuracy")
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(float(F.cross_entropy(logits, y, weight=w)), rel=1e-5)
    assert score == pytest.approx(balanced_accuracy_score(y, logits.argmax(1)))
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    # logit adjustment: the offset enters the loss, never the predictions
    off = torch.log(torch.tensor([0.8, 0.14, 0.06]))
    loss, acc2, score2 = _run_epoch(Fabric(accelerator="cpu", devices=1), model, loader, lambda b: b,
                                    metric="balanced_accuracy", offset=off)
    assert loss == pytest.approx(float(F.cross_entropy(logits + off, y)), rel=1e-5)
    assert (acc2, score2) == (acc, score)


def test_splits_keep_at_least_three_of_a_rare_class_in_validation_and_test():
    from headstart.stats.split import make_split
    labels = [0] * 193 + [1] * 14
    sp = make_split([""] * len(labels), labels, ["ants", "bees"], 0.2, 0.2, 0)
    for role in ("val", "test", "train"):
        assert sum(labels[i] for i in sp[role]) >= 3, role
    # train/ with 12 bees and a given val/ (the test set): 20% of 12 would be 2 validation bees; now 3
    labels = [0] * 124 + [1] * 12 + [0] * 70 + [1] * 83
    sources = ["train"] * 136 + ["val"] * 153
    sp = make_split(sources, labels, ["ants", "bees"], 0.2, 0.2, 0)
    assert sum(labels[i] for i in sp["val"]) == 3 and sum(labels[i] for i in sp["train"]) == 9
    # balanced classes split as before
    sp = make_split(["train"] * 244 + ["val"] * 10, [0] * 123 + [1] * 121 + [0, 1] * 5, ["a", "b"], 0.2, 0.2, 0)
    assert len(sp["val"]) == 25 + 24


def test_collapse_is_flagged_and_operating_thresholds_need_enough_validation_items():
    from headstart.stats.metrics import collapse, collapse_words, operating_threshold
    y = np.array([0] * 39 + [1] * 3)
    flag = collapse(y, [np.zeros(42, int)], ["ants", "bees"])
    assert flag["collapsed"] and flag["one_class"] == "ants" and flag["ignored"] == [{"class": "bees", "items": 3}]
    assert collapse_words(flag) == "predicts ants for 100% of test items; never recalls bees (0 of 3)"
    healthy = collapse(y, [np.r_[np.zeros(38, int), [1], [1, 0, 1]]], ["ants", "bees"])
    assert not healthy["collapsed"] and not healthy["ignored"]
    assert not collapse(np.array([0] * 40 + [1]), [np.zeros(41, int)], ["a", "b"])["collapsed"]   # 1 item: no pattern
    rng = np.random.default_rng(0)
    yv = np.array([0] * 60 + [1] * 12)
    p = np.clip(0.25 * yv + rng.random(72) * 0.3, 0, 1)        # the positives score higher, all below 0.5
    t, why = operating_threshold(yv, p, "balanced_accuracy", 1)
    assert t < 0.5 and "maximises validation balanced accuracy" in why
    assert operating_threshold(yv[:63], p[:63], "balanced_accuracy", 1)[0] == 0.5      # 3 positives: kept at 0.5


def test_paired_differences_are_in_the_decision_metric():
    from headstart.stats.evaluate import metrics, paired_difference
    y = np.array([0] * 39 + [1] * 3)
    majority = np.tile([0.9, 0.1], (42, 1))
    good = majority.copy()
    good[39:] = [0.2, 0.8]
    d = paired_difference(y, [good], [majority], 500, "balanced_accuracy")
    assert d["difference"] == pytest.approx(0.5) and d["metric"] == "balanced_accuracy"
    assert paired_difference(y, [good], [majority], 500)["difference"] == pytest.approx(3 / 42)
    m = metrics(y, [majority], ["ants", "bees"], reps=200, metric="balanced_accuracy", positive=1)
    assert m["score"] == 0.5 and m["accuracy"] == pytest.approx(39 / 42) and m["collapse"]["collapsed"]
    assert m["binary"]["recall"] == 0 and m["binary"]["positive"] == "bees" and m["binary"]["roc_auc"] == 0.5
    assert m["per_class_recall_ci"]["bees"][1] == pytest.approx(0.5615, abs=1e-3)      # 0 of 3: 0-56%


def test_the_operating_point_goes_through_export_and_predict(tiny_folder, tmp_path):
    from headstart.models.factory import create_backbone
    from headstart.outputs.export import save_model
    from headstart.outputs.predict import predict
    model, spec = create_backbone("efficientnet_lite0", 2)
    plain = tmp_path / "plain"
    save_model(plain, model.eval(), spec, ["cats", "dogs"], input_size=32)
    rows = [r for r in predict(plain, [str(tiny_folder)]) if "error" not in r]
    p_dogs = np.array([dict(r["top"])["dogs"] for r in rows])
    t = float(np.median(p_dogs))            # a threshold that must flip some argmax answers
    rule = {"positive": "dogs", "threshold": t, "why": "test", "metric": "balanced_accuracy"}
    ruled = tmp_path / "ruled"
    save_model(ruled, model.eval(), spec, ["cats", "dogs"], input_size=32, extra={"operating_point": rule})
    out = [r for r in predict(ruled, [str(tiny_folder)], top=1) if "error" not in r]
    assert [r["label"] for r in out] == ["dogs" if p >= t else "cats" for p in p_dogs]
    assert all(r["threshold"] == t and r["p_positive"] == pytest.approx(p) for r, p in zip(out, p_dogs))
    assert all(r["prob"] == pytest.approx(p if r["label"] == "dogs" else 1 - p, abs=1e-5)
               for r, p in zip(out, p_dogs))
    assert all(len(r["top"]) == 1 for r in out)


def test_build_context_leaves_the_callers_config_unchanged(tiny_folder, tmp_path):
    from headstart.core.config import RunConfig
    from headstart.pipeline.context import build_context
    cfg = RunConfig(data=str(tiny_folder), out=str(tmp_path / "run"), image_size=32)
    before = dataclasses.asdict(cfg)
    ctx = build_context(cfg, log=lambda *a: None)
    assert dataclasses.asdict(cfg) == before
    assert ctx.cfg.modality == "image" and ctx.cfg.backbone and ctx.cfg.epochs and ctx.cfg.strategies
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == ctx.cfg.to_dict()
    assert ctx.decision.metric == "accuracy" and ctx.decision.rebalance == "none"


def test_predicted_vs_measured_has_a_practical_margin_and_knows_a_test_set_too_small_to_check():
    from headstart.pipeline.assess import measured_words
    assert measured_words({"difference": 0.013, "ci": [0.005, 0.021], "significant": True}).startswith("within")
    assert measured_words({"difference": 0.111, "ci": [0.088, 0.132], "significant": True}) == "transfer helped"
    assert measured_words({"difference": 0.08, "ci": [-0.03, 0.18], "significant": False}).startswith("too few")
    assert measured_words({"difference": -0.05, "ci": [-0.08, -0.02], "significant": True}) == "transfer lost"
    # wide but clear of zero: a +46-point win checks a call however wide its interval
    assert measured_words({"difference": 0.458, "ci": [0.353, 0.556], "significant": True}) == "transfer helped"


def test_cli_run_on_an_imbalanced_folder_weights_every_arm_and_names_the_metric(tmp_path):
    """24 cats : 6 dogs. Every arm trains logit-adjusted, balanced accuracy is the decision metric in results.json,
    the summary and the report, and the rare class keeps 2+ items in validation and test."""
    from conftest import make_image_folder
    data = make_image_folder(tmp_path / "imb", per_class=24, extras=False)
    for f in sorted((data / "dogs").iterdir())[6:]:
        f.unlink()
    out = tmp_path / "run"
    args = ["run", data, "--out", out, "--image-size", 32, "--epochs", 2, "--batch-size", 8, "--strategies",
            "classic,linear-probe,finetune", "--no-assess"]
    r = subprocess.run([sys.executable, "-m", "headstart", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["metric"]["name"] == "balanced_accuracy" and res["metric"]["rebalance"] == "logit-adjust"
    assert res["metric"]["positive_class"] == "dogs" and res["metric"]["imbalance_ratio"] > 3
    for s in ("classic", "linear-probe", "finetune"):
        assert res["strategies"][s]["policy"]["rebalance"] == "logit-adjust", s
    for s, m in res["strategies"].items():
        assert m["metric"] == "balanced_accuracy" and "score_ci" in m and "collapse" in m and "binary" in m, s
        assert "val_score" in m and len(m["val_credit"]) == len(m["val_correct"]), s
    assert res["paired_differences"]["finetune - classic"]["metric"] == "balanced_accuracy"
    split = json.loads((out / "split.json").read_text())
    assert all(sum(c == "dogs" for _, c in split[role]) >= 1 for role in ("train", "val", "test"))
    assert sum(c == "dogs" for _, c in split["test"]) >= 1
    history = (out / "finetune" / "seed0" / "metrics.csv").read_text().splitlines()[0]
    assert "val_score" in history
    assert "decision metric: balanced accuracy" in r.stdout
    report = (out / "report.md").read_text()
    assert "**Decision metric: balanced accuracy**" in report and "test balanced accuracy (95% CI)" in report
    assert "logit-adjusted losses in every arm" in report


def test_export_recommended_saves_the_deployed_seeds_threshold_and_predict_applies_it(tiny_folder, tmp_path):
    """summarize's operating point (per seed) -> export_recommended -> model/headstart_model.json -> predict."""
    from headstart.core.config import RunConfig
    from headstart.core.results import UnitResult, unit_dir, write_unit_result
    from headstart.models.weights import save_weights
    from headstart.outputs.export import export_recommended
    from headstart.outputs.predict import predict
    from headstart.pipeline.context import build_context
    ctx = build_context(RunConfig(data=str(tiny_folder), out=str(tmp_path / "run"), image_size=32, seeds=2),
                        log=lambda *a: None)
    ctx = dataclasses.replace(ctx, decision=dataclasses.replace(ctx.decision, positive=1))
    torch.manual_seed(0)
    for seed, loss in ((0, 0.9), (1, 0.3)):                  # seed 1 has the lower validation loss: it is exported
        folder = unit_dir(ctx.run_dir, "linear-probe", seed)
        folder.mkdir(parents=True)
        save_weights(folder / "weights.safetensors", {"weight": torch.randn(2, 1280) * 0.05, "bias": torch.zeros(2)})
        write_unit_result(folder, UnitResult(strategy="linear-probe", seed=seed, val_loss=loss, val_acc=0.5))
    ops = [{"seed": 0, "threshold": 0.9, "why": "x"}, {"seed": 1, "threshold": 0.2, "why": "tuned"}]
    results = {"recommended": "linear-probe", "strategies": {"linear-probe": {"operating_point": ops}}}
    exported = export_recommended(ctx, results)
    meta = json.loads((ctx.run_dir / "model" / "headstart_model.json").read_text())
    assert meta["seed"] == 1 and meta["operating_point"]["threshold"] == 0.2
    assert meta["operating_point"]["positive"] == "dogs" and exported.operating_point["threshold"] == 0.2
    rows = [r for r in predict(ctx.run_dir / "model", [str(tiny_folder)]) if "error" not in r]
    assert rows and all(r["label"] == ("dogs" if r["p_positive"] >= 0.2 else "cats") for r in rows)


def test_the_assessments_knn_sees_a_rare_class_once_its_vote_is_rebalanced():
    """6 bees among 130 ants: a plain 5-NN vote never names a bee (balanced accuracy 0.5, 'features useless');
    divided by the class prior, the same neighbours recall them (the hym-124-6 variant's wrong classic call)."""
    from headstart.stats.transferability import knn_accuracy
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(130, int), np.ones(6, int)]
    f = np.r_[rng.normal(size=(130, 2)), rng.normal(1.2, 0.4, size=(6, 2))]
    plain = knn_accuracy(f, y, scoring="balanced_accuracy", metric="euclidean")
    adjusted = knn_accuracy(f, y, scoring="balanced_accuracy", metric="euclidean", adjust=True)
    assert plain < 0.55 and adjusted > 0.85


def test_thin_validation_of_a_rare_class_chooses_c_by_cross_validation_on_train_and_val():
    from headstart.stats.probe import fit_probe, thin_validation_folds
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(120, int), np.ones(12, int)]
    x = rng.normal(size=(len(y), 8)) + 1.5 * y[:, None]
    split = {"train": list(range(0, 100)) + list(range(120, 129)), "val": list(range(100, 120)) + [129, 130, 131]}
    folds = thin_validation_folds(y, np.array(split["train"]), np.array(split["val"]), 2, 10, 0)
    assert len(folds) == 5 and sorted(np.concatenate([b for _, b in folds])) == sorted(split["train"] + split["val"])
    assert all(set(a).isdisjoint(b) and (y[b] == 1).sum() >= 2 for a, b in folds)      # stratified, held out
    assert thin_validation_folds(y, np.array(split["train"]), np.array(split["val"]), 2, 3, 0) is None
    p = fit_probe(x, y, split, [0.01, 1.0], 2, rebalance="logit-adjust", cv_below=10)
    assert "cross-validation" in p.chosen_by and all("cv_loss" in r for r in p.sweep)
    assert p.C == min(p.sweep, key=lambda r: r["cv_loss"])["C"]
    plain = fit_probe(x, y, split, [0.01, 1.0], 2, rebalance="logit-adjust")
    assert "cv_loss" not in plain.sweep[0] and plain.chosen_by.startswith("validation")


def test_the_best_transfer_arm_breaks_a_validation_tie_as_the_deploy_choice_does():
    """predicted-vs-measured compared the probe while fine-tuning was deployed (tie on 3 validation bees)."""
    from headstart.core.run_results import RunResults
    from headstart.pipeline.summarize import choose
    arms = {"linear-probe": {"val_acc": 0.9, "val_score": 1.0, "val_loss": 0.4},
            "finetune": {"val_acc": 0.9, "val_score": 1.0, "val_loss": 0.2}}
    best_arm = lambda: RunResults.from_dict({"strategies": arms}).best_arm(["linear-probe", "finetune"])  # noqa: E731
    assert best_arm() == "finetune" == choose(arms, 40).recommended
    arms["linear-probe"]["val_score"] = 1.0 + 1e-9                  # equal to 6 decimals: still the loss decides
    assert best_arm() == "finetune"
