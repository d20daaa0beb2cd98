"""headstart command line: each command's docstring is its --help; each body calls one library function.

The only module that imports parts of headstart inside functions: the application (torch, timm, Lightning) loads
when a command runs, so `headstart --help` answers at once (those imports take 5-16 s on a 2-core machine).
"""
from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from headstart.core.config import RunConfig
from headstart.app import show
from headstart.core.errors import UserError
from headstart.models.registry import available_backbones
from headstart.training.strategies import DEFAULT, ORDER, STRATEGIES

# rich's help panels give each option a column as wide as the longest flag (--progressive-resize/--no-...), which at
# 80 columns or in a pipe left one word per line; below RICH_HELP columns, click's plain help wraps under the flag
RICH_HELP = 120
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  rich_markup_mode="rich" if sys.stdout.isatty() and shutil.get_terminal_size().columns >= RICH_HELP
                  else None,
                  help="Should I reuse a pretrained model for my small labelled dataset? headstart measures it.")


def _version(value: bool):
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            print(f"headstart {version('headstart')}")
        except PackageNotFoundError:
            print("headstart (not installed: running from a source tree)")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="print the version and exit")] = False):
    """Should I reuse a pretrained model for my small labelled dataset? headstart measures it."""
console = Console()


def _log(msg: str) -> None:
    """A run-log line, printed as plain text: rich markup would eat bracketed words ("pip install
    'headstart[onnx]'" lost its "[onnx]")."""
    console.print(msg, markup=False, highlight=False)
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
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):        # items (images, texts, batches) per second
        def render(self, task):
            return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), Rate(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    disable=not sys.stderr.isatty() and not console.is_terminal)


def print_summary(results: dict) -> None:
    show.summary(console, results)


def _split_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _floats(s: str, option: str) -> list[float]:
    try:
        return [float(x) for x in _split_list(s)]
    except ValueError:
        raise UserError(f"{option} {s!r} must be comma-separated numbers, e.g. 0.1,0.25,0.5,1.0") from None


