"""Speech encoders that read the raw waveform (wav2vec2, HuBERT, WavLM from transformers), with timm's contract:

    model.forward_features({"wave": (B, samples), "lengths": (B,)})    # mean over the frames each clip fills

INPUT says what the audio modality feeds this family (normalised 16 kHz samples; Whisper's family reads log-mels).
Family interface (models/factory.py): build, from_folder, save_extras, export_state / import_state, onnx_example.
"""
from __future__ import annotations

from pathlib import Path

import torch

from headstart.models.encoder import EncoderClassifier, auto_encoder, hub_build
from headstart.models.encoder import export_state, import_state, save_extras  # noqa: F401  (the family interface)

INPUT = "waveform"


class WaveClassifier(EncoderClassifier):
    def __init__(self, encoder, num_classes: int):
        super().__init__(encoder, encoder.config.hidden_size, num_classes)

    @classmethod
    def from_folder(cls, folder: str | Path, num_classes: int, pretrained: bool = True) -> "WaveClassifier":
        return cls(auto_encoder(folder, pretrained), num_classes)

    def forward_features(self, batch: dict) -> torch.Tensor:
        wave, lengths = batch["wave"], batch["lengths"]
        mask = (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None]).long()
        # models whose feature extractor uses GroupNorm over time (wav2vec2-base) are run unmasked, as their own
        # processors do (zero padding, a mask would skew them); LayerNorm ones (large, HuBERT) take the mask
        layer_norm = getattr(self.encoder.config, "feat_extract_norm", "layer") == "layer"
        out = self.encoder(input_values=wave, **({"attention_mask": mask} if layer_norm else {})).last_hidden_state
        frames = self.encoder._get_feat_extract_output_lengths(lengths).clamp(min=1, max=out.shape[1])
        keep = (torch.arange(out.shape[1], device=out.device)[None] < frames[:, None]).unsqueeze(-1).to(out.dtype)
        return (out * keep).sum(1) / keep.sum(1)

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.(?:feature_extractor|feature_projection|masked_spec_embed)",
                "blocks": [(r"^encoder\.encoder\.layers\.(\d+)", None)]}


def build(spec, weights, num_classes: int, pretrained: bool):
    return hub_build(lambda: WaveClassifier.from_folder(spec.path, num_classes, pretrained=pretrained), spec,
                     "speech encoder", "whisper_tiny_en")


def from_folder(folder: Path, spec, num_classes: int):
    return WaveClassifier.from_folder(folder, num_classes, pretrained=False)


def onnx_example(spec, size: int):
    return None
