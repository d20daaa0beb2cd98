"""Text: table/folder loading with listed bad rows, tokenization and its evidence, token batches, the TF-IDF
baseline, and prediction from tables, files or literal strings.

    ds = load_text("questions.csv")                      # CSV/TSV/JSONL (columns auto-detected) or folder of .txt
    ids, stats = tokenize(folder, ds.items, max_length)  # token ids + tokenizer fit (unknown / split / truncated)
    TextModality()                                       # the Modality (modalities/base.py) for text

The encoder (models/bert.py) exposes timm's contract, so strategies, the training loop and block groups
(embeddings, layer 0..L-1, head) work unchanged.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from headstart.core.dataset import LabeledSet, display_name, not_regular
from headstart.core.errors import UserError, first_line
from headstart.core.tables import (LABEL_COLS, MISSING, TABLE_EXTS, check_column, decode_text, group_of,
                                   pick_column, read_rows)
from headstart.models.device import to_device, to_numpy
from headstart.models.hub import hub_unreachable, offline_mode
from headstart.modalities.base import IndexedItems, ModalityState, add_unlabelled, top_k

TEXT_EXTS = TABLE_EXTS
TEXT_COLS = ("text", "sentence", "question", "review", "content", "body", "utterance", "comment")


def load_text(path: str | Path, text_col: str = "", label_col: str = "", encoding: str = "utf-8",
              test_file: str = "", group_col: str = "") -> LabeledSet:
    """Rows with empty text, missing label or malformed lines are skipped and listed (with their line)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data path {str(path)!r} does not exist; pass a CSV/TSV/JSONL file or a folder of "
                        "class subfolders with .txt files")
    sources = [(path, "")] + ([(Path(test_file), "test")] if test_file else [])
    if test_file and sources[0][1] == "":
        sources[0] = (path, "train")
    ds = LabeledSet(root=path, classes=[])
    records, group = [], {}
    for src, role in sources:
        if src.is_dir() and group_col:
            raise UserError(f"--group-col {group_col} needs a table with that column; {src} is a folder of .txt files")
        if src.is_dir():
            for cdir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for f in sorted(cdir.glob("*.txt")):
                    where = display_name(f"{cdir.name}/{f.name}")
                    odd = not_regular(f)
                    if odd:
                        ds.skipped.append({"path": where, "reason": odd})
                        continue
                    try:
                        records.append((where, decode_text(f.read_bytes(), f, encoding).strip(), display_name(cdir.name),
                                        role))
                    except UserError as e:
                        ds.skipped.append({"path": where, "reason": str(e)})
            continue
        rows = read_rows(src, encoding)
        if not rows:
            raise UserError(f"{src} has a header but no rows")
        if all("__error__" in r for r in rows):
            raise UserError(f"no usable texts in {src}: every row is unreadable (first: {rows[0]['__error__']})")
        cols = [c for c in next(r for r in rows if "__error__" not in r) if not c.startswith("__")]
        tcol = pick_column(cols, text_col, TEXT_COLS, "text", src)
        lcol = pick_column(cols, label_col, LABEL_COLS, "label", src)
        _refuse_paths(rows, tcol, src)
        check_column(cols, group_col, "group", src)
        for r in rows:
            where = f"{src.name}:{r['__line__']}"
            t, y = (r.get(tcol) or ""), r.get(lcol)
            if "__error__" in r:
                ds.skipped.append({"path": where, "reason": r["__error__"]})
            elif not str(t).strip():
                ds.skipped.append({"path": where, "reason": "empty text"})
            elif y is None or str(y).strip().lower() in MISSING:
                ds.skipped.append({"path": where, "reason": f"missing label ({str(y).strip()!r})" if y else
                                   "missing label"})
            else:
                records.append((where, str(t).strip(), str(y).strip(), role))
                if group_col:
                    group[where] = group_of(r, group_col)
    if not records:
        raise UserError(f"no usable texts in {path}")
    ds.classes = sorted({y for _, _, y, role in records if role != "test"})
    if len(ds.classes) < 2:
        raise UserError(f"found {len(ds.classes)} label(s) in {path}; classification needs at least 2")
    index = {c: i for i, c in enumerate(ds.classes)}
    unseen = sorted({y for _, _, y, _ in records if y not in index})
    if unseen:
        raise UserError(f"label(s) {unseen[:5]} appear only in the test file; every test label needs training rows")
    for where, t, y, role in records:
        ds.paths.append(where)
        ds.items.append(t)
        ds.labels.append(index[y])
        ds.sources.append(role)
        ds.hashes.append(hashlib.sha1(t.encode()).hexdigest())
        ds.match_keys.append(normalised(t))
    ds.groups = [group[w] for w in ds.paths] if group_col else []
    return ds


