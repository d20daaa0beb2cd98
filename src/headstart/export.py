"""Export the recommended model as a self-contained folder, and predict with it.

    save_model("runs/x/model", model, spec, classes, extra={"strategy": "finetune"})
    rows = predict("runs/x/model", ["img.jpg", "folder/"])   # [{"path", "label", "prob", "top"}] (+ "error")

The folder holds model.safetensors (weights, no pickle) and headstart_model.json (architecture, preprocessing,
class names). Loading never unpickles anything, so a model folder from elsewhere cannot run code.
"""
from __future__ import annotations

import json
from pathlib import Path

from headstart.errors import UserError
from headstart.io import atomic_write_bytes, write_json

FORMAT = 1


def save_model(folder: str | Path, model, spec, classes: list[str], input_size: int, extra: dict | None = None):
    from safetensors.torch import save

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / "model.safetensors", save(state))
    spec_d = {**spec.to_dict(), "input_size": input_size}
    if spec.modality == "text":   # the encoder's config and tokenizer travel with the weights (no hub needed)
        from transformers import AutoTokenizer
        model.encoder.config.save_pretrained(str(folder))
        AutoTokenizer.from_pretrained(spec.path).save_pretrained(str(folder))
        spec_d["path"] = ""
    onnx = export_onnx(folder / "model.onnx", model, spec, input_size) if spec.modality == "image" else None
    write_json(folder / "headstart_model.json",
               {"format": FORMAT, "spec": spec_d, "classes": classes, "onnx": onnx, **(extra or {})})


def export_onnx(path: Path, model, spec, input_size: int) -> str | None:
    """model.onnx beside the weights (input: normalised NCHW float, batch dimension dynamic), for `predict` through
    ONNX Runtime. Returns the file name, or None when the exporter is unavailable (PyTorch predict still works)."""
    import io

    import torch
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        return None
    buf = io.BytesIO()
    model = model.eval()
    from headstart.device import model_device
    x = torch.zeros(1, 3, input_size, input_size, device=model_device(model))
    try:
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}},
                          opset_version=17, dynamo=False)
    except Exception:   # an architecture the exporter cannot trace: keep the PyTorch path only
        return None
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def load_model(folder: str | Path):
    """(model in eval mode, spec, classes, meta)."""
    import timm

    from headstart.backbones import BackboneSpec

    folder = Path(folder)
    meta = read_meta(folder)
    spec = BackboneSpec(**meta["spec"])
    if spec.modality == "text":
        from headstart.text import TextClassifier
        spec.path = str(folder)
        model = TextClassifier.from_folder(folder, len(meta["classes"]), pretrained=False)
    elif spec.modality == "audio":
        from headstart.audio import WhisperClassifier
        model = WhisperClassifier.from_ct2(None, len(meta["classes"]), pretrained=False)
    else:
        model = timm.create_model(spec.arch, pretrained=False, num_classes=len(meta["classes"]))
    model.load_state_dict(read_weights(folder / "model.safetensors"), strict=True)
    return model.eval(), spec, meta["classes"], meta


def read_meta(folder: Path) -> dict:
    """headstart_model.json of a model folder, checked (plain JSON: nothing in it is executed)."""
    from headstart.backbones import BackboneSpec
    meta_path = Path(folder) / "headstart_model.json"
    if not meta_path.exists():
        raise UserError(f"{folder} is not a headstart model folder (no headstart_model.json); pass the model/ "
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
    return meta


def read_weights(path: Path) -> dict:
    """A safetensors file's tensors. Never unpickles: a pickle (or anything else) is refused, not executed."""
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path} is missing; a headstart model folder holds model.safetensors") from None
    except Exception as e:
        raise UserError(f"{path} is not a valid safetensors file ({type(e).__name__}); headstart loads only "
                        "safetensors weights and never unpickles files") from None


def _expand(inputs: list[str], exts: set[str], what: str) -> list[Path]:
    """Files as given, folders expanded to the files with one of `exts` below them."""
    files = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file())
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"input {s!r} does not exist; pass {what} files or folders")
    if not files:
        raise UserError(f"no {what} found in {', '.join(inputs)}")
    return files


def image_runner(model_dir: str | Path, model, meta: dict, runtime: str = "auto"):
    """(name, function: normalised NCHW float tensor -> logits tensor): ONNX Runtime when the folder has model.onnx
    and onnxruntime is installed (runtime auto|onnx), else PyTorch eager."""
    import torch
    onnx_file = Path(model_dir) / (meta.get("onnx") or "model.onnx")
    if runtime in ("auto", "onnx") and meta.get("onnx") and onnx_file.exists():
        try:
            import onnxruntime as ort
        except ImportError:
            if runtime == "onnx":
                raise UserError("--runtime onnx needs ONNX Runtime: pip install onnxruntime") from None
        else:
            sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
            from headstart.device import to_numpy
            return "onnxruntime", lambda x: torch.from_numpy(sess.run(None, {"x": to_numpy(x)})[0])
    elif runtime == "onnx":
        raise UserError(f"{model_dir} has no model.onnx; re-export with onnx installed, or use --runtime torch")

    from headstart.bnfold import folded_batchnorm

    def eager(x):
        with torch.inference_mode(), folded_batchnorm(model):
            return model(x)
    return "pytorch", eager


