"""Speech/audio: Whisper log-mels (or normalised samples for wav2vec2-like families), mel batches, the MFCC
baseline, signal evidence, and prediction from files. Reading the files: modalities/audio_files.py.

    ds = load_audio_folder("clips/")                      # root/<class>/*.wav|flac|ogg|mp3 (or train/ test/ ...)
    mel = log_mel(x)                                      # (80, frames) at the clip's own length
    AudioModality()                                       # the Modality (modalities/base.py) for speech

Clips longer than 30 s are cut to their first 30 s (Whisper's encoder sees at most 30 s) and counted in the
results. The encoder runs on each clip's own length (positional embedding sliced) instead of 30 s of padding;
`pad_to_30s=True` reproduces Whisper's padded input for comparison.
"""
from __future__ import annotations

import functools
import io

import numpy as np
import torch

from headstart.core.dataset import LabeledSet, display_name
from headstart.models.device import loader_kwargs, to_device, to_numpy
from headstart.models.factory import family
from headstart.modalities.audio_files import (AUDIO_EXTS, RATE, decode_audio,  # noqa: F401
                                              load_audio_folder, read_unlabelled_clips)
from headstart.modalities.base import IndexedItems, ModalityBase, ModalityState, expand_inputs, standardised_logreg, top_k

def log_mel(x: np.ndarray, pad_to_30s: bool = False) -> np.ndarray:
    """Whisper's 80-bin log-mel spectrogram (its own feature extractor), unpadded unless asked."""
    fe = _feature_extractor()
    if pad_to_30s:
        return fe(x, sampling_rate=RATE, return_tensors="np")["input_features"][0]
    n = mel_frames(len(x))
    mel = fe(x, sampling_rate=RATE, return_tensors="np", padding="max_length", max_length=n * 160,
             truncation=True)["input_features"][0]
    return mel[:, :n]


def mel_frames(samples: int) -> int:
    """Log-mel frames of an unpadded clip: 10 ms hops, an even number (the encoder's conv2 has stride 2)."""
    return max(2, int(np.ceil(samples / 160)) // 2 * 2)


@functools.lru_cache(maxsize=1)
def _feature_extractor():
    from transformers import WhisperFeatureExtractor
    return WhisperFeatureExtractor(feature_size=80, sampling_rate=RATE)


def reads_waveform(spec) -> bool:
    """Whether the spec's family reads raw samples (wav2vec2, HuBERT) rather than Whisper's log-mels."""
    return getattr(family(spec), "INPUT", "") == "waveform"


def clip_input(x: np.ndarray, spec, pad_to_30s: bool = False) -> np.ndarray:
    """What the backbone's family reads of one clip: its log-mel, or its samples normalised to zero mean and unit
    variance (as wav2vec2's feature extractor does)."""
    if reads_waveform(spec):
        return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
    return log_mel(x, pad_to_30s=pad_to_30s)


def input_length(samples: int, spec, pad_to_30s: bool = False) -> int:
    """clip_input(x).shape[-1] for a clip of `samples` samples, without computing it (the frozen pass's order)."""
    if reads_waveform(spec):
        return samples
    return 3000 if pad_to_30s else mel_frames(samples)


class ClipInputs:
    """clip_input of every clip, computed from its samples when a batch needs it (the clips are streamed: more of
    them than the decoded budget keeps), so memory stays flat in the number of clips; `mfcc(indices)` computes the
    classic baseline's features of each clip once and keeps them (80 floats per clip)."""

    def __init__(self, clips, spec, pad_to_30s: bool):
        self.clips, self.spec, self.pad = clips, spec, pad_to_30s
        self.streamed = True
        self._mfcc = np.zeros((len(clips), 80), np.float32)
        self._done = np.zeros(len(clips), bool)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, j):
        return clip_input(self.clips[j], self.spec, self.pad)

    def mfcc(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=int)
        for j in idx[~self._done[idx]]:
            x = self.clips[j]
            self._mfcc[j] = mfcc_stats(log_mel(x) if reads_waveform(self.spec) else clip_input(x, self.spec, self.pad))
            self._done[j] = True
        return self._mfcc[idx]


class WaveBatches(IndexedItems):
    """Normalised samples -> batches padded with zeros to the longest clip, with each clip's length."""

    def __init__(self, waves, labels, indices):
        super().__init__(waves, labels, indices)
        self.streamed = getattr(waves, "streamed", False)

    def collate(self, batch):
        n = max(len(w) for w, _ in batch)
        wave = torch.zeros((len(batch), n), dtype=torch.float32)
        for k, (w, _) in enumerate(batch):
            wave[k, : len(w)] = torch.from_numpy(w)
        return ({"wave": wave, "lengths": torch.tensor([len(w) for w, _ in batch])},
                torch.tensor([y for _, y in batch]))


