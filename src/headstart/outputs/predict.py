"""Predict with an exported model folder: the one loading path (models/factory.load_folder), then the modality's
own input handling (image files, text tables or strings, audio files).

    rows = predict("runs/x/model", ["img.jpg", "folder/"])   # [{"path", "label", "prob", "top"}] (+ "error")
"""
from __future__ import annotations

from pathlib import Path

from headstart.modalities import MODALITIES
from headstart.models.factory import load_folder


def load_model(folder: str | Path):
    """(model in eval mode, spec, classes, meta)."""
    return load_folder(folder)


def predict(model_dir: str | Path, inputs: list[str], batch_size: int = 32, top: int = 3,
            runtime: str = "auto") -> list[dict]:
    model, spec, classes, meta = load_folder(model_dir)
    return MODALITIES[spec.modality]().predict(model_dir, model, spec, classes, inputs, top, batch_size, runtime)
