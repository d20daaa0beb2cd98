"""Issue 29: what each arm said of each item (predictions.csv) and which labels to check again (cleanlab)."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest


def test_the_label_check_finds_flipped_labels_on_separable_features():
    """Three well-separated clusters, 12 of 180 labels moved to another class: the out-of-fold probe disputes
    them and cleanlab flags them, far above the 7% a random pick would hit."""
    from headstart.stats.label_issues import out_of_fold_probs, rank_issues, too_few
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    x = rng.normal(size=(180, 8)) + 4 * np.eye(3, 8)[y]
    flip = rng.choice(180, 12, replace=False)
    noisy = y.copy()
    noisy[flip] = (noisy[flip] + 1) % 3
    probs = out_of_fold_probs(x, noisy, C=1.0)
    assert probs.shape == (180, 3) and np.allclose(probs.sum(1), 1)
    found = set(rank_issues(noisy, probs))
    hit = len(found & set(flip.tolist()))
    assert hit / len(found) >= 0.8 and hit / len(flip) >= 0.6        # random picks: 12 / 180 = 7% precision
    assert np.median(probs[flip, noisy[flip]]) < 0.2          # out of fold, a wrong label is not memorised
    assert too_few(np.array([0, 0, 1]), ["a", "b"]).startswith("class(es) b")


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory):
    """A tiny image run where 2 cats sit in the dogs folder."""
    from conftest import make_image_folder
    from test_cli import hs
    root = tmp_path_factory.mktemp("mistakes")
    data = make_image_folder(root / "data", per_class=14)
    for f in sorted((data / "cats").glob("img*.jpg"))[:2]:
        shutil.move(f, data / "dogs" / f"was-cat-{f.name}")
    out = root / "run"
    (root / "cfg.json").write_text(json.dumps({"feature_dtype": "float32"}))     # predict runs in float32 too
    r = hs("run", data, "--out", out, "--image-size", 32, "--epochs", 1, "--strategies", "classic,linear-probe,scratch",
           "--seeds", 2, "--config", root / "cfg.json")
    assert r.returncode == 0, r.stdout + r.stderr
    return data, out


def test_predictions_csv_for_every_unit_match_predict_on_the_exported_model(flipped_run):
    import headstart
    from headstart.core.run_results import RunResults
    data, out = flipped_run
    res = json.loads((out / "results.json").read_text())
    classes = res["data"]["classes"]
    n_val, n_test = (sum(res["data"]["counts"][r].values()) for r in ("val", "test"))
    for s in ("classic", "linear-probe", "scratch"):
        for seed in (0, 1):
            with open(out / s / f"seed{seed}" / "predictions.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            assert [r["split"] for r in rows] == ["val"] * n_val + ["test"] * n_test
            assert all(r["correct"] == str(int(r["true"] == r["predicted"])) for r in rows)
            assert all(abs(sum(float(r[f"p_{c}"]) for c in classes) - 1) < 1e-4 for r in rows)
    every = RunResults.from_dict(res).predictions_rows()     # the run's predictions.csv, numbers as numbers
    assert len(every) == 3 * 2 * (n_val + n_test)
    m = res["model"]
    deployed = [r for r in every if r["strategy"] == m["strategy"] and r["seed"] == m["seed"] and r["split"] == "test"]
    said = headstart.predict(out / "model", [str(data / d["item"]) for d in deployed], top=len(classes))
    assert [p["label"] for p in said] == [d["predicted"] for d in deployed]
    for p, d in zip(said, deployed):
        assert all(abs(prob - d[f"p_{c}"]) < 1e-3 for c, prob in p["top"])


def test_the_run_lists_suspect_labels_in_a_csv_and_the_report(flipped_run):
    data, out = flipped_run
    res = json.loads((out / "results.json").read_text())
    li = res["label_issues"]
    assert li["checked"] == sum(res["data"]["counts"]["train"].values()) + sum(res["data"]["counts"]["val"].values())
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == li["flagged"] and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    moved = [r for r in rows if "was-cat" in r["item"]]
    assert moved and all(r["given"] == "dogs" and r["suggested"] == "cats" for r in moved)
    md = (out / "report.md").read_text()
    assert "## Labels to check" in md and "label_issues.csv" in md


# --- leftovers from the last user trial ---------------------------------------------------------------------------

def test_run_help_in_a_pipe_at_80_columns_keeps_descriptions_readable():
    """Rich's option panel gave every flag a column as wide as --progressive-resize/--no-progressive-resize: at 80
    columns each description wrapped to one word per line."""
    import os
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "headstart", "run", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "80"}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and any("comma list of backbones to compare" in ln for ln in lines)
    assert len(lines) < 160                      # 222 lines of one- and two-word fragments before


def test_a_hugging_face_imagefolder_with_metadata_in_its_split_folders(tmp_path):
    """train/metadata.csv and test/metadata.csv beside their images (the layout `datasets` writes) was refused as
    "no images found"; the split folders give the split."""
    from conftest import make_image_folder
    from headstart.core.tables import scan_media
    src = make_image_folder(tmp_path / "src", per_class=6, extras=False)
    for split, part in (("train", slice(0, 4)), ("test", slice(4, 6))):
        (tmp_path / "hf" / split).mkdir(parents=True)
        lines = ["file_name,label"]
        for c in ("cats", "dogs"):
            for f in sorted((src / c).glob("*.jpg"))[part]:
                shutil.copy(f, tmp_path / "hf" / split / f"{c}-{f.name}")
                lines.append(f"{c}-{f.name},{c}")
        (tmp_path / "hf" / split / "metadata.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "hf" / "test" / "metadata.csv").write_text(
        (tmp_path / "hf" / "test" / "metadata.csv").read_text() + "missing.jpg,cats\n")
    root, classes, entries, skipped, _ = scan_media(tmp_path / "hf", {".jpg"}, "images")
    assert classes == ["cats", "dogs"] and len(entries) == 12
    assert sorted(s for _, _, s in entries) == ["test"] * 4 + ["train"] * 8
    assert skipped[0]["reason"].startswith("file not found") and "test/metadata.csv" in skipped[0]["path"]


def test_readme_says_where_the_lite1_lite2_weights_come_from():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    for i, line in enumerate(readme):
        if "--backbones efficientnet_lite0,efficientnet_lite1" in line:
            assert any("[lite12]" in x for x in readme[max(0, i - 3): i + 1]), line


def test_the_gallery_shows_confident_mistakes_first_and_counts_the_disagreements(tiny_folder, tmp_path):
    """Constructed predictions: the exported arm is wrong on two test items (0.9 and 0.6 sure), scratch gets one of
    them right and misses another: the gallery orders by confidence, thumbnails the images, counts both sides."""
    from PIL import Image
    from headstart.core.run_results import RunResults
    from headstart.outputs.gallery import make_gallery
    from headstart.outputs.report_gallery import gallery_lines
    items = [f"cats/img {i}.jpg" for i in range(2)] + [f"dogs/img {i}.jpg" for i in range(2)]
    said = {"linear-probe": [("dogs", 0.6), ("cats", 0.8), ("cats", 0.9), ("dogs", 0.7)],
            "scratch": [("cats", 0.7), ("cats", 0.6), ("cats", 0.55), ("cats", 0.8)]}
    lines = ["strategy,seed,split,item,true,predicted,correct,p_cats,p_dogs"]
    for s, preds in said.items():
        for item, (k, p) in zip(items, preds):
            true = item.split("/")[0]
            pc = p if k == "cats" else 1 - p
            lines.append(f"{s},0,test,{item},{true},{k},{int(k == true)},{pc},{1 - pc}")
    (tmp_path / "predictions.csv").write_text("\n".join(lines) + "\n")
    arm = {"accuracy": 0.5, "val_acc": 0.5}
    res = RunResults.from_dict({"config": {"out": str(tmp_path)}, "recommended": "linear-probe",
                                "data": {"root": str(tiny_folder), "modality": "image", "classes": ["cats", "dogs"]},
                                "model": {"strategy": "linear-probe", "seed": 0},
                                "strategies": {"linear-probe": arm, "scratch": arm}, "predictions": "predictions.csv"})
    g = make_gallery(res, tmp_path)
    assert [m.item for m in g.mistakes] == ["dogs/img 0.jpg", "cats/img 0.jpg"]       # 0.9 sure, then 0.6
    assert g.wrong == 2 and g.n_test == 4 and g.confused[0] in ({"true": "dogs", "predicted": "cats", "items": 1},
                                                               {"true": "cats", "predicted": "dogs", "items": 1})
    assert max(Image.open(tmp_path / g.mistakes[0].picture).size) <= 96
    assert (g.versus, g.only_mine, g.only_theirs) == ("scratch", 1, 1)      # dogs/img 1 vs cats/img 0
    assert g.disagreements[0].item == "cats/img 0.jpg"                          # where the deployed arm lost, first
    res.gallery = g
    text = "\n".join(gallery_lines(res))
    assert "wrong on 2 of 4 test items" in text and "1 right only by `linear-probe`, 1 right only by `scratch`" in text


def test_the_label_section_warns_when_the_probe_itself_is_weak():
    """8x8 digits through ImageNet features: the probe agrees with ~80% of the labels, so its 20 flags out of 200
    are mostly hard digits; the report says how far to trust the list."""
    from headstart.core.run_results import RunResults
    from headstart.outputs.report_labels import label_lines
    rows = [{"rank": 1, "item": "3/a.png", "split": "train", "given": "3", "suggested": "8", "p_given": 0.1,
             "p_suggested": 0.8}]
    weak = {"label_issues": {"checked": 200, "flagged": 20, "probe_accuracy": 0.79, "rows": rows,
                             "file": "label_issues.csv", "method": "m"}}
    strong = {"label_issues": {**weak["label_issues"], "probe_accuracy": 0.99}}
    assert "agrees with only 79%" in "\n".join(label_lines(RunResults.from_dict(weak)))
    assert "agrees with only" not in "\n".join(label_lines(RunResults.from_dict(strong)))