class MelBatches(IndexedItems):
    """Log-mel arrays -> batches padded to the longest clip (or 30 s); `frames` = encoder frames of the clip."""

    def __init__(self, mels, labels, indices, pad_to_30s: bool = False):
        super().__init__(mels, labels, indices)
        self.pad = pad_to_30s
        self.streamed = getattr(mels, "streamed", False)   # computed per access: DataLoader workers help

    def collate(self, batch):
        n = 3000 if self.pad else max(m.shape[1] for m, _ in batch)
        mel = torch.empty((len(batch), 80, n), dtype=torch.float32)
        for k, (m, _) in enumerate(batch):
            mel[k] = float(m.min())        # the clip's own silence level, as Whisper's padding would give
            mel[k, :, : m.shape[1]] = torch.from_numpy(m[:, :n])
        frames = torch.tensor([min(m.shape[1], n) // 2 for m, _ in batch])
        return {"mel": mel, "frames": frames}, torch.tensor([y for _, y in batch])


def mfcc_stats(mel: np.ndarray, n: int = 40) -> np.ndarray:
    """MFCC (DCT of the log-mel) mean and std over time: the classic speech baseline's features."""
    from scipy.fft import dct
    c = dct(mel, type=2, axis=0, norm="ortho")[:n]
    return np.concatenate([c.mean(1), c.std(1)])


def audio_shift(ds_stats: dict, clips, indices) -> dict:
    """Signal facts against Whisper's training input (16 kHz wideband speech, 30 s windows), from what reading the
    clips recorded (audio_files.AudioFiles: length, RMS level, clipped share)."""
    rates = {int(k): v for k, v in ds_stats.get("rates", {}).items()}
    n = sum(rates.values()) or 1
    idx = np.asarray(indices, dtype=int)
    secs = clips.seconds[idx]
    rms, clipped = np.asarray(clips.rms)[idx], np.asarray(clips.clipped)[idx]
    return {"narrowband_share": sum(v for r, v in rates.items() if r < 16000) / n,
            "original_rates": rates, "median_seconds": float(np.median(secs)),
            "window_fill": float(np.median(secs) / 30.0),
            "median_level_dbfs": float(20 * np.log10(max(np.median(rms), 1e-9))),
            "clipped_share": float(np.mean(clipped > 0.001)),
            "missing": "no activation-statistics reference: Whisper's encoder uses LayerNorm (no stored source "
                       "statistics) and no speech reference set ships offline"}


class AudioModality(ModalityBase):
    name = "audio"
    default_backbone = "whisper_tiny_en"
    folder_exts = AUDIO_EXTS
    file_exts: set[str] = set()
    cpu_bf16_training = True    # Whisper tiny encoder training step on an AMX CPU in bf16: 1.4-1.75x on
                                # clip-length batches (1.9x on 30 s input; benchmarks/README.md)
    unit_gib = 3.0
    batchnorm_shift = False
    min_near_dup_size = 0
    near_dup_kind = ""          # near copies by embedding are leaks / conflicts / duplicates like exact ones
    # a 4-layer encoder: all layers at once from the probe's head, LLRD 0.8, as for text
    defaults = {"epochs": 6, "lr_body": 5e-5, "lr_decay": 0.8, "unfreeze_groups": 99, "unfreeze_every": -1,
                "scratch_lr": 3e-3, "round_items": -1}

    def load(self, cfg, spec, size, progress=None):
        return load_audio_folder(cfg.data, label_col=cfg.label_col, group_col=cfg.group_col, progress=progress)

    def prepare(self, ds, spec, size, cfg, progress=None) -> ModalityState:
        """Every clip's model input, computed now while the clips are kept in memory; computed per batch from the
        files when they are streamed (ClipInputs)."""
        clips = ds.items
        if clips.streamed:
            inputs = ClipInputs(clips, spec, cfg.pad_to_30s)
        else:
            inputs = []
            for start in range(0, len(clips), 256):
                inputs += [clip_input(clips[j], spec, cfg.pad_to_30s)
                           for j in range(start, min(len(clips), start + 256))]
                if progress:
                    progress(min(256, len(clips) - start), len(clips))
        secs = clips.seconds
        return ModalityState(inputs, {**ds.stats, "mean_seconds": float(secs.mean()), "max_seconds": float(secs.max()),
                                      "encoder_input": "the normalised waveform, each clip's own length"
                                      if reads_waveform(spec) else "padded to 30 s (Whisper's own)" if cfg.pad_to_30s
                                      else "each clip's own length (positional embedding sliced)"})

    def dataset(self, data, indices, train: bool = False):
        if reads_waveform(data.spec):
            return WaveBatches(data.state.inputs, data.ds.labels, indices)
        return MelBatches(data.state.inputs, data.ds.labels, indices, data.cfg.pad_to_30s)



    def embed(self, data, model, progress=None):
        from torch.utils.data import DataLoader
        lengths = [input_length(n, data.spec, data.cfg.pad_to_30s) for n in data.ds.items.samples]
        order = np.argsort(lengths)                                   # similar lengths together: little padding
        ds = self.dataset(data, order)
        out = np.zeros((len(order), model.num_features), dtype=np.float32)
        model.eval()
        loader = DataLoader(ds, batch_size=64, collate_fn=ds.collate, **loader_kwargs("cpu", 0, ds.streamed))
        with torch.inference_mode():
            for start, (x, _) in zip(range(0, len(order), 64), loader):
                out[order[start: start + 64]] = to_numpy(model.forward_features(to_device(x, model)))
                if progress:
                    progress(len(order[start: start + 64]))
        return out


    def feature_variant(self, data) -> str:
        return "float32" + ("-pad30s" if data.cfg.pad_to_30s else "")

    def classic_inputs(self, data, indices=None):
        idx = range(len(data.ds.items)) if indices is None else indices
        if isinstance(data.state.inputs, ClipInputs):
            return list(data.state.inputs.mfcc(list(idx)))
        wave = reads_waveform(data.spec)       # the classic baseline reads MFCCs whatever the backbone reads
        return [mfcc_stats(log_mel(data.ds.items[i]) if wave else data.state.inputs[i]) for i in idx]


    def classic_pipeline(self, C: float, seed: int):
        """MFCC (40) mean + std per clip, standardised, logistic regression."""
        return standardised_logreg(C, seed)

    def shift_evidence(self, data, indices) -> dict:
        return {"signal": audio_shift(data.ds.stats, data.ds.items, indices)}

    def evidence_lines(self, shift: dict) -> list[str]:
        sig = shift.get("signal", {})
        if not sig:
            return []
        return [f"audio: {100 * sig['narrowband_share']:.0f}% of files below 16 kHz, median clip "
                f"{sig['median_seconds']:.1f} s of Whisper's 30 s window"]

    def finetune_advice(self, early_shift: bool) -> str:
        return "all layers with layer-wise LR decay; the frozen features alone leave accuracy on the table"


    def input_description(self, size: int) -> str:
        return "16 kHz log-mel frames, at most 30 s per clip"

    def picture(self, path, size: int = 96) -> bytes | None:
        """A spectrogram of the clip (about `size` px wide) for the error gallery."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import soundfile as sf
        from scipy.signal import spectrogram
        wav, rate = sf.read(str(path), always_2d=True)
        f, t, s = spectrogram(wav.mean(1), fs=rate, nperseg=min(512, len(wav)))
        fig, ax = plt.subplots(figsize=(size / 60, size / 96), dpi=80)
        ax.pcolormesh(t, f, 10 * np.log10(s + 1e-10), shading="auto", cmap="magma")
        ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0)
        plt.close(fig)
        return buf.getvalue()

    def read_unlabelled(self, inputs: list[str], spec, size: int) -> LabeledSet:
        """Audio files or folders without labels (for `headstart suggest`), decoded like the training clips."""
        return read_unlabelled_clips(expand_inputs(inputs, AUDIO_EXTS, "audio"))

    def predict(self, model_dir, model, spec, classes, inputs, top, batch_size, runtime, options=None) -> list[dict]:
        rows = []
        for f in expand_inputs(inputs, AUDIO_EXTS, "audio"):
            try:
                x = clip_input(decode_audio(f)[0], spec)
            except Exception as e:  # listed, not fatal
                rows.append({"path": display_name(str(f)), "error": f"{type(e).__name__}: {e}"[:200]})
                continue
            ds = WaveBatches([x], [0], [0]) if reads_waveform(spec) else MelBatches([x], [0], [0])
            with torch.inference_mode():
                p = model(ds.collate([ds[0]])[0]).softmax(1)[0]
            rows.append({"path": display_name(str(f)), **top_k(p, classes, top)})
        return rows
