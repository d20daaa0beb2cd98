"""Speech/audio: decode any rate/channels to 16 kHz mono, log-mel features, and the Whisper encoder in PyTorch.

    ds = load_audio_folder("clips/")                      # root/<class>/*.wav|flac|ogg|mp3 (or train/ test/ ...)
    model = WhisperClassifier.from_ct2(folder, num_classes=10)  # weights read from the CTranslate2 model.bin
    model.forward_features({"mel": (B, 80, T), "frames": (B,)})   # mean over the frames that hold each clip

Clips longer than 30 s are cut to their first 30 s (Whisper's encoder sees at most 30 s) and counted in the
results. The encoder runs on each clip's own length (positional embedding sliced) instead of 30 s of padding;
`pad_to_30s=True` reproduces Whisper's padded input for comparison.
"""
from __future__ import annotations

import functools
import hashlib
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from headstart.data import LabeledSet, empty_folders, scan_folder
from headstart.errors import UserError

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
RATE = 16000
MAX_SECONDS = 30


def decode_audio(path: Path) -> tuple[np.ndarray, dict]:
    """float32 mono 16 kHz samples; raises on unreadable, empty or non-finite audio."""
    import soundfile as sf
    from scipy.signal import resample_poly

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


def load_audio_folder(root: str | Path) -> LabeledSet:
    classes, entries = scan_folder(root, AUDIO_EXTS, "audio files")
    index = {c: i for i, c in enumerate(classes)}
    ds = LabeledSet(root=Path(root), classes=classes, skipped=empty_folders(root, entries))
    ds.stats = {"truncated_to_30s": 0, "rates": {}, "channels": {}}
    for path, cname, source in entries:
        rel = path.relative_to(root).as_posix()
        try:
            x, info = decode_audio(path)
        except Exception as e:  # skipped and listed, never fatal
            ds.skipped.append({"path": rel, "reason": f"{type(e).__name__}: {e}".strip()[:200]})
            continue
        ds.stats["truncated_to_30s"] += int(info.get("truncated", False))
        ds.stats["rates"][info["rate"]] = ds.stats["rates"].get(info["rate"], 0) + 1
        ds.stats["channels"][info["channels"]] = ds.stats["channels"].get(info["channels"], 0) + 1
        ds.paths.append(rel)
        ds.labels.append(index[cname])
        ds.sources.append(source)
        ds.items.append(x)
        ds.hashes.append(hashlib.sha1(x.tobytes()).hexdigest())
    if not ds.paths:
        raise UserError(f"none of the {len(entries)} audio files under {root} could be decoded "
                        f"(first error: {ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    return ds


def log_mel(x: np.ndarray, pad_to_30s: bool = False) -> np.ndarray:
    """Whisper's 80-bin log-mel spectrogram (its own feature extractor), unpadded unless asked."""
    fe = _feature_extractor()
    if pad_to_30s:
        return fe(x, sampling_rate=RATE, return_tensors="np")["input_features"][0]
    n = max(2, int(np.ceil(len(x) / 160)) // 2 * 2)           # even number of frames (conv2 has stride 2)
    mel = fe(x, sampling_rate=RATE, return_tensors="np", padding="max_length", max_length=n * 160,
             truncation=True)["input_features"][0]
    return mel[:, :n]


@functools.lru_cache(maxsize=1)
def _feature_extractor():
    from transformers import WhisperFeatureExtractor
    return WhisperFeatureExtractor(feature_size=80, sampling_rate=RATE)


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin (binary format version 6) as numpy arrays."""
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return vals

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = buf[pos: pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("<I")
    if version != 6:
        raise UserError(f"{path}: CTranslate2 model format {version} is not supported (expected 6)")
    string()
    take("<I")
    (count,) = take("<I")
    out = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dtype,) = take("<B")
        (nbytes,) = take("<I")
        if dtype in dtypes:
            out[name] = np.frombuffer(buf, dtypes[dtype], nbytes // np.dtype(dtypes[dtype]).itemsize, pos
                                      ).reshape(dims)
        pos += nbytes
    return out


class WhisperClassifier(nn.Module):
    """Whisper encoder (transformers' modules) + mean pooling over the clip's frames + linear head."""

    def __init__(self, encoder, num_classes: int, pad_to_30s: bool = False):
        super().__init__()
        self.encoder = encoder
        self.pad_to_30s = pad_to_30s
        self.num_features = encoder.config.d_model
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @staticmethod
    def tiny_en_config():
        from transformers import WhisperConfig
        return WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                             decoder_layers=4, decoder_attention_heads=6, decoder_ffn_dim=1536, num_mel_bins=80,
                             vocab_size=51864)

    @classmethod
    def from_ct2(cls, folder: str | Path | None, num_classes: int, pretrained: bool = True):
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        enc = WhisperEncoder(cls.tiny_en_config())
        if pretrained:
            enc.load_state_dict(ct2_to_hf_encoder(read_ct2(Path(folder) / "model.bin"), len(enc.layers)))
        return cls(enc, num_classes)

    @classmethod
    def from_hub(cls, model_id: str, num_classes: int, pretrained: bool = True):
        """hf:openai/whisper-* for online users (transformers downloads the weights)."""
        from transformers import WhisperConfig, WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        try:
            enc = (WhisperModel.from_pretrained(model_id, dtype=torch.float32).get_encoder() if pretrained
                   else WhisperEncoder(WhisperConfig.from_pretrained(model_id)))
        except OSError as e:
            raise UserError(f"could not load {model_id} from the Hugging Face hub ({str(e)[:100]}); offline, use "
                            "whisper_tiny_en") from None
        return cls(enc, num_classes)

    def forward_features(self, batch: dict) -> torch.Tensor:
        x = self.encode(batch["mel"])
        idx = torch.arange(x.shape[1], device=x.device)[None, :]
        mask = (idx < batch["frames"][:, None]).unsqueeze(-1).to(x.dtype)    # only frames that hold the clip
        return (x * mask).sum(1) / mask.sum(1).clamp(min=1)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Encoder hidden states (B, T/2, d) for a log-mel batch of any even length T <= 3000."""
        e = self.encoder
        x = nn.functional.gelu(e.conv1(mel))
        x = nn.functional.gelu(e.conv2(x)).permute(0, 2, 1)
        x = x + e.embed_positions.weight[: x.shape[1]]
        for layer in e.layers:
            x = layer(x, attention_mask=None)
            x = x[0] if isinstance(x, tuple) else x
        return e.layer_norm(x)

    def forward_head(self, x, pre_logits: bool = False):
        return x if pre_logits else self.classifier(x)

    def forward(self, batch):
        return self.forward_head(self.forward_features(batch))

    def get_classifier(self):
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.(?:conv|embed_positions)", "blocks": [(r"^encoder\.layers\.(\d+)", None),
                                                                        (r"^encoder\.layer_norm", (99999,))]}


def ct2_to_hf_encoder(v: dict, n_layers: int) -> dict[str, torch.Tensor]:
    """CTranslate2 Whisper encoder variables -> transformers WhisperEncoder state dict (fused QKV split)."""
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32).copy())  # noqa: E731
    sd = {"conv1.weight": t(v["encoder/conv1/weight"]), "conv1.bias": t(v["encoder/conv1/bias"]),
          "conv2.weight": t(v["encoder/conv2/weight"]), "conv2.bias": t(v["encoder/conv2/bias"]),
          "embed_positions.weight": t(v["encoder/position_encodings/encodings"]),
          "layer_norm.weight": t(v["encoder/layer_norm/gamma"]), "layer_norm.bias": t(v["encoder/layer_norm/beta"])}
    for i in range(n_layers):
        p, q = f"encoder/layer_{i}/", f"layers.{i}."
        w, b = t(v[p + "self_attention/linear_0/weight"]), t(v[p + "self_attention/linear_0/bias"])
        d = w.shape[0] // 3
        sd.update({q + "self_attn.q_proj.weight": w[:d], q + "self_attn.q_proj.bias": b[:d],
                   q + "self_attn.k_proj.weight": w[d: 2 * d],
                   q + "self_attn.v_proj.weight": w[2 * d:], q + "self_attn.v_proj.bias": b[2 * d:],
                   q + "self_attn.out_proj.weight": t(v[p + "self_attention/linear_1/weight"]),
                   q + "self_attn.out_proj.bias": t(v[p + "self_attention/linear_1/bias"]),
                   q + "self_attn_layer_norm.weight": t(v[p + "self_attention/layer_norm/gamma"]),
                   q + "self_attn_layer_norm.bias": t(v[p + "self_attention/layer_norm/beta"]),
                   q + "fc1.weight": t(v[p + "ffn/linear_0/weight"]), q + "fc1.bias": t(v[p + "ffn/linear_0/bias"]),
                   q + "fc2.weight": t(v[p + "ffn/linear_1/weight"]), q + "fc2.bias": t(v[p + "ffn/linear_1/bias"]),
                   q + "final_layer_norm.weight": t(v[p + "ffn/layer_norm/gamma"]),
                   q + "final_layer_norm.bias": t(v[p + "ffn/layer_norm/beta"])})
    return sd


class MelBatches(torch.utils.data.Dataset):
    """Log-mel arrays -> batches padded to the longest clip (or 30 s); `frames` = encoder frames of the clip."""

    def __init__(self, mels: list[np.ndarray], labels, indices, pad_to_30s: bool = False):
        self.mels, self.labels, self.indices, self.pad = mels, labels, list(indices), pad_to_30s

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return self.mels[j], self.labels[j]

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
