"""Data the way users hold it: tables of image / audio paths, Hugging Face imagefolder metadata, Parquet, and the
guard that never trains on file paths as text."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import make_image_folder
from headstart.core.config import RunConfig
from headstart.core.errors import UserError
from headstart.modalities import detect_modality


def _path_table(tmp_path: Path, name="files.csv", column="path") -> Path:
    """Images in one flat folder (the class is only in the table), listed with a missing file and a missing label."""
    src = make_image_folder(tmp_path / "src", per_class=8, extras=False)
    flat = tmp_path / "pics"
    flat.mkdir()
    rows = []
    for k, f in enumerate(sorted(src.rglob("*.jpg"))):
        shutil.copy(f, flat / f"{k:03d}.jpg")
        rows.append({column: f"pics/{k:03d}.jpg", "label": f.parent.name})
    rows += [{column: "pics/missing.jpg", "label": "cats"}, {column: "pics/000.jpg", "label": ""}]
    table = tmp_path / name
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, [column, "label"])
        w.writeheader()
        w.writerows(rows)
    return table


def test_a_csv_of_image_paths_trains_on_the_images_never_on_the_paths(tmp_path):
    from headstart.app.run import run_experiment
    table = _path_table(tmp_path)
    assert detect_modality(str(table)) == "image"
    res = run_experiment(RunConfig(data=str(table), out=str(tmp_path / "run"), image_size=32, assess=False, jobs=1,
                                   strategies=["classic", "linear-probe"]), log=lambda *a: None).to_dict()
    assert res["data"]["modality"] == "image" and res["data"]["n_items"] == 16
    reasons = {s["path"]: s["reason"] for s in res["data"]["skipped"]}
    assert reasons == {"files.csv:18": "file not found: pics/missing.jpg", "files.csv:19": "missing label"}
    assert "RGB pixels" in res["strategies"]["classic"]["policy"]["features"]      # not TF-IDF on names
    # forced to read it as text, the path column is refused with the reason, not trained on
    with pytest.raises(UserError, match="holds file paths, not texts"):
        run_experiment(RunConfig(data=str(table), out=str(tmp_path / "t"), modality="text", text_col="path",
                                 assess=False), log=lambda *a: None)


def test_huggingface_imagefolder_metadata_and_split_column(tmp_path):
    from headstart.modalities.image import load_image_folder
    table = _path_table(tmp_path, "metadata.csv", column="file_name")
    rows = list(csv.DictReader(open(table)))
    for i, r in enumerate(rows):
        r["split"] = "test" if i % 4 == 0 else "train"
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["file_name", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    assert detect_modality(str(tmp_path)) == "image"      # the folder: its images, labelled by metadata.csv
    ds = load_image_folder(tmp_path / "pics" / "..", short_side=32)
    assert len(ds) == 16 and ds.classes == ["cats", "dogs"] and set(ds.sources) == {"train", "test"}
    assert ds.paths[0].startswith("pics/")


def test_parquet_table_of_texts(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from headstart.modalities.text import load_text
    texts = [f"the team scored goal {i}" for i in range(6)] + [f"bake the bread with salt {i}" for i in range(6)]
    labels = ["sport"] * 6 + ["food"] * 5 + [None]
    pq.write_table(pa.table({"text": texts, "label": labels}), tmp_path / "d.parquet")
    assert detect_modality(str(tmp_path / "d.parquet")) == "text"
    ds = load_text(tmp_path / "d.parquet")
    assert len(ds) == 11 and ds.classes == ["food", "sport"] and ds.skipped == [{"path": "d.parquet:13",
                                                                              "reason": "missing label"}]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(UserError, match="could not be read as Parquet"):
        load_text(tmp_path / "bad.parquet")


def test_a_table_of_audio_paths(tmp_path):
    np = pytest.importorskip("numpy")
    import soundfile as sf
    from headstart.modalities.audio import load_audio_folder
    rows = []
    for k in range(6):
        t = np.arange(8000) / 16000
        sf.write(tmp_path / f"c{k}.wav", (0.3 * np.sin(2 * np.pi * (300 + 200 * (k % 2)) * t)).astype("float32"),
                 16000)
        rows.append({"audio": f"c{k}.wav", "label": "low" if k % 2 == 0 else "high"})
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_modality(str(tmp_path / "clips.jsonl")) == "audio"
    ds = load_audio_folder(tmp_path / "clips.jsonl")
    assert len(ds) == 6 and ds.classes == ["high", "low"] and ds.paths[0] == "c0.wav"


class _Frame:
    """What headstart.run needs of a pandas DataFrame: to_csv (pandas itself is optional)."""

    def __init__(self, rows):
        self.rows = rows

    def to_csv(self, buf, index=False):
        w = csv.DictWriter(buf, list(self.rows[0]))
        w.writeheader()
        w.writerows(self.rows)


def test_python_api_runs_a_dataframe_and_returns_typed_results(tmp_path):
    import headstart
    words = {"sport": "match goal team score player league win", "food": "bread cheese soup recipe bake salt"}
    rows = [{"review": " ".join(w.split()[i % 5: i % 5 + 3]) + f" {i}", "stars": c}
            for c, w in words.items() for i in range(14)]
    res = headstart.run(_Frame(rows), out=str(tmp_path / "run"), text_col="review", label_col="stars",
                        strategies=["classic", "linear-probe"], assess=False, jobs=1, cache_dir=str(tmp_path / "c"),
                        log=None)
    assert isinstance(res, headstart.Results) and res.recommended == "linear-probe"
    arm = res.arms["linear-probe"]
    assert isinstance(arm, headstart.Arm) and 0 <= arm.accuracy_ci[0] <= arm.accuracy <= arm.accuracy_ci[1] <= 1
    d = res.difference("linear-probe", "classic")
    assert isinstance(d, headstart.Difference) and d.points_ci[0] <= d.points <= d.points_ci[1]
    assert d.points == pytest.approx(100 * d.difference) and d.beyond_noise == d.significant
    assert res.verdict().startswith("Deploy linear-probe") and res.report.exists()
    frame_csv = Path(res.raw["config"]["data"])
    assert frame_csv.parent == tmp_path / "c" / "frames" and frame_csv.read_text().startswith("review,stars")
    again = headstart.run(_Frame(rows), out=str(tmp_path / "run"), text_col="review", label_col="stars",
                          strategies=["classic", "linear-probe"], assess=False, jobs=1,
                          cache_dir=str(tmp_path / "c"), log=None)   # the same frame: the same file, a resume
    assert again.raw["config"]["data"] == str(frame_csv)
    rows_out = headstart.predict(res.model_dir, ["the team scored a goal"])
    assert rows_out[0]["label"] in words and rows_out[0]["path"] == "arg 1"


def test_group_col_keeps_each_group_in_one_split(tmp_path):
    """Ten speakers, three utterances each: with --group-col no speaker appears in two of train/val/test."""
    from typer.testing import CliRunner
    from headstart.app.cli import app
    from headstart.stats.split import make_split
    groups = [f"spk{i // 3}" for i in range(60)]
    labels = [i % 2 for i in range(60)]
    split = make_split([""] * 60, labels, ["a", "b"], 0.2, 0.2, 0, groups=groups)
    owner = {}
    for role in ("train", "val", "test"):
        for i in split[role]:
            assert owner.setdefault(groups[i], role) == role
    assert all(split[r] for r in ("train", "val", "test")) and "groups" in split["roles"]
    # end to end: the CLI flag reaches the split, and a missing column is named
    words = {"sport": "match goal team score player league win", "food": "bread cheese soup recipe bake salt"}
    lines = ["text,label,speaker"] + [f"{' '.join(w.split()[i % 4: i % 4 + 3])} {i},{c},s{i % 7}"
                                      for c, w in words.items() for i in range(15)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["run", str(tmp_path / "d.csv"), "--out", str(tmp_path / "run"), "--strategies",
                                 "classic", "--no-assess", "--group-col", "speaker"])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert "7 groups" in saved["roles"]["groups"]
    r = CliRunner().invoke(app, ["run", str(tmp_path / "d.csv"), "--out", str(tmp_path / "r2"), "--strategies",
                                 "classic", "--no-assess", "--group-col", "patient"])
    assert r.exit_code == 2 and "no column 'patient' for the --group-col" in r.output


def test_tracker_hook_logs_every_unit_to_tensorboard(tmp_path):
    """--tracker tensorboard: each unit's per-epoch curves and its test score land in <run>/tensorboard/<arm>/seed0
    (Lightning's TensorBoardLogger; the tags are readable in the event files)."""
    pytest.importorskip("tensorboardX")
    from headstart.app.run import run_experiment
    data = make_image_folder(tmp_path / "data", per_class=8, extras=False)
    run_experiment(RunConfig(data=str(data), out=str(tmp_path / "run"), image_size=32, epochs=2, assess=False,
                             jobs=1, strategies=["linear-probe", "finetune"], tracker="tensorboard"),
                   log=lambda *a: None)
    events = sorted((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert {e.parent.parent.name for e in events} == {"linear-probe", "finetune"}
    blob = b"".join(e.read_bytes() for e in events if e.parent.parent.name == "finetune")
    assert b"val_loss" in blob and b"train_acc" in blob and b"test/accuracy" in blob
    with pytest.raises(UserError, match="tracker"):
        RunConfig(data=str(data), tracker="wandb").validate()
    import importlib.util
    from headstart.outputs.track import check_tracker
    if importlib.util.find_spec("mlflow") is None:     # said before any training, with the install command
        with pytest.raises(UserError, match=r"pip install 'headstart\[mlflow\]'"):
            check_tracker("mlflow")
