"""The Whisper encoder in PyTorch behind timm's contract: weights from a CTranslate2 file or the hub.

    model = WhisperClassifier.from_ct2(folder, num_classes=10)  # weights read from the CTranslate2 model.bin
    model.forward_features({"mel": (B, 80, T), "frames": (B,)})   # mean over the frames that hold each clip

The encoder runs on each clip's own length (positional embedding sliced) instead of 30 s of padding.
Family interface (models/factory.py): build, from_folder, save_extras (the encoder config, so any
openai/whisper-* size reloads offline), onnx_example.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from headstart.core.errors import UserError
from headstart.models.encoder import EncoderClassifier
from headstart.models.encoder import save_extras  # noqa: F401  (the family interface: config.json)
from headstart.models.hub import hub_unreachable, offline_mode


class WhisperClassifier(EncoderClassifier):
    """Whisper encoder (transformers' modules) + mean pooling over the clip's frames + linear head."""

    def __init__(self, encoder, num_classes: int, pad_to_30s: bool = False):
        super().__init__(encoder, encoder.config.d_model, num_classes)
        self.pad_to_30s = pad_to_30s

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


def build(spec, weights, num_classes: int, pretrained: bool):
    if spec.source == "hf-hub":
        with offline_mode(hub_unreachable()):
            return WhisperClassifier.from_hub(spec.path, num_classes, pretrained=pretrained)
    return WhisperClassifier.from_ct2(spec.path, num_classes, pretrained=pretrained)


def from_folder(folder: Path, spec, num_classes: int):
    """The encoder architecture saved in an exported folder (config.json; folders exported before it was saved
    hold tiny.en, the only size they could hold), random weights."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    cfg_file = Path(folder) / "config.json"
    config = WhisperConfig.from_pretrained(str(folder)) if cfg_file.exists() else WhisperClassifier.tiny_en_config()
    return WhisperClassifier(WhisperEncoder(config), num_classes)


def onnx_example(spec, size: int):
    return None
