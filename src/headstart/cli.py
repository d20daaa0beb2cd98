"""headstart command line: each command's docstring is its --help; each body calls one library function."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from headstart.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Should I reuse a pretrained model for my small labelled dataset? headstart measures it.")
console = Console()
if not console.is_terminal:
    console.width = 150   # logs and pipes: keep the summary table readable


def user_errors(fn):
    """User errors print one line and exit 2; Ctrl-C says how to resume. No tracebacks for either."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except UserError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            console.print("\n[yellow]interrupted.[/] Finished units are saved; run the same command again to resume.")
            raise typer.Exit(130)
    return wrapper


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False, disable=not sys.stderr.isatty() and not console.is_terminal)


def print_summary(results: dict) -> None:
    from headstart.report import SUMMARY_HEADER, recommendation, summary_rows
    table = Table(title="headstart summary (test split)")
    for h in SUMMARY_HEADER:
        table.add_column(h)
    for row in summary_rows(results):
        table.add_row(*row)
    console.print(table)
    for k, v in results.get("paired_differences", {}).items():
        console.print(f"{k}: {100 * v['difference']:+.1f} pts, paired 95% CI "
                      f"[{100 * v['ci'][0]:+.1f}, {100 * v['ci'][1]:+.1f}]")
    from rich.markdown import Markdown
    console.print(Markdown(recommendation(results)))
    console.print(f"report: {Path(results['config']['out']) / 'report.md'}")


def _split_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


@app.command()
@user_errors
def run(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="image folder (one subfolder per class, or train/ [val/] [test/]), "
                                        "or a CSV/TSV/JSONL text table, or a folder of class/*.txt")],
    out: Annotated[str, typer.Option(help="run folder (default runs/<dataset>-<timestamp>)")] = "",
    backbone: Annotated[str, typer.Option(help="registry name, timm:<name>, hf:<id>, or a headstart model/ folder "
                                          "(default: efficientnet_lite0 for images, minilm_l6 for text)")] = "",
    strategies: Annotated[str, typer.Option(help="comma list of linear-probe, finetune, scratch, classic (text)")]
    = "linear-probe,finetune,scratch",
    modality: Annotated[str, typer.Option(help="image | text (default: detected from DATA)")] = "",
    text_col: Annotated[str, typer.Option(help="text tables: the text column (auto-detected if unambiguous)")] = "",
    label_col: Annotated[str, typer.Option(help="text tables: the label column")] = "",
    encoding: Annotated[str, typer.Option(help="text files' encoding, e.g. latin-1")] = "utf-8",
    test_file: Annotated[str, typer.Option(help="text: a separate test table, used only for final numbers")] = "",
    seeds: Annotated[int, typer.Option(help="seeds per strategy (same split)")] = 1,
    epochs: Annotated[int, typer.Option(help="fine-tune epoch budget, early stopping may end sooner "
                                        "(0 = modality default: 10 images, 4 text)")] = 0,
    scratch_epochs: Annotated[int, typer.Option(help="scratch epoch budget; 0 = 2 x --epochs (never fewer than --epochs)")] = 0,
    image_size: Annotated[int, typer.Option(help="input size in pixels; 0 = the backbone's own")] = 0,
    batch_size: int = 32,
    augment: Annotated[str, typer.Option(help="crop-flip | crop | none (finetune and scratch)")] = "crop-flip",
    crop_scale: Annotated[float, typer.Option(help="smallest area share kept by random crops")] = 0.35,
    devices: Annotated[int, typer.Option(help="devices for Lightning Fabric")] = 1,
    accelerator: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    precision: Annotated[str, typer.Option(help="Fabric precision, e.g. 32-true, bf16-mixed, 16-mixed")] = "32-true",
    config: Annotated[Optional[Path], typer.Option(help="JSON config file; command-line options override it")]
    = None,
):
    """Run the controlled experiment: every strategy on one saved split, the same seeds, one test evaluation.

    Writes config.json, split.json, per-strategy folders, results.json, report.md and model/ into the run
    folder. Running the same command again resumes: finished strategy/seed units are not retrained."""
    from headstart.config import RunConfig
    from headstart.experiment import run_experiment

    base = RunConfig.load(config).to_dict() if config else {}
    given = {k: v for k, v in dict(data=data, out=out, backbone=backbone, strategies=_split_list(strategies),
                                      modality=modality, text_col=text_col, label_col=label_col, encoding=encoding,
                                      test_file=test_file,
                                      seeds=seeds, epochs=epochs, scratch_epochs=scratch_epochs,
                                      image_size=image_size, batch_size=batch_size, augment=augment, crop_scale=crop_scale,
                                      devices=devices, accelerator=accelerator, precision=precision).items()
             if not config or k == "data" or ctx.get_parameter_source(k).name != "DEFAULT"}
    cfg = RunConfig.from_dict({**base, **given})
    with _progress() as progress:
        results = run_experiment(cfg, progress=progress, log=console.print)
    print_summary(results)