@app.command()
@user_errors
def run(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="image folder (one subfolder per class, or train/ [val/] [test/]), "
                                        "or a CSV/TSV/JSONL text table, or a folder of class/*.txt")],
    out: Annotated[str, typer.Option(help="run folder (default runs/<dataset>-<timestamp>)")] = "",
    backbone: Annotated[str, typer.Option(help="registry name, timm:<name>, hf:<id>, or a headstart model/ folder "
                                          "(default: efficientnet_lite0 for images, minilm_l6 for text)")] = "",
    backbones: Annotated[str, typer.Option(help="comma list of backbones to compare: all are assessed, the --top-k "
                                           "best by the assessment and the cheapest are trained (transfer arms; "
                                           "scratch and classic once), and one is recommended")] = "",
    top_k: Annotated[int, typer.Option(help="with --backbones: how many of the assessment's best to train")] = 2,
    strategies: Annotated[str, typer.Option(help="comma list of " + "; ".join(
        f"{s} ({STRATEGIES[s].label})" for s in ORDER))] = ",".join(DEFAULT),
    modality: Annotated[str, typer.Option(help="a registered modality: image, text or audio (default: detected "
                                          "from DATA)")] = "",
    text_col: Annotated[str, typer.Option(help="text tables: the text column (auto-detected if unambiguous)")] = "",
    label_col: Annotated[str, typer.Option(help="tables: the label column")] = "",
    group_col: Annotated[str, typer.Option(help="tables: items sharing this column's value (patient, speaker, "
                                           "session) stay in one split")] = "",
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
    precision: Annotated[str, typer.Option(help="Fabric precision, e.g. 32-true, bf16-mixed, 16-mixed; auto = "
                                           "bf16-mixed on a GPU, and on a CPU with native bf16 for networks "
                                           "where it measured faster (text, speech); else 32-true")] = "auto",
    curve: Annotated[str, typer.Option(help="label fractions for learning curves, e.g. 0.05,0.1,0.25,0.5,1.0")] = "",
    metric: Annotated[str, typer.Option(help="decision metric for every choice: accuracy | balanced_accuracy | "
                                        "macro_f1 (default: balanced_accuracy when the training classes are "
                                        "imbalanced beyond 3:1, else accuracy)")] = "",
    rebalance: Annotated[str, typer.Option(help="auto | logit-adjust | class-weights | none: how every arm counters "
                                           "imbalanced classes (auto: logit adjustment beyond 3:1)")] = "auto",
    target_metric: Annotated[float, typer.Option(help="score (in the decision metric) whose label cost is compared "
                                                 "(0 = best scratch)")] = 0.0,
    cost_per_label: Annotated[str, typer.Option(help="$ per label, a value or a low,high range")] = "5,20",
    price_per_hour: Annotated[float, typer.Option(help="$ per device hour (0 = $0.10 CPU, $2.50 GPU)")] = 0.0,
    device_watts: Annotated[float, typer.Option(help="device power for energy (0 = 65 W CPU, 700 W GPU)")] = 0.0,
    jobs: Annotated[int, typer.Option(help="units in parallel worker processes (0 = chosen from the machine's cores "
                                      "and memory; 1 = in this process)")] = 0,
    full_scratch: Annotated[bool, typer.Option(help="train scratch for its whole budget even when its extrapolated "
                                               "learning curve cannot reach the transfer arms")] = False,
    progressive_resize: Annotated[bool, typer.Option(help="images: scratch trains the first half of its budget on "
                                                     "half-size inputs (224 -> 112 px), where racing decides")] = True,
    executor: Annotated[str, typer.Option(help="local | process | ray: every unit a task on the Ray cluster at "
                                                      "RAY_ADDRESS, or a local one (extra: headstart[ray])")] = "local",
    tracker: Annotated[str, typer.Option(help="tensorboard | mlflow: log every unit's curves and test score "
                                         "(needs tensorboard/tensorboardX or mlflow)")] = "",
    assess: Annotated[bool, typer.Option(help="assess transferability and domain shift before training")] = True,
    dedupe: Annotated[bool, typer.Option(help="drop train items that duplicate val/test items (exact or near) or "
                                         "carry conflicting labels; val/test stay untouched")] = False,
    check_labels: Annotated[bool, typer.Option(help="list train/val labels the probe disputes (label_issues.csv)")]
    = True,
    config: Annotated[Optional[Path], typer.Option(help="JSON config file; command-line options override it")]
    = None,
):
    """Run the controlled experiment: every strategy on one saved split, the same seeds, one test evaluation.

    First assesses transferability and checks for duplicates across the splits; with --curve, every strategy also
    trains on nested label fractions. Writes config.json, split.json, assessment.json, per-unit folders,
    results.json, report.md, report.html and model/ into the run folder. Running the same command again resumes:
    finished units are not retrained."""
    from headstart.app.run import run_experiment

    base = RunConfig.load(config).to_dict() if config else {}
    given = {k: v for k, v in dict(data=data, out=out, backbone=backbone, strategies=_split_list(strategies),
                                      modality=modality, text_col=text_col, label_col=label_col, encoding=encoding,
                                      group_col=group_col,
                                      test_file=test_file,
                                      seeds=seeds, epochs=epochs, scratch_epochs=scratch_epochs,
                                      image_size=image_size, batch_size=batch_size, augment=augment, crop_scale=crop_scale,
                                      devices=devices, accelerator=accelerator, precision=precision,
                                      assess=assess, dedupe=dedupe, check_labels=check_labels,
                                      curve=_floats(curve, "--curve"),
                                      target_metric=target_metric, price_per_hour=price_per_hour,
                                      metric=metric, rebalance=rebalance,
                                      device_watts=device_watts, jobs=jobs, full_scratch=full_scratch,
                                      progressive_resize=progressive_resize, tracker=tracker,
                                      executor="process" if jobs > 1 and executor == "local" else executor,
                                      cost_per_label=_floats(cost_per_label, "--cost-per-label")).items()
             if not config or k == "data" or ctx.get_parameter_source(k).name != "DEFAULT"}
    cfg = RunConfig.from_dict({**base, **given})
    if backbones:
        if backbone:
            raise UserError("give either --backbone (one) or --backbones (a comparison), not both")
        from headstart.app.compare import run_compare
        with _progress() as progress:
            res = run_compare(cfg, _split_list(backbones), top_k, progress=progress, log=_log)
        show.comparison(console, res)
        return
    with _progress() as progress:
        results = run_experiment(cfg, progress=progress, log=_log)
    print_summary(results)


@app.command()
@user_errors
def assess(
    data: Annotated[str, typer.Argument(help="the same data argument as `headstart run`")],
    backbones: Annotated[str, typer.Option(help="comma list of candidate backbones (default: the modality's)")] = "",
    out: Annotated[str, typer.Option(help="folder for assessment.json/.md (default runs/<dataset>-assess-<time>)")]
    = "",
    modality: Annotated[str, typer.Option(help="a registered modality: image, text or audio (default: detected "
                                          "from DATA)")] = "",
    text_col: str = "", label_col: str = "", encoding: str = "utf-8",
    test_file: Annotated[str, typer.Option(help="text: a separate test table (never used by the assessment)")] = "",
    image_size: Annotated[int, typer.Option(help="input size in pixels; 0 = each backbone's own")] = 0,
):
    """Before training: will transfer help? Scores each backbone's frozen features on the train+val items (the test
    split is never looked at), in about the time of one feature-extraction pass.

    LogME (log evidence of a Bayesian linear head) and H-score (class separation of the features) need only
    features; LEEP and NCE also use the backbone's own source classifier (e.g. the 1000 ImageNet classes); k-NN is
    a cross-validated accuracy on the frozen features, next to the same k-NN on the raw inputs (pixels, TF-IDF,
    MFCC). Domain shift: BatchNorm statistics by depth (images), tokenizer fragmentation (text), signal facts
    (speech). The scores RANK backbones for this task; they do not promise an accuracy, and LogME/H-score/LEEP
    values are not comparable across datasets. The verdict (likely helps / uncertain / likely little gain over
    scratch) uses thresholds calibrated on measured runs (docs/assessment.md); `headstart run` measures the truth
    and reports predicted beside measured."""
    from headstart.app.run import run_assess
    cfg = RunConfig(data=data, out=out, modality=modality, text_col=text_col, label_col=label_col,
                    encoding=encoding, test_file=test_file, image_size=image_size)
    with _progress() as progress:
        res = run_assess(cfg, _split_list(backbones), progress=progress, log=_log)
    show.assessment(console, res)
    console.print(f"written: {cfg.out}/assessment.md")


