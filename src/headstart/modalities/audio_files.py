"""Audio files: decode any rate/channels to 16 kHz mono, once per file while the folder is read, keeping each
clip's samples while the decoded budget lasts (base.decoded_budget_gib) and decoding the rest again when a batch
needs them, so memory stays flat in the number of clips.

    ds = load_audio_folder("clips/")          # root/<class>/*.wav|flac|ogg|mp3 (or train/ test/ ...), a table
    ds.items[j]                               # float32 samples of clip j (kept, or decoded from its file)
    ds.items.seconds, .rms, .clipped          # per-clip facts recorded while reading (the signal evidence)

Clips longer than 30 s are cut to their first 30 s (Whisper's encoder sees at most 30 s) and counted. A file that
cannot be decoded is skipped and listed with the reason; one that changes during the run is refused by name.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from headstart.core.dataset import LabeledSet, display_name, not_regular
from headstart.core.errors import UserError
from headstart.core.tables import labelled_media, scan_media
from headstart.modalities.base import decoded_budget_gib

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
RATE = 16000
MAX_SECONDS = 30
CHUNK = 64              # clips decoded per round while reading a folder


def decode_audio(path: Path) -> tuple[np.ndarray, dict]:
    """float32 mono 16 kHz samples; raises on unreadable, empty or non-finite audio."""
    import soundfile as sf
    from scipy.signal import resample_poly

    odd = not_regular(Path(path))
    if odd:
        raise ValueError(odd)
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("no samples (0-length audio)")
    if not np.isfinite(data).all():
        raise ValueError("contains NaN or infinite samples")
    x = data.mean(1)
    info = {"rate": int(rate), "channels": int(data.shape[1]), "seconds": len(x) / rate}
    if rate != RATE:
        g = np.gcd(int(rate), RATE)
        x = resample_poly(x, RATE // g, int(rate) // g).astype(np.float32)
    if len(x) > MAX_SECONDS * RATE:
        x = x[: MAX_SECONDS * RATE]
        info["truncated"] = True
    return x, info


def clip_digest(x: np.ndarray) -> str:
    return hashlib.sha1(x.tobytes()).hexdigest()


class AudioFiles:
    """The clips of a LabeledSet as a sequence of float32 16 kHz sample arrays: kept while their total stays within
    the decoded budget, the rest decoded from the file on each access (a changed file is refused: its samples' hash
    is checked). Per clip, whatever the budget: its length in samples, RMS level and whether it clips."""

    def __init__(self):
        self.files: list[Path] = []
        self.hashes: list[str] = []
        self.kept: dict[int, np.ndarray] = {}
        self.kept_bytes = 0
        self.samples: list[int] = []
        self.rms: list[float] = []
        self.clipped: list[float] = []        # share of samples at full scale

    @property
    def streamed(self) -> bool:
        return len(self.kept) < len(self.files)

    @property
    def seconds(self) -> np.ndarray:
        return np.asarray(self.samples, dtype=np.float64) / RATE

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, j) -> np.ndarray:
        j = int(j)
        if j in self.kept:
            return self.kept[j]
        try:
            x, _ = decode_audio(self.files[j])
            reason = "" if clip_digest(x) == self.hashes[j] else "new content"
        except Exception as e:  # noqa: BLE001 - named in the message below
            reason = f"{type(e).__name__}: {e}"[:200]
        if reason:
            raise UserError(f"{self.files[j]} changed or became unreadable during the run ({reason}); keep the data "
                            "unchanged while headstart runs, then run the same command to resume")
        return x

    def __iter__(self):
        return (self[j] for j in range(len(self)))

    def append(self, path: Path, x: np.ndarray, digest: str, budget: float) -> None:
        if self.kept_bytes + x.nbytes <= budget:
            self.kept[len(self.files)] = x
            self.kept_bytes += x.nbytes
        self.files.append(path)
        self.hashes.append(digest)
        self.samples.append(len(x))
        self.rms.append(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))
        self.clipped.append(float(np.mean(np.abs(x) >= 0.999)))

    def subset(self, keep: list[int]) -> "AudioFiles":
        """The clips at positions `keep`, in that order."""
        out = AudioFiles()
        for name in ("files", "hashes", "samples", "rms", "clipped"):
            setattr(out, name, [getattr(self, name)[j] for j in keep])
        out.kept = {k: self.kept[j] for k, j in enumerate(keep) if j in self.kept}
        out.kept_bytes = sum(x.nbytes for x in out.kept.values())
        return out


def read_clips(files: list[Path], progress=None) -> tuple[AudioFiles, list[int], dict[int, str], dict]:
    """Decode every file once, CHUNK at a time in threads: (AudioFiles of the readable ones, their positions in
    `files`, {position: why} for the others, loader facts: rates, channels, clips cut to 30 s)."""
    clips, good, bad = AudioFiles(), [], {}
    stats = {"truncated_to_30s": 0, "rates": {}, "channels": {}}
    budget = decoded_budget_gib() * 2 ** 30

    def read(path: Path):
        try:
            return decode_audio(path), None
        except Exception as e:  # skipped and listed, never fatal
            return None, f"{type(e).__name__}: {e}".strip()[:200]

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), CHUNK):
            chunk = files[start: start + CHUNK]
            for k, (path, (ok, reason)) in enumerate(zip(chunk, pool.map(read, chunk)), start):
                if ok is None:
                    bad[k] = reason
                    continue
                x, info = ok
                stats["truncated_to_30s"] += int(info.get("truncated", False))
                stats["rates"][info["rate"]] = stats["rates"].get(info["rate"], 0) + 1
                stats["channels"][info["channels"]] = stats["channels"].get(info["channels"], 0) + 1
                clips.append(path, x, clip_digest(x), budget)
                good.append(k)
            if progress:
                progress(len(chunk), len(files))
    return clips, good, bad, stats


def load_audio_folder(root: str | Path, label_col: str = "", group_col: str = "", progress=None) -> LabeledSet:
    """A folder of class subfolders, a table of clip paths and labels, or an HF audiofolder (metadata.csv)."""
    scan = scan_media(root, AUDIO_EXTS, "audio files", label_col, group_col)
    clips, good, bad, stats = read_clips([e[0] for e in scan[2]], progress)
    ds = labelled_media(scan, clips, good, bad, "audio files")
    ds.stats = stats
    return ds


def read_unlabelled_clips(files: list[Path]) -> LabeledSet:
    """Audio files without labels (label -1), decoded like the training clips; unreadable ones listed."""
    ds = LabeledSet(root=Path("."), classes=[])
    clips, good, bad, ds.stats = read_clips(files)
    ds.skipped = [{"path": display_name(str(files[k])), "reason": why} for k, why in sorted(bad.items())]
    for k, digest in zip(good, clips.hashes):
        ds.add(display_name(str(files[k])), -1, "", digest)
    ds.items = clips
    return ds
