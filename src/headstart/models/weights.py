"""The model-folder format and safetensors weights: read and written here only, never unpickled.

    meta = read_meta(folder)            # headstart_model.json, checked
    state = read_weights(folder / "model.safetensors")
    save_weights(path, model.state_dict())

A model folder holds model.safetensors, headstart_model.json (format, backbone spec, classes, how it was made) and
what the encoder family needs to rebuild the architecture offline (config.json, a tokenizer).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from headstart.core.errors import UserError
from headstart.core.io import atomic_write_bytes, write_json
from headstart.models.registry import BackboneSpec

FORMAT = 1
META = "headstart_model.json"


def read_meta(folder: str | Path) -> dict:
    """headstart_model.json of a model folder, checked (plain JSON: nothing in it is executed)."""
    meta_path = Path(folder) / META
    if not meta_path.exists():
        raise UserError(f"{folder} is not a headstart model folder (no {META}); pass the model/ "
                        "folder of a finished run, e.g. runs/<run>/model")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {meta_path} ({e}); re-export the model with headstart run") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} has format {meta.get('format') if isinstance(meta, dict) else None!r}; "
                        f"this headstart reads format {FORMAT}")
    try:
        BackboneSpec(**meta["spec"])
        len(meta["classes"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{meta_path} is incomplete ({type(e).__name__}: {e}); re-export the model") from None
    bad = _wrong_types(meta["spec"])
    if bad or not all(isinstance(c, str) for c in meta["classes"]):
        what = f"spec field {bad!r}" if bad else "classes"
        raise UserError(f"{meta_path}: {what} has a value of the wrong type (edited by hand?); re-export the model")
    out = _out_of_range(meta)
    if out:
        raise UserError(f"{meta_path}: {out} (edited by hand?); re-export the model")
    return meta


def _out_of_range(meta: dict) -> str | None:
    """Values no export writes: a crop fraction of 0, an input size that would cost 4x the memory and change the
    predictions, a zero std, fewer than 2 classes or repeated ones."""
    spec, classes = meta["spec"], meta["classes"]
    trained = meta.get("trained_input_size")        # written beside the spec by exports since issue 28
    if not 0.05 < float(spec.get("crop_pct", 1.0)) <= 1.0:
        return f"crop_pct {spec['crop_pct']!r} is outside (0.05, 1]"
    if trained is not None and spec["input_size"] != trained:
        return f"input_size {spec['input_size']!r} is not the size the model trained at ({trained})"
    if not 1 <= spec["input_size"] <= 65536:          # pixels, tokens, mel frames or a toy's vector
        return f"input_size {spec['input_size']!r} is outside 1..65536"
    if any(float(x) == 0 for x in spec.get("std") or ()):
        return "std has a zero"
    if len(classes) < 2 or len(set(classes)) != len(classes):
        return f"classes {classes[:5]!r} must be at least 2 different names"
    return None


_TYPES = {"int": int, "float": (int, float), "str": str}


def _wrong_types(spec: dict) -> str | None:
    """The first spec field whose value does not have its declared type (tuples may be JSON lists of numbers)."""
    for f in dataclasses.fields(BackboneSpec):
        v = spec.get(f.name)
        if v is None and f.name not in ("name", "arch", "input_size"):
            continue
        want = _TYPES.get(str(f.type))
        if want is not None and (not isinstance(v, want) or isinstance(v, bool)):
            return f.name
        if str(f.type).startswith("tuple") and not (isinstance(v, list) and all(isinstance(x, (int, float))
                                                                               for x in v)):
            return f.name
    return None


def write_meta(folder: str | Path, spec_dict: dict, classes: list[str], extra: dict) -> None:
    write_json(Path(folder) / META, {"format": FORMAT, "spec": spec_dict, "classes": classes, **extra})


def read_weights(path: str | Path) -> dict:
    """A safetensors file's tensors. Never unpickles: a pickle (or anything else) is refused, not executed."""
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; a headstart model folder holds model.safetensors") from None
    except Exception as e:
        raise UserError(f"{path} is not a valid safetensors file ({type(e).__name__}); headstart loads only "
                        "safetensors weights and never unpickles files") from None


def save_weights(path: str | Path, tensors: dict) -> None:
    """Tensors to a safetensors file, atomically (contiguous CPU copies, so any device's weights save)."""
    from safetensors.torch import save
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