@app.command()
@user_errors
def predict(
    model: Annotated[str, typer.Argument(help="a model/ folder written by headstart run")],
    inputs: Annotated[list[str], typer.Argument(help="image files or folders; for text models: tables, .txt files "
                                                "or literal texts")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object per line")] = False,
):
    """Predict classes with an exported headstart model (unreadable files are listed, not fatal)."""
    from headstart.export import predict as do_predict
    rows = do_predict(model, inputs)
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    table = Table()
    for h in ("file", "prediction", "probability", "top classes"):
        table.add_column(h)
    for r in rows:
        if "error" in r:
            table.add_row(r["path"], "[red]skipped[/]", "", r["error"])
        else:
            table.add_row(r["path"], r["label"], f"{r['prob']:.3f}",
                          ", ".join(f"{c} {p:.2f}" for c, p in r["top"]))
    console.print(table)


@app.command()
@user_errors
def backbones():
    """List the backbones: packaged offline weights, and the online/checkpoint forms accepted by --backbone."""
    from headstart.backbones import available_backbones
    table = Table()
    for h in ("backbone", "available offline", "weights", "input size"):
        table.add_column(h)
    for r in available_backbones():
        avail = {True: "yes", False: "no", None: "—"}[r["available"]]
        table.add_row(r["name"], avail, r["source"], str(r["input_size"] or ""))
    console.print(table)


@app.command()
@user_errors
def demo(
    out: Annotated[str, typer.Option(help="folder for the generated images and the runs")] = "runs/demo",
    per_class: Annotated[str, typer.Option(help="labelled images per digit, one experiment each")] = "5,20",
):
    """The whole workflow on scikit-learn's bundled digits (no downloads): does transfer beat scratch with few
    labels, and does that change as labels grow? About a minute per label budget on a 2-core CPU."""
    from headstart.demo import run_demo
    try:
        budgets = tuple(int(x) for x in _split_list(per_class))
    except ValueError:
        raise UserError(f"--per-class {per_class!r} must be comma-separated integers, e.g. 5,20") from None
    with _progress() as progress:
        all_results = run_demo(out, per_class=budgets, progress=progress, log=console.print)
    for res in all_results:
        print_summary(res)
    table = Table(title="digits: test accuracy by labels per class (transfer vs scratch)")
    names = list(all_results[0]["strategies"])
    for h in ["labels / class", *names, "best transfer - scratch (paired 95% CI)"]:
        table.add_column(h)
    for n, res in zip(budgets, all_results):
        d = max(res["paired_differences"].items(), key=lambda kv: kv[1]["difference"], default=None)
        delta = (f"{d[0].split()[0]}: {100 * d[1]['difference']:+.1f} "
                 f"[{100 * d[1]['ci'][0]:+.1f}, {100 * d[1]['ci'][1]:+.1f}]") if d else ""
        table.add_row(str(n), *[f"{100 * res['strategies'][s].get('accuracy', float('nan')):.1f}%" for s in names],
                      delta)
    console.print(table)


def main():
    app()
