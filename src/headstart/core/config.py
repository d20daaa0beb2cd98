"""Run configuration: one flat dataclass, serialised into every run folder as config.json.

    from headstart.core.config import RunConfig
    cfg = RunConfig(data="path/to/images", strategies=["linear-probe", "scratch"])
    cfg.save("runs/x/config.json"); RunConfig.load("runs/x/config.json")

Unknown keys or wrong types in a loaded file give a UserError that lists the valid keys.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from headstart.core.errors import UserError
from headstart.core.io import write_json

# settings that may change when a run resumes: where and how units run (activation checkpointing recomputes the
# same values), what the summary prices, which seeds, strategies and extra curve points are added (finished units
# never depend on them), and where the data lies (split.json's item hashes refuse different data at a new path)
RESUMABLE = ("out", "check_labels", "devices", "num_workers", "jobs", "executor", "grad_checkpointing", "cost_per_label",
             "price_per_hour", "device_watts", "target_metric", "curve", "seeds", "strategies", "data", "test_file",
             "tracker")
INF = float("inf")
# every numeric setting's valid range (low, high, what it is), checked before any work: a bootstrap of 0 used to
# crash only after all training had finished, a negative validation fraction was accepted
RANGES = {"seeds": (1, 100, "seeds"), "batch_size": (1, 4096, "items per batch"), "epochs": (0, 10_000, "epochs"),
          "scratch_epochs": (0, 10_000, "epochs"), "patience": (1, 1000, "epochs"),
          "scratch_patience": (0, 1000, "epochs"), "val_fraction": (0.01, 0.9, "a share of the training pool"),
          "test_fraction": (0.01, 0.9, "a share of the data"), "image_size": (0, 2048, "pixels (0: the backbone's)"),
          "bootstrap": (100, 1_000_000, "resamples"), "jobs": (0, 1024, "processes (0: chosen)"),
          "devices": (1, 1024, "devices"), "num_workers": (0, 256, "DataLoader workers"),
          "trunk_views": (0, 64, "views per item"),
          "round_items": (-1, 10 ** 9, "training items (-1: never)"), "crop_scale": (0.01, 1.0, "an area share"),
          "race_margin": (-INF, 1.0, "a share of the score (negative: stop scratch at once, for tests)"), "near_dup_threshold": (0.0, 10.0, "a cosine"),
          "lr_head": (0.0, INF, "a learning rate"), "lr_body": (0.0, INF, "a learning rate"),
          "lr_decay": (0.0, 1.0, "a factor per group"), "scratch_lr": (0.0, INF, "a learning rate"),
          "weight_decay": (0.0, 10.0, "a factor"), "target_metric": (0.0, 1.0, "a score between 0 and 1"),
          "price_per_hour": (0.0, 1e6, "dollars"), "device_watts": (0.0, 1e6, "watts"),
          "unfreeze_groups": (0, 1000, "block groups"), "lora_rank": (1, 1024, "a rank"), "unfreeze_every": (-1, 1000, "epochs (-1: all at once)"),
          "split_seed": (0, 2 ** 31, "a seed")}
CHOICES = {"augment": ("crop-flip", "crop", "none"), "bn_policy": ("eval-all", "train-unfrozen"),
           "executor": ("local", "process", "ray"), "feature_dtype": ("auto", "float32", "bfloat16"),
           "tracker": ("", "tensorboard", "mlflow"), "metric": ("", "accuracy", "balanced_accuracy", "macro_f1"),
           "rebalance": ("auto", "logit-adjust", "class-weights", "none")}


@dataclass
class RunConfig:
    data: str = ""                      # image folder (per class, or train/ [val/] [test/]); CSV/TSV/JSONL or .txt folder
    out: str = ""                       # run folder; "" -> runs/<dataset>-<timestamp>
    modality: str = ""                  # image | text | audio; "" -> detected from the data
    backbone: str = ""                  # registry name, timm:<name>, hf:<id>, or a headstart model/ folder; "" -> default
    text_col: str = ""                  # text tables: column names ("" -> auto-detected when unambiguous)
    label_col: str = ""
    group_col: str = ""                 # tables: items sharing this column's value (patient, speaker, session) stay in
                                        # one split, so near-identical items never leak across train/val/test
    encoding: str = "utf-8"             # text files' encoding
    test_file: str = ""                 # text: an optional user-given test table (used only for final evaluation)
    pad_to_30s: bool = False            # audio: feed Whisper 30 s of padding (its native input) instead of clip length
    assess: bool = True                 # measure transferability and domain shift before training (assessment.json)
    dedupe: bool = False                # drop train items that duplicate val/test items or conflict in label
    check_labels: bool = True           # list train/val labels the out-of-fold probe disputes (cleanlab): label_issues.csv
    near_dup_threshold: float = 0.9     # floor of the near-duplicate cosine (data-relative above it); >= 1 disables
    curve: list[float] = field(default_factory=list)   # label fractions for learning curves, e.g. [0.1, 0.25, 0.5, 1.0]
    metric: str = ""                    # the decision metric every choice runs on: accuracy | balanced_accuracy |
                                        # macro_f1; "" -> balanced_accuracy when the training classes are imbalanced
                                        # beyond 3:1 (stats/metrics.py says why), else accuracy
    rebalance: str = "auto"             # auto | logit-adjust | class-weights | none: how every arm (probe, classic,
                                        # fine-tune, scratch alike) counters imbalanced classes; auto: logit adjustment
                                        # when the training classes are imbalanced beyond 3:1, else none
    target_metric: float = 0.0          # score (decision metric) whose label cost is compared; 0 -> best scratch score
    cost_per_label: list[float] = field(default_factory=lambda: [5.0, 20.0])   # $ per label (range)
    price_per_hour: float = 0.0         # $ per device hour; 0 -> costs.DEFAULTS for the device
    device_watts: float = 0.0           # device power for energy; 0 -> costs.DEFAULTS
    jobs: int = 0                       # units in parallel processes; 1: in this process; 0 -> chosen from the
                                        # machine's cores and memory (grid.auto_jobs; the run log says what it chose)
    executor: str = "local"             # local | process | ray: where units run
    tracker: str = ""                   # "" | tensorboard | mlflow: each unit's metrics.csv and test score, logged
                                        # through Lightning's loggers after the run (outputs/track.py)
    strategies: list[str] = field(default_factory=list)   # arms to run; [] -> every registered strategy (the
                                        # names are resolved into config.json; training/strategies.py lists them)
    seeds: int = 1                      # every strategy runs with seeds 0..seeds-1 on the same split
    split_seed: int = 0                 # seed of the stratified split (fixed: the split is saved anyway)
    val_fraction: float = 0.2           # share of the training pool carved out for validation
    test_fraction: float = 0.2          # share held out for test when the user gave no test set
    image_size: int = 0                 # 0 -> the backbone's native input size (224 for Lite0)
    batch_size: int = 32
    epochs: int = 0                     # fine-tune budget (max epochs; early stopping may end sooner); 0 -> modality
    scratch_epochs: int = 0             # 0 -> 2 x epochs (never fewer than epochs: a fair scratch budget)
    patience: int = 3                   # early stopping on validation loss
    round_items: int = 0                # large training sets (n >= 2 x round_items): train in rounds of round_items
                                        # items, each counted as an epoch (validation, early stopping, racing, the
                                        # budget: a budget in items, not passes); 0 -> modality default (text 2500;
                                        # images and audio -1), -1 never
    scratch_patience: int = 0           # 0 -> 2 x patience (random-init val loss is noisy early on)
    lr_head: float = 1e-3               # head LR for finetune (and the adapters' of lora); scratch uses scratch_lr
    lora_rank: int = 8                  # lora: the adapters' rank
    lr_body: float = 0.0                # LR of the block group next to the head; 0 -> modality default
    lr_decay: float = 0.0               # each deeper group gets lr_body * lr_decay**depth; 0 -> modality default
    unfreeze_groups: int = 0            # block groups (from the top) finetune unfreezes in the end; 0 -> modality
    bn_policy: str = "eval-all"         # finetune BatchNorm: eval-all | train-unfrozen (frozen groups: always eval)
    unfreeze_every: int = 0             # epochs between unfreezing one more group; -1 all at once; 0 -> modality
    full_scratch: bool = False          # scratch always runs its whole budget (no racing against transfer)
    progressive_resize: bool = True     # scratch on images: the first half of its budget at half the input size
                                        # (5x cheaper epochs; the racing decision falls there), the rest at full size
    race_margin: float = 0.05           # racing: stop scratch once its optimistic final val accuracy is this far
                                        # below the best transfer arm's (never when scratch is close or ahead)
    scratch_lr: float = 0.0             # 0 -> modality default (image/audio 3e-3, text 1e-4: transformers diverge higher)
    feature_dtype: str = "auto"         # images' frozen feature pass: auto (bf16 where the CPU/GPU has it) | float32 |
                                        # bfloat16
    trunk_views: int = 4                # finetune (images): cache the frozen trunk's output for this many augmented
                                        # views per image, train only the top each epoch; 0 = recompute every epoch
    fold_batchnorm: bool = True         # eval-mode BatchNorms run folded into their convolutions (same maths, faster)
    weight_decay: float = 1e-4
    grad_checkpointing: bool = False    # scratch on the CPU: recompute the first 2 stages' activations in backward
                                        # (-0.6 GiB, +40% epoch time); also on by itself below 8 GiB available
    augment: str = "crop-flip"          # finetune/scratch augmentation: crop-flip | crop | none
    crop_scale: float = 0.35            # smallest area share kept by the random resized crop
    probe_cs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
    bootstrap: int = 2000               # bootstrap resamples for CIs
    devices: int = 1                    # Lightning Fabric devices
    accelerator: str = "auto"           # cpu | cuda | auto
    precision: str = "auto"             # Fabric precision; auto = bf16-mixed on a GPU, 32-true on the CPU
    num_workers: int = 0                # DataLoader workers (images are decoded once, up front)
    cache_dir: str = ""                 # feature cache; "" -> $HEADSTART_CACHE or ~/.cache/headstart

    def resolve(self, defaults: dict) -> None:
        """Fill the 0 = 'modality default' fields, so config.json records the values that actually ran."""
        for k, v in defaults.items():
            if not getattr(self, k):
                setattr(self, k, v)

    def effective_scratch_epochs(self) -> int:
        return max(self.scratch_epochs or 2 * self.epochs, self.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    def validate(self) -> None:
        """Every enumerated setting checked up front, with the valid choices in the message."""
        for key, valid in CHOICES.items():
            if getattr(self, key) not in valid:
                raise UserError(f"{key} {getattr(self, key)!r} unknown; choose {', '.join(valid)}")
        bad = [f for f in self.curve if not 0 < f <= 1]
        if bad:
            raise UserError(f"--curve fractions must lie in (0, 1]; got {bad[0]}")
        for key, (low, high, what) in RANGES.items():
            v = getattr(self, key)
            if not low <= v <= high:
                raise UserError(f"{key} {v!r} is out of range: it is {what}, from {low} to {high}; change it (its "
                                f"command-line option, or the \"{key}\" key of a --config file)")
        if self.val_fraction + self.test_fraction >= 0.95:
            raise UserError(f"val_fraction {self.val_fraction} + test_fraction {self.test_fraction} leave almost "
                            "nothing to train on; keep their sum below 0.95")
        if not self.probe_cs or min(self.probe_cs) <= 0:
            raise UserError(f"probe_cs {self.probe_cs} must be positive regularisation strengths, e.g. [0.1, 1, 10]")
        if any(c < 0 for c in self.cost_per_label):
            raise UserError(f"--cost-per-label {self.cost_per_label} must not be negative")

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise UserError(f"unknown config key(s) {unknown}; valid keys: {', '.join(fields)}")
        for k, v in d.items():
            if not _type_ok(v, hints[k]):
                raise UserError(f"config key {k!r} has value {v!r} of type {type(v).__name__}; "
                                f"expected {hints[k]}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read config {path}: {e}") from None
        return cls.from_dict(d)


def _type_ok(v, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(v, list) and all(_type_ok(x, inner) for x in v)
    if hint is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if hint is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, hint)
