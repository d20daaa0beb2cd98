"""The Modality interface: everything that differs between images, text and speech, and nothing else.

    mod = MODALITIES["text"]()                      # modalities/__init__.py: the registry and detection
    ds = mod.load(cfg, spec, size)                  # LabeledSet, bad items skipped and listed
    state = mod.prepare(ds, spec, size, cfg)        # ModalityState: per-item model inputs (tokens, log-mels) + facts
    data = ctx.inputs                               # Inputs: items, prepared inputs, spec, size, config, device
    mod.dataset(data, indices, train=True)          # a torch Dataset (with .collate when batches need padding)
    mod.batch_fn(data)(x)                           # what the model's forward receives
    mod.progressive_sizes(data, budget)             # input size per epoch for random-init training, or None
    mod.embed(data, model, progress)                # frozen pre-logit features of every item

The split, strategies, training loop, evaluation, report and export never compare a modality's name: they call
these methods and read these attributes. A new modality is a module here implementing the Protocol, one entry in
MODALITIES, and (when its network is new) a family builder in models/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from headstart.core.errors import UserError


@dataclass
class ModalityState:
    """What prepare() computes once per run from the loaded items."""
    inputs: list | None = None          # per-item model inputs (text: token ids; audio: log-mel arrays); images: None
    stats: dict = field(default_factory=dict)   # facts for the report and the assessment (tokenizer fit, clip lengths)


@dataclass(frozen=True)
class Inputs:
    """What a modality's methods read of a run (pipeline/state.RunContext.inputs builds it): never the run itself."""
    ds: Any                             # core/dataset.LabeledSet: items, labels, paths
    state: ModalityState                # prepared per-item inputs (token ids, log-mels) and facts
    spec: Any                           # models/registry.BackboneSpec
    size: int                           # input size (pixels; text: max tokens)
    cfg: Any                            # core/config.RunConfig (augment, crop_scale, feature_dtype, pad_to_30s)
    device: str = "cpu"                 # where the run's model runs (the feature dtype depends on it)


@runtime_checkable
class Modality(Protocol):
    name: str
    default_backbone: str
    folder_exts: set[str]          # file types counted when a folder's modality is detected
    file_exts: set[str]            # single data files this modality reads (tables), else empty
    defaults: dict                 # modality-specific hyper-parameter defaults (resolved into config.json)
    cpu_bf16_training: bool        # auto precision trains in bf16 on CPUs with native bf16 (measured faster)
    fused_adamw: bool              # the training loop's AdamW runs fused (one kernel for every parameter)
    unit_gib: float                # measured peak memory of one scratch unit (chooses --jobs)
    batchnorm_shift: bool          # the assessment profiles BatchNorm statistics (CNN backbones)
    min_near_dup_size: int         # below this input size near-duplicates are not searched (exact ones always are)
    near_dup_kind: str             # "similar": near pairs are only reported (text); "": judged like exact copies

    def load(self, cfg, spec, size: int): ...
    def prepare(self, ds, spec, size: int, cfg) -> ModalityState: ...
    def dataset(self, data: Inputs, indices, train: bool = False): ...
    def batch_fn(self, data: Inputs) -> Callable[[Any], Any]: ...
    def progressive_sizes(self, data: Inputs, budget: int) -> list[int] | None: ...  # per-epoch size (scratch)
    def embed(self, data: Inputs, model, progress=None) -> np.ndarray: ...
    def feature_dtype(self, data: Inputs) -> str: ...
    def feature_variant(self, data: Inputs) -> str: ...
    def raw_features(self, data: Inputs, indices): ...
    def classic_inputs(self, data: Inputs, indices=None): ...
    def classic_pipeline(self, C: float, seed: int): ...
    def shift_evidence(self, data: Inputs, indices) -> dict: ...
    def evidence_lines(self, shift: dict) -> list[str]: ...
    def finetune_advice(self, early_shift: bool) -> str: ...
    def hidden_gain(self) -> tuple[str, str] | None: ...
    def input_description(self, size: int) -> str: ...
    def predict(self, model_dir, model, spec, classes: list[str], inputs: list[str], top: int, batch_size: int,
                runtime: str, options: dict | None = None) -> list[dict]: ...   # options: text_col, encoding
    def read_unlabelled(self, inputs: list[str], spec, size: int): ...   # LabeledSet without labels (suggest)
    def picture(self, path, size: int = 96) -> bytes | None: ...      # the error gallery's thumbnail, or None