def _refuse_paths(rows: list[dict], col: str, src: Path) -> None:
    """A text column that names files is not text: trained on, a path's class folder gives 100% and means nothing."""
    vals = [str(r.get(col) or "").strip() for r in rows[:200] if "__error__" not in r]
    vals = [v for v in vals if v]

    def is_file(v: str) -> bool:
        try:
            return len(v) < 1024 and "\n" not in v and (Path(v) if Path(v).is_absolute() else src.parent / v).is_file()
        except OSError:
            return False
    if vals and sum(map(is_file, vals)) >= 0.8 * len(vals):
        raise UserError(f"{src}: column {col!r} holds file paths, not texts (e.g. {vals[0]!r}); headstart trains on "
                        "the image or audio files a table names (leave out --modality text), never on their paths")


def normalised(text: str) -> str:
    """The text as a duplicate check compares it: case, punctuation and spacing ignored ("What is X ?" = "what is
    x?")."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.casefold()).split())


class TokenBatches(IndexedItems):
    """Texts -> token ids (truncated to max_length); `collate` pads a batch dynamically."""

    def __init__(self, token_ids: list[list[int]], labels, indices, pad_id: int = 0):
        super().__init__(token_ids, labels, indices)
        self.pad_id = pad_id

    def collate(self, batch):
        n = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for k, (ids, _) in enumerate(batch):
            input_ids[k, : len(ids)] = torch.tensor(ids)
            mask[k, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}, torch.tensor([y for _, y in batch])


def tokenize(folder: str | Path, texts: list[str], max_length: int) -> tuple[list[list[int]], dict]:
    """Token ids per text and tokenizer statistics (unknown-token and truncation rates)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()    # texts longer than the model are measured, then truncated below: expected
    try:
        with offline_mode(not Path(folder).exists() and hub_unreachable()):
            tok = AutoTokenizer.from_pretrained(str(folder))
    except OSError as e:
        raise UserError(f"could not load the tokenizer of {folder} ({first_line(e, 120)}); "
                        "offline, use minilm_l6") from None
    enc = tok(texts, truncation=False, add_special_tokens=True)["input_ids"]
    truncated = sum(len(e) > max_length for e in enc)
    ids = [e[: max_length - 1] + [e[-1]] if len(e) > max_length else e for e in enc]
    n_tok = sum(len(e) for e in ids)
    unk = sum(t == tok.unk_token_id for e in ids for t in e)
    stats = {"truncated_share": truncated / max(1, len(texts)), "unknown_token_rate": unk / max(1, n_tok),
             "mean_tokens": n_tok / max(1, len(texts)), "pad_id": tok.pad_token_id or 0, **_fragmentation(tok, texts)}
    return ids, stats


def _fragmentation(tok, texts: list[str]) -> dict:
    """Subword pieces per whitespace word and the share of word occurrences split into several pieces."""
    from collections import Counter
    counts = Counter(w for t in texts for w in t.split())
    if not counts:
        return {"pieces_per_word": 0.0, "split_word_share": 0.0}
    words = list(counts)
    pieces = np.array([len(e) for e in tok(words, add_special_tokens=False)["input_ids"]])
    weight = np.array([counts[w] for w in words])
    return {"pieces_per_word": float((pieces * weight).sum() / weight.sum()),
            "split_word_share": float(weight[pieces > 1].sum() / weight.sum())}


