"""Export the recommended model as a self-contained folder (weights, architecture, classes; ONNX for images).

    save_model("runs/x/model", model, spec, classes, input_size, extra={"strategy": "finetune"})
    results.model = export_recommended(ctx, results)    # model/ for the recommended arm's best-validation seed

The folder holds model.safetensors (weights, no pickle), headstart_model.json (architecture, preprocessing,
class names) and whatever the encoder family needs to rebuild offline (models/factory.py save_folder). Loading
never unpickles anything, so a model folder from elsewhere cannot run code (outputs/predict.py).
"""
from __future__ import annotations

import io
from pathlib import Path

from headstart.pipeline.state import RunContext
from headstart.core.io import atomic_write_bytes
from headstart.core.results import unit_dir, unit_result
from headstart.core.run_results import RunResults
from headstart.core.sections import ExportedModel
from headstart.models.device import model_device
from headstart.models.factory import create_backbone, family, save_folder
from headstart.models.weights import read_weights
from headstart.training.strategies import STRATEGIES


def save_model(folder: str | Path, model, spec, classes: list[str], input_size: int, extra: dict | None = None):
    """Returns why model.onnx was not written ("" when it was, or when the family has no ONNX form)."""
    folder = Path(folder)
    example = family(spec).onnx_example(spec, input_size)
    onnx, why = export_onnx(folder / "model.onnx", model, example) if example is not None else (None, "")
    save_folder(folder, model, spec, classes, input_size, {"onnx": onnx, **({"onnx_skipped": why} if why else {}),
                                                           **(extra or {})})
    return why


def export_onnx(path: Path, model, example) -> tuple[str | None, str]:
    """model.onnx beside the weights (input: the example's layout, batch dimension dynamic), for `predict` through
    ONNX Runtime. Returns (file name, "") or (None, why not); PyTorch predict works either way."""
    import torch
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        return None, "model.onnx not written: the ONNX exporter is not installed (pip install 'headstart[onnx]')"
    buf = io.BytesIO()
    model = model.eval()
    x = example.to(model_device(model))
    try:
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}},
                          opset_version=17, dynamo=False)
    except Exception as e:   # an architecture the exporter cannot trace: keep the PyTorch path only
        return None, f"model.onnx not written: the exporter failed ({type(e).__name__}); PyTorch predict works"
    atomic_write_bytes(path, buf.getvalue())
    return path.name, ""


def export_recommended(ctx: RunContext, results: RunResults) -> ExportedModel | None:
    """Write model/ for the recommended strategy (its best-validation seed); None when that arm exports nothing."""
    import torch
    results = RunResults.of(results)
    s = results.recommended      # an exportable arm (summarize.choose) unless no arm is
    if not STRATEGIES[s].exports:
        return None
    units = [r for seed in range(ctx.cfg.seeds) if (r := unit_result(ctx.run_dir, s, seed)) and r.ok]
    best = min(units, key=lambda r: (r.val_loss, r.seed))
    seed = best.seed
    # weights kept from a small-input epoch (scratch stopped while resizing progressively) predict at that size
    size = best.details.get("eval_size") or ctx.size
    head_only = STRATEGIES[s].exports == "probe-head"
    model, _ = create_backbone(ctx.cfg.backbone, len(ctx.ds.classes), pretrained=head_only)
    state = read_weights(unit_dir(ctx.run_dir, s, seed) / "weights.safetensors")
    if head_only:   # pretrained backbone + the probe's head
        head = model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(state["weight"])
            head.bias.copy_(state["bias"])
    else:
        model.load_state_dict(state)
    arm = results.strategies.get(s)
    op = next((o for o in (arm.operating_point if arm else None) or [] if o.seed == seed), None)
    rule = ({"positive": ctx.ds.classes[ctx.decision.positive], "threshold": op.threshold, "why": op.why,
             "metric": ctx.decision.metric} if op and op.threshold is not None else None)
    why = save_model(ctx.run_dir / "model", model, ctx.spec, ctx.ds.classes, size,
                     extra={"strategy": s, "seed": seed, "run": str(ctx.run_dir),
                            **({"operating_point": rule} if rule else {})})
    if why:
        ctx.log(why)
    return ExportedModel(path=str(ctx.run_dir / "model"), strategy=s, seed=seed, operating_point=rule,
                         onnx_skipped=why or None)