class ModalityBase:
    """Defaults for the Protocol's members that most modalities share, so a new modality writes only what differs:
    load, prepare, dataset, embed, classic_inputs, classic_pipeline, finetune_advice, input_description, predict,
    read_unlabelled and its name, default_backbone, file types and defaults (tests/test_toy_modality.py runs a
    whole experiment on a modality written this way)."""
    folder_exts: set[str] = set()
    file_exts: set[str] = set()
    cpu_bf16_training = False      # measured faster in bf16 on a CPU: say so per modality
    fused_adamw = False            # measured faster fused, and its runs' numbers checked: say so per modality
    unit_gib = 2.0
    batchnorm_shift = False
    min_near_dup_size = 0
    near_dup_kind = ""

    def batch_fn(self, data: Inputs) -> Callable[[Any], Any]:
        return lambda x: x                  # the dataset already yields what the model's forward takes

    def progressive_sizes(self, data: Inputs, budget: int) -> list[int] | None:
        return None                         # no input size to grow

    def feature_dtype(self, data: Inputs) -> str:
        return "float32"

    def feature_variant(self, data: Inputs) -> str:
        return self.feature_dtype(data)     # the feature-cache key part: what changes the stored features

    def raw_features(self, data: Inputs, indices):
        """What the classic baseline starts from, standardised, for the assessment's k-NN."""
        from sklearn.preprocessing import StandardScaler
        return StandardScaler().fit_transform(np.asarray(self.classic_inputs(data, indices), dtype=np.float64))

    def shift_evidence(self, data: Inputs, indices) -> dict:
        return {}

    def evidence_lines(self, shift: dict) -> list[str]:
        return []

    def hidden_gain(self) -> tuple[str, str] | None:
        return None

    def picture(self, path, size: int = 96) -> bytes | None:
        """A small PNG of one input for the report's error gallery (None: the gallery shows its name or text)."""
        return None


def decoded_budget_gib() -> float:
    """How many GiB of decoded items (images, audio samples) a run keeps in memory (HEADSTART_DECODED_GIB, default
    2): a folder that fits is decoded once and kept (the shared sets: ~0.1 GiB); beyond it the items are decoded
    again when a batch needs them, so memory stays flat in the number of items."""
    import os
    try:
        return float(os.environ.get("HEADSTART_DECODED_GIB", "2"))
    except ValueError:
        raise UserError(f"HEADSTART_DECODED_GIB={os.environ['HEADSTART_DECODED_GIB']!r} must be a number of GiB, "
                        "e.g. 2") from None


class IndexedItems:
    """A map-style dataset over `indices` of per-item inputs and labels: (inputs[j], labels[j]) for j in indices.
    Subclasses add `collate` for inputs of varying size."""

    def __init__(self, inputs: list, labels, indices):
        self.inputs, self.labels, self.indices = inputs, labels, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return self.inputs[j], self.labels[j]


def standardised_logreg(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))


class InputItem(str):
    """One predict input that knows where it came from: `origin` names it in the output ("arg 2", "stdin:3");
    piped: a line of standard input (a literal text for text models, a file path for the others)."""

    def __new__(cls, text: str, origin: str, piped: bool = False):
        obj = super().__new__(cls, text)
        obj.origin, obj.piped = origin, piped
        return obj


def add_unlabelled(ds, where: str, item, digest: str) -> None:
    """One unlabelled item into a LabeledSet (label -1: no class), for the frozen pass of `headstart suggest`."""
    ds.add(where, -1, "", digest, item=item)


def top_k(probs, classes: list[str], top: int) -> dict:
    """One prediction row from a probability vector: label, its probability, and the top classes."""
    vals, idx = probs.topk(min(top, len(classes)))
    return {"label": classes[idx[0]], "prob": float(vals[0]),
            "top": [[classes[i], float(v)] for v, i in zip(vals, idx)]}


def expand_inputs(inputs: list[str], exts: set[str], what: str) -> list:
    """Files as given, folders expanded to the files with one of `exts` below them."""
    files = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            # not only regular files: a pipe or dangling link named like an input is listed by the reader, not lost
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and not f.is_dir())
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"input {s!r} does not exist; pass {what} files or folders")
    if not files:
        raise UserError(f"no {what} found in {', '.join(inputs)}")
    return files


def sample_batch(modality: Modality, data: Inputs, indices, train: bool, n: int = 16):
    """Up to n items of `indices` as the model's input (the same path the training loop uses)."""
    from torch.utils.data import DataLoader
    ds = modality.dataset(data, list(indices)[:n], train=train)
    x, _ = next(iter(DataLoader(ds, batch_size=n, collate_fn=getattr(ds, "collate", None))))
    return modality.batch_fn(data)(x)