@torch.inference_mode()
def embed_texts(model, token_ids: list[list[int]], batch_size: int = 128, progress=None) -> np.ndarray:
    """Mean-pooled features, batches ordered by length so padding costs little."""
    model.eval()
    order = np.argsort([len(t) for t in token_ids])
    ds = TokenBatches(token_ids, [0] * len(token_ids), order)
    out = np.zeros((len(token_ids), model.num_features), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        x, _ = ds.collate([ds[i] for i in range(start, start + len(idx))])
        out[idx] = to_numpy(model.forward_features(to_device(x, model)))
        if progress:
            progress(len(idx))
    return out


def text_shift(stats: dict) -> dict:
    """Tokenizer evidence (computed when the texts are tokenized): how much the vocabulary fits the texts."""
    keys = ("pieces_per_word", "split_word_share", "unknown_token_rate", "truncated_share", "mean_tokens")
    return {k: stats[k] for k in keys if k in stats}


def read_texts(inputs: list[str]) -> tuple[list[str], list[str]]:
    """(texts, where each came from): CSV/TSV/JSONL tables (their text column), .txt files (one text each), piped
    lines and literal strings."""
    texts, where = [], []
    for n, s in enumerate(inputs, 1):
        p = Path(s)
        if getattr(s, "piped", False):      # piped lines are texts, even when one looks like a file name
            texts.append(str(s))
            where.append(s.origin)
        elif p.is_file() and p.suffix.lower() in TEXT_EXTS:
            rows = read_rows(p, "utf-8")
            col = pick_column([c for c in rows[0] if not c.startswith("__")], "", TEXT_COLS, "text", p) if rows else ""
            for r in rows:
                texts.append(str(r.get(col) or ""))
                where.append(f"{p.name}:{r['__line__']}")
        elif p.is_file():
            texts.append(p.read_text(errors="replace"))
            where.append(str(p))
        else:
            texts.append(str(s))
            where.append(getattr(s, "origin", f"arg {n}"))
    return texts, where


class TextModality:
    name = "text"
    default_backbone = "minilm_l6"
    folder_exts = {".txt"}
    file_exts = TEXT_EXTS
    cpu_bf16_training = True    # MiniLM-size encoder, training step on an AMX CPU in bf16: 1.15-1.3x with
                                # variable-length batches (1.6x at one fixed length; benchmarks/README.md)
    unit_gib = 3.0
    batchnorm_shift = False
    min_near_dup_size = 0
    near_dup_kind = "similar"   # embedding neighbours are paraphrases or one subject: reported, never conflicts
    # small encoders fine-tune best whole: all layers and embeddings at once (from the probe's head: LP-FT),
    # layer-wise LR decay 0.8 (the usual range for BERT-family models), 4 epochs max (3 is the standard recipe;
    # early stopping watches the rest). Gradual unfreezing reached only 4 of 7 groups in 4 epochs: 0.940 on TREC.
    # scratch: a randomly initialised 22M-parameter transformer diverged to one class at 3e-3 (TREC 13%)
    defaults = {"epochs": 4, "lr_body": 8e-5, "lr_decay": 0.8, "unfreeze_groups": 99, "unfreeze_every": -1,
                "scratch_lr": 1e-4}

    def load(self, cfg, spec, size):
        return load_text(cfg.data, cfg.text_col, cfg.label_col, cfg.encoding, cfg.test_file, cfg.group_col)

    def prepare(self, ds, spec, size, cfg) -> ModalityState:
        ids, stats = tokenize(spec.path, ds.items, size)
        return ModalityState(ids, stats)

    def dataset(self, ctx, indices, train: bool = False):
        return TokenBatches(ctx.state.inputs, ctx.ds.labels, indices, ctx.state.stats.get("pad_id", 0))

    def progressive_sizes(self, ctx, budget: int) -> None:
        return None                 # token sequences keep their length: no input size to grow

    def batch_fn(self, ctx):
        return lambda x: x

    def embed(self, ctx, model, progress=None):
        return embed_texts(model, ctx.state.inputs, progress=progress)

    def feature_dtype(self, ctx) -> str:
        return "float32"

    def feature_variant(self, ctx) -> str:
        return "float32"

    def classic_inputs(self, ctx, indices=None):
        return ctx.ds.items if indices is None else [ctx.ds.items[i] for i in indices]

    def raw_features(self, ctx, indices):
        """What the classic baseline starts from, for the assessment's k-NN: TF-IDF word 1-2-grams of the texts (the
        character n-grams of the classic arm cost more than the feature pass itself; no labels used)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform([ctx.ds.items[i] for i in indices])

    def classic_pipeline(self, C: float, seed: int):
        """TF-IDF word 1-2-grams + character 2-5-grams, logistic regression: the baseline practitioners use."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union
        feats = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                           TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        return make_pipeline(feats, LogisticRegression(C=C, max_iter=3000, random_state=seed))

    def shift_evidence(self, ctx, indices) -> dict:
        return {"tokenizer": text_shift(ctx.state.stats)}

    def evidence_lines(self, shift: dict) -> list[str]:
        tok = shift.get("tokenizer", {})
        if not tok:
            return []
        return [f"tokenizer: {tok.get('pieces_per_word', 0):.2f} pieces per word, "
                f"{100 * tok.get('unknown_token_rate', 0):.2f}% unknown tokens, "
                f"{100 * tok.get('truncated_share', 0):.1f}% of texts truncated"]

    def finetune_advice(self, early_shift: bool) -> str:
        return "all layers with layer-wise LR decay; the frozen features alone leave accuracy on the table"

    def hidden_gain(self):
        """(evidence, advice) when frozen features tie the raw-input baseline: for text encoders the gain comes
        from fine-tuning, which frozen features do not show."""
        return ("frozen text features tie TF-IDF here, but frozen features do not show what fine-tuning adds: on "
                "TREC fine-tuning beat TF-IDF by 7-16 points where frozen features tied",
                "all layers with layer-wise LR decay: for text encoders the gain comes from fine-tuning")

    def input_description(self, size: int) -> str:
        return f"at most {size} tokens per text"

    def read_unlabelled(self, inputs: list[str], spec, size: int) -> LabeledSet:
        """Texts without labels (for `headstart suggest`): tables, .txt files or folders of them; empty texts are
        listed, not kept."""
        ds = LabeledSet(root=Path("."), classes=[])
        files = [str(f) for s in inputs for f in (sorted(Path(s).rglob("*.txt")) if Path(s).is_dir() else [s])]
        for t, where in zip(*read_texts(files)):
            if t.strip():
                add_unlabelled(ds, where, t.strip(), hashlib.sha1(t.strip().encode()).hexdigest())
            else:
                ds.skipped.append({"path": where, "reason": "empty text"})
        return ds

    def predict(self, model_dir, model, spec, classes, inputs, top, batch_size, runtime) -> list[dict]:
        """Inputs: CSV/TSV/JSONL tables (their text column), .txt files (one text each), or literal strings."""
        texts, where = read_texts(inputs)
        ids, stats = tokenize(spec.path, texts, spec.input_size)
        ds = TokenBatches(ids, [0] * len(ids), range(len(ids)), stats["pad_id"])
        rows = []
        with torch.inference_mode():
            for start in range(0, len(ids), 64):
                x, _ = ds.collate([ds[i] for i in range(start, min(len(ids), start + 64))])
                for k, p in enumerate(model(x).softmax(1)):
                    rows.append({"path": where[start + k], "text": texts[start + k][:200], **top_k(p, classes, top)})
        return rows
