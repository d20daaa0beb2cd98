"""Bad input of every kind: each case is either loaded correctly, or skipped and listed with the reason, or stopped
before any training with a one-line error naming the input and the fix (never a traceback).

CASES counts them for docs/reliability.md."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder
from headstart.core.errors import UserError


def _jpeg(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _huge_png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (decompression-bomb shape) without the pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _image_cases(root: Path) -> dict[str, str]:
    """Write bad or odd files into class 'cats'; returns file name -> expected outcome ('load' or a reason)."""
    rng = np.random.default_rng(0)
    d = root / "cats"
    good = _jpeg(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "zero.jpg").write_bytes(b"")
    (d / "text-as.jpg").write_text("I am not an image")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(buf, "PNG")
    (d / "png-named.jpg").write_bytes(buf.getvalue())
    (d / "bomb.png").write_bytes(_huge_png_header(30000, 30000))          # Pillow's own refusal (> 2x limit)
    (d / "big.png").write_bytes(_huge_png_header(15000, 15000))           # ours: above 1x the limit
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "one-pixel.png")
    exif = Image.Exif()
    exif[0x0112] = 6                     # orientation: rotate 90 degrees on display
    (d / "exif-rotated.jpg").write_bytes(_jpeg(np.zeros((20, 60, 3), np.uint8), exif=exif.tobytes()))
    (d / "café ünïcode name.jpg").write_bytes(good)
    return {"truncated.jpg": "truncated", "zero.jpg": "0 bytes", "text-as.jpg": "cannot identify",
            "png-named.jpg": "load", "bomb.png": "decompression bomb", "big.png": "decompression-bomb guard", "one-pixel.png": "load",
            "exif-rotated.jpg": "load", "café ünïcode name.jpg": "load"}


def test_bad_and_odd_image_files(tmp_path):
    from headstart.modalities.image import load_image_folder
    root = make_image_folder(tmp_path / "my imgs", per_class=4, extras=False)
    expected = _image_cases(root)
    (root / "empty class").mkdir()
    ds = load_image_folder(root, short_side=32)
    skipped = {Path(s["path"]).name: s["reason"] for s in ds.skipped}
    for name, outcome in expected.items():
        if outcome == "load":
            assert f"cats/{name}" in ds.paths, name
        else:
            assert outcome.lower() in skipped[name].lower(), (name, skipped.get(name))
    assert "empty class folder" in skipped["empty class"] and ds.classes == ["cats", "dogs"]
    rotated = ds.items[ds.paths.index("cats/exif-rotated.jpg")]
    assert rotated.shape[1] > rotated.shape[2]          # 60x20 landscape stored, shown (and loaded) as portrait
    assert ds.items[ds.paths.index("cats/one-pixel.png")].shape == (3, 32, 32)


@pytest.mark.parametrize("layout,message", [
    ("single", "at least 2 class"),
    ("test-only-label", "no training images"),
    ("nothing", "no images found"),
    ("all-corrupt", "could be decoded"),
])
def test_unusable_image_layouts_stop_with_a_clear_error(tmp_path, layout, message):
    from headstart.modalities.image import load_image_folder
    root = tmp_path / "data"
    if layout == "single":
        make_image_folder(root, classes=("only",), per_class=3, extras=False)
    elif layout == "test-only-label":
        make_image_folder(root / "train", per_class=3, extras=False)
        make_image_folder(root / "test", classes=("cats", "dogs", "owls"), per_class=2, extras=False)
    elif layout == "nothing":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
    else:
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            (root / c / "x.jpg").write_bytes(b"junk")
    with pytest.raises(UserError, match=message):
        load_image_folder(root, short_side=32)


def test_symlinked_class_folder_is_followed(tmp_path):
    from headstart.modalities.image import load_image_folder
    src = make_image_folder(tmp_path / "elsewhere", per_class=3, extras=False)
    root = tmp_path / "data"
    root.mkdir()
    for c in ("cats", "dogs"):
        (root / c).symlink_to(src / c, target_is_directory=True)
    assert len(load_image_folder(root, short_side=32)) == 6


def _wav(path: Path, x: np.ndarray, rate: int) -> None:
    import soundfile as sf
    sf.write(path, x, rate, subtype="FLOAT")


def test_bad_and_odd_audio_files(tmp_path):
    from headstart.modalities.audio import load_audio_folder
    rng = np.random.default_rng(0)
    for c in ("yes", "no"):
        (tmp_path / c).mkdir()
        _wav(tmp_path / c / "ok.wav", rng.normal(0, 0.1, 8000), 16000)
    d = tmp_path / "yes"
    _wav(d / "eight-channels.wav", rng.normal(0, 0.1, (4800, 8)), 48000)
    _wav(d / "8khz.wav", rng.normal(0, 0.1, 4000), 8000)
    _wav(d / "48khz.wav", rng.normal(0, 0.1, 24000), 48000)
    _wav(d / "empty.wav", np.zeros(0), 16000)
    nan = rng.normal(0, 0.1, 1600)
    nan[100] = np.nan
    _wav(d / "nan.wav", nan, 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk")
    (d / "zero-bytes.wav").write_bytes(b"")
    ds = load_audio_folder(tmp_path)
    for name, secs in (("eight-channels.wav", 0.1), ("8khz.wav", 0.5), ("48khz.wav", 0.5)):
        x = ds.items[ds.paths.index(f"yes/{name}")]
        assert x.ndim == 1 and len(x) == pytest.approx(secs * 16000, abs=2), name
    skipped = {s["path"] for s in ds.skipped}
    assert skipped == {"yes/empty.wav", "yes/nan.wav", "yes/corrupt.wav", "yes/zero-bytes.wav"}


def _table(tmp_path, name: str, content: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def test_csv_quirks_load_or_list_each_row(tmp_path):
    from headstart.modalities.text import load_text
    rows = "".join(f"text {i},{'a' if i % 2 else 'b'}\n" for i in range(6))
    bom = _table(tmp_path, "bom.csv", "\ufefftext,label\n" + rows)
    assert len(load_text(bom)) == 6                                             # BOM does not hide the header
    quoted = _table(tmp_path, "quoted.csv", 'text,label\n"two\nlines",a\n' + rows)
    ds = load_text(quoted)
    assert "two\nlines" in ds.items and len(ds) == 7
    messy = _table(tmp_path, "messy.csv", "text,label\n" + rows + "no label,\nextra,a,surprise\n,b\n")
    ds = load_text(messy)
    reasons = {s["path"]: s["reason"] for s in ds.skipped}
    assert reasons == {"messy.csv:8": "missing label", "messy.csv:9": "line 9: 1 more field(s) than the header",
                       "messy.csv:10": "empty text"}


@pytest.mark.parametrize("name,content,message", [
    ("latin1.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), "line 2 is not valid utf-8"),
    ("header.csv", "text,label\n", "header but no rows"),
    ("empty.csv", "", "is empty"),
    ("onelabel.csv", "text,label\nx,a\ny,a\n", "at least 2"),
    ("nocols.csv", "foo,bar\nx,a\n", "pass --text-col"),
])
def test_unusable_tables_stop_with_a_clear_error(tmp_path, name, content, message):
    from headstart.modalities.text import load_text
    with pytest.raises(UserError, match=message):
        load_text(_table(tmp_path, name, content))


def test_ten_thousand_classes_stop_before_training(tmp_path):
    """10 000 labels with 2 rows each cannot be split into train/val/test: said before anything is trained."""
    from headstart.stats.split import make_split
    from headstart.modalities.text import load_text
    rows = "".join(f"sample {i} of {k},c{k}\n" for k in range(10000) for i in range(2))
    ds = load_text(_table(tmp_path, "many.csv", "text,label\n" + rows))
    assert len(ds.classes) == 10000
    with pytest.raises(UserError, match="needs at least"):
        make_split(ds.sources, ds.labels, ds.classes, 0.2, 0.2, 0)


def test_cli_errors_name_the_input_and_the_fix(tmp_path):
    from test_cli import hs
    bad_cfg = _table(tmp_path, "cfg.json", '{"epochs": "ten", "bogus": 1}')
    cases = [(["run", tmp_path / "nope"], "does not exist"),
             (["run", tmp_path, "--config", bad_cfg], "valid keys"),
             (["predict", tmp_path, "x.jpg"], "not a headstart model folder"),
             (["assess", tmp_path / "nope"], "does not exist"),
             (["demo", "--curve", "half"], "comma-separated numbers"),
             (["demo", "--per-class", "2"], "too small")]
    from test_hostile import cli
    for k, (args, message) in enumerate(cases):
        if k == 0:                  # one as a real process; the rest in-process (same CLI code, 30 s less CI)
            r = hs(*args)
            assert r.returncode == 2 and message in r.stdout, (args, r.stdout)
            assert "Traceback" not in r.stdout + r.stderr
        else:
            r = cli(*args)
            assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (args, r.output)


def test_run_on_odd_paths_end_to_end(tmp_path):
    """Spaces, non-ASCII, a symlinked class folder and a few bad files: the run finishes and lists them."""
    import json
    from test_cli import hs
    src = make_image_folder(tmp_path / "src", per_class=8)
    root = tmp_path / "dätä with spaces"
    root.mkdir()
    (root / "cats").symlink_to(src / "cats", target_is_directory=True)
    (root / "dogs ü").symlink_to(src / "dogs", target_is_directory=True)
    out = tmp_path / "rün out"
    r = hs("run", root, "--out", out, "--strategies", "classic", "--no-assess")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["classes"] == ["cats", "dogs ü"]
    assert [s["path"] for s in res["data"]["skipped"]] == ["dogs ü/broken.jpg"]


CASES = 9 + 1 + 4 + 1 + 7 + 3 + 2 + 5 + 1 + 6 + 1    # per test above, in order