@app.command()
@user_errors
def predict(
    model: Annotated[str, typer.Argument(help="a model/ folder written by headstart run")],
    inputs: Annotated[list[str], typer.Argument(help="image or audio files or folders; for text models: tables, "
                                                ".txt files, folders of them or literal texts (text:WORDS forces "
                                                "a literal); - reads one per line from stdin")],
    fmt: Annotated[str, typer.Option("--format", help="table | jsonl | csv (to stdout)")] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="same as --format jsonl")] = False,
    runtime: Annotated[str, typer.Option(help="auto (ONNX Runtime when installed and model.onnx exists) | onnx | "
                                         "torch")] = "auto",
    text_col: Annotated[str, typer.Option(help="text models: the tables' text column (auto-detected if "
                                          "unambiguous)")] = "",
    encoding: Annotated[str, typer.Option(help="text models: the files' encoding, e.g. latin-1")] = "utf-8",
):
    """Predict classes with an exported headstart model (unreadable files are listed, not fatal; the exit status
    is 1 when no input could be read)."""
    from headstart.outputs.predict import FORMATS, predict as do_predict, write_rows
    if runtime not in ("auto", "onnx", "torch"):
        raise UserError(f"--runtime {runtime!r} unknown; choose auto, onnx or torch")
    fmt = "jsonl" if as_json else fmt
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} unknown; choose {', '.join(FORMATS)}")
    rows = do_predict(model, inputs, runtime=runtime, stdin=sys.stdin,
                      options={"text_col": text_col, "encoding": encoding} if (text_col or encoding != "utf-8") else None)
    failed = bool(rows) and all("error" in r for r in rows)
    if fmt != "table":
        write_rows(rows, fmt, sys.stdout)
        if failed:
            raise typer.Exit(1)
        return
    show.predictions(console, rows)
    if failed:
        console.print(f"[bold red]error:[/] none of the {len(rows)} input(s) could be read (reasons above)",
                      highlight=False)
        raise typer.Exit(1)


@app.command()
@user_errors
def suggest(
    run_dir: Annotated[str, typer.Argument(help="a run folder written by headstart run")],
    unlabelled: Annotated[list[str], typer.Argument(help="unlabelled items: folders or files of the run's kind "
                                                    "(images, audio, or text tables / .txt files)")],
    n: Annotated[int, typer.Option("--n", help="how many items to suggest")] = 50,
    uncertainty: Annotated[str, typer.Option(help="margin | entropy")] = "margin",
    random_share: Annotated[float, typer.Option(help="share of the picks drawn at random (keeps the labelled set "
                                                "representative)")] = 0.2,
    seed: int = 0,
    out: Annotated[str, typer.Option(help="CSV to write (default RUN_DIR/suggestions.csv)")] = "",
):
    """Which unlabelled items to label next: ranked by the run's model (uncertain items first) and by coverage of
    its frozen feature space (items far from every labelled one), plus a random share. Writes a CSV of item, score,
    why and predicted label; a finished run's report lists the first ones under "Next steps"."""
    from headstart.app.suggest import run_suggest
    with _progress() as progress:
        res = run_suggest(run_dir, unlabelled, n, uncertainty, random_share, seed, out, progress=progress,
                          log=_log)
    show.suggestions(console, res)
    console.print(f"written: {res.file}")


@app.command()
@user_errors
def backbones():
    """List the backbones: packaged offline weights, and the online/checkpoint forms accepted by --backbone."""
    show.backbones(console, available_backbones())


@app.command()
@user_errors
def demo(
    out: Annotated[str, typer.Option(help="folder for the generated images and the run")] = "runs/demo",
    per_class: Annotated[int, typer.Option(help="labelled images per digit (a fifth become validation)")] = 20,
    curve: Annotated[str, typer.Option(help="label fractions for the learning curve")] = "0.25,0.5",
):
    """The whole workflow on scikit-learn's bundled digits (no downloads): assessment, every strategy at several
    label budgets (a learning curve), what transfer saves vs scratch, report.md/.html. About four to five minutes
    on 2 CPU cores."""
    from headstart.app.demo import run_demo
    if per_class < 5:
        raise UserError(f"--per-class {per_class} is too small; use at least 5 images per digit")
    with _progress() as progress:
        res = run_demo(out, per_class=per_class, curve=tuple(_floats(curve, "--curve")), progress=progress,
                       log=_log)
    print_summary(res)
    show.demo_curve(console, res)

def main():
    app()