def predict(model_dir: str | Path, inputs: list[str], batch_size: int = 32, top: int = 3,
            runtime: str = "auto") -> list[dict]:
    import torch
    from torchvision.transforms.v2.functional import center_crop

    from headstart.data import _load_one
    from headstart.features import preprocess

    model, spec, classes, meta = load_model(model_dir)
    if spec.modality == "text":
        return _predict_texts(model, spec, classes, inputs, top)
    if spec.modality == "audio":
        return _predict_audio(model, classes, inputs, top)
    from headstart.data import IMAGE_EXTS
    files = _expand(inputs, IMAGE_EXTS, "image")
    rows: list[dict] = [{} for _ in files]     # input order, whatever the batching
    batch = []
    _, run = image_runner(model_dir, model, meta, runtime)

    def flush():
        if not batch:
            return
        x = torch.stack([center_crop(t, [spec.input_size] * 2) for _, _, t in batch])
        probs = run(preprocess(x, spec)).softmax(1)
        for (k, path, _), p in zip(batch, probs):
            vals, idx = p.topk(min(top, len(classes)))
            rows[k] = {"path": str(path), "label": classes[idx[0]], "prob": float(vals[0]),
                       "top": [[classes[i], float(v)] for v, i in zip(vals, idx)]}
        batch.clear()

    for k, f in enumerate(files):
        ok, reason = _load_one(f, spec.short_side())
        if ok is None:
            rows[k] = {"path": str(f), "error": reason}
            continue
        batch.append((k, f, torch.from_numpy(ok[0].transpose(2, 0, 1).copy())))
        if len(batch) == batch_size:
            flush()
    flush()
    return rows


def _predict_texts(model, spec, classes, inputs: list[str], top: int) -> list[dict]:
    """Inputs: CSV/TSV/JSONL tables (their text column), .txt files (one text each), or literal strings."""
    import torch

    from headstart.text import TEXT_EXTS, TEXT_COLS, TokenBatches, _pick, _rows, tokenize
    texts, where = [], []
    for s in inputs:
        p = Path(s)
        if p.is_file() and p.suffix.lower() in TEXT_EXTS:
            rows = _rows(p, "utf-8")
            col = _pick([c for c in rows[0] if not c.startswith("__")], "", TEXT_COLS, "text", p) if rows else ""
            for r in rows:
                texts.append(str(r.get(col) or ""))
                where.append(f"{p.name}:{r['__line__']}")
        elif p.is_file():
            texts.append(p.read_text(errors="replace"))
            where.append(str(p))
        else:
            texts.append(s)
            where.append("argument")
    ids, stats = tokenize(spec.path, texts, spec.input_size)
    ds = TokenBatches(ids, [0] * len(ids), range(len(ids)), stats["pad_id"])
    rows = []
    with torch.inference_mode():
        for start in range(0, len(ids), 64):
            x, _ = ds.collate([ds[i] for i in range(start, min(len(ids), start + 64))])
            for k, p in enumerate(model(x).softmax(1)):
                vals, idx = p.topk(min(top, len(classes)))
                rows.append({"path": where[start + k], "text": texts[start + k][:200], "label": classes[idx[0]],
                             "prob": float(vals[0]), "top": [[classes[i], float(v)] for v, i in zip(vals, idx)]})
    return rows


def _predict_audio(model, classes, inputs: list[str], top: int) -> list[dict]:
    import torch

    from headstart.audio import AUDIO_EXTS, MelBatches, decode_audio, log_mel
    files = _expand(inputs, AUDIO_EXTS, "audio")
    rows = []
    for f in files:
        try:
            mel = log_mel(decode_audio(f)[0])
        except Exception as e:  # listed, not fatal
            rows.append({"path": str(f), "error": f"{type(e).__name__}: {e}"[:200]})
            continue
        ds = MelBatches([mel], [0], [0])
        with torch.inference_mode():
            p = model(ds.collate([ds[0]])[0]).softmax(1)[0]
        vals, idx = p.topk(min(top, len(classes)))
        rows.append({"path": str(f), "label": classes[idx[0]], "prob": float(vals[0]),
                     "top": [[classes[i], float(v)] for v, i in zip(vals, idx)]})
    return rows


def export_recommended(ctx, results: dict) -> None:
    """Write model/ for the recommended strategy (its best-validation seed)."""
    import torch

    from headstart import units

    s = results["recommended"]
    if s == "classic":    # a scikit-learn pipeline is not exported: hand over the best network instead
        nets = [k for k, v in results["strategies"].items() if k != "classic" and "failed" not in v]
        if not nets:
            return
        s = max(nets, key=lambda k: (results["strategies"][k]["val_acc"], -results["strategies"][k]["val_loss"]))
    seeds = [(r["val_loss"], r["seed"]) for seed in range(ctx.cfg.seeds)
             if (r := units.unit_result(ctx.run_dir, s, seed)) and not r.get("failed")]
    seed = min(seeds)[1]
    from headstart.backbones import create_backbone
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=s == "linear-probe")
    state = read_weights(ctx.run_dir / s / f"seed{seed}" / "weights.safetensors")
    if s == "linear-probe":   # pretrained backbone + the probe's head
        head = model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(state["weight"])
            head.bias.copy_(state["bias"])
    else:
        model.load_state_dict(state)
    save_model(ctx.run_dir / "model", model, ctx.spec, ctx.ds.classes, ctx.size,
               extra={"strategy": s, "seed": seed, "run": str(ctx.run_dir)})
    results["model"] = {"path": str(ctx.run_dir / "model"), "strategy": s, "seed": seed}
