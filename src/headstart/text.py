"""Text classification: table/folder loading, a BERT-family encoder behind timm's model contract, token batches.

    ds = load_text("questions.csv")                      # CSV/TSV/JSONL (columns auto-detected) or folder of .txt
    model = TextClassifier.from_folder(path, num_classes=6)   # mean pooling, as sentence-transformers defines
    model.forward_features(batch) / forward_head(x, pre_logits=True) / get_classifier() / group_matcher()

The model exposes the same contract as a timm model, so strategies, the training loop and block groups
(embeddings, layer 0..L-1, head) work unchanged.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from headstart.data import LabeledSet
from headstart.device import to_device, to_numpy
from headstart.errors import UserError

TEXT_EXTS = {".csv", ".tsv", ".jsonl", ".json"}
TEXT_COLS = ("text", "sentence", "question", "review", "content", "body", "utterance", "comment")
LABEL_COLS = ("label", "labels", "class", "category", "target", "intent", "y")


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line} is not valid {encoding} (byte {raw[e.start]:#x}); pass the file's "
                        "encoding, e.g. --encoding latin-1") from None


def _rows(path: Path, encoding: str) -> list[dict]:
    text = _decode(path.read_bytes(), path, encoding)
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append({**json.loads(line), "__line__": i})
                except json.JSONDecodeError as e:
                    rows.append({"__error__": f"line {i}: not JSON ({e.msg})", "__line__": i})
        return rows
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delim)
    rows = []
    for r in reader:
        row = {k: v for k, v in r.items() if k is not None}
        if None in r:
            row["__error__"] = f"line {reader.line_num}: {len(r[None])} more field(s) than the header"
        row["__line__"] = reader.line_num
        rows.append(row)
    if reader.fieldnames is None:
        raise UserError(f"{path} is empty; it needs a header row with a text and a label column")
    return rows


def _pick(cols: list[str], wanted: str, names: tuple[str, ...], what: str, path: Path) -> str:
    if wanted:
        if wanted not in cols:
            raise UserError(f"{path} has no column {wanted!r}; columns found: {cols}")
        return wanted
    hits = [c for c in cols if c.lower() in names]
    if len(hits) != 1:
        flag = "--text-col" if what == "text" else "--label-col"
        raise UserError(f"cannot tell which column of {path} holds the {what} ({'none' if not hits else hits} "
                        f"match); columns found: {cols}; pass {flag} NAME")
    return hits[0]


def load_text(path: str | Path, text_col: str = "", label_col: str = "", encoding: str = "utf-8",
              test_file: str = "") -> LabeledSet:
    """Rows with empty text, missing label or malformed lines are skipped and listed (with their line)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data path {str(path)!r} does not exist; pass a CSV/TSV/JSONL file or a folder of "
                        "class subfolders with .txt files")
    sources = [(path, "")] + ([(Path(test_file), "test")] if test_file else [])
    if test_file and sources[0][1] == "":
        sources[0] = (path, "train")
    ds = LabeledSet(root=path, classes=[])
    records = []
    for src, role in sources:
        if src.is_dir():
            for cdir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for f in sorted(cdir.glob("*.txt")):
                    try:
                        records.append((f"{cdir.name}/{f.name}", _decode(f.read_bytes(), f, encoding).strip(),
                                        cdir.name, role))
                    except UserError as e:
                        ds.skipped.append({"path": f"{cdir.name}/{f.name}", "reason": str(e)})
            continue
        rows = _rows(src, encoding)
        cols = [c for c in (rows[0] if rows else {}) if not c.startswith("__")]
        if not rows:
            raise UserError(f"{src} has a header but no rows")
        tcol = _pick(cols, text_col, TEXT_COLS, "text", src)
        lcol = _pick(cols, label_col, LABEL_COLS, "label", src)
        for r in rows:
            where = f"{src.name}:{r['__line__']}"
            t, y = (r.get(tcol) or ""), r.get(lcol)
            if "__error__" in r:
                ds.skipped.append({"path": where, "reason": r["__error__"]})
            elif not str(t).strip():
                ds.skipped.append({"path": where, "reason": "empty text"})
            elif y is None or str(y).strip() == "":
                ds.skipped.append({"path": where, "reason": "missing label"})
            else:
                records.append((where, str(t).strip(), str(y).strip(), role))
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
    return ds


class TextClassifier(nn.Module):
    """BERT-family encoder + mean pooling over real tokens + linear head, with timm's method names."""

    def __init__(self, encoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.num_features = encoder.config.hidden_size
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @classmethod
    def from_folder(cls, folder: str | Path, num_classes: int, pretrained: bool = True) -> "TextClassifier":
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()        # the unused pooler's "unexpected keys" notice is expected
        hf_logging.disable_progress_bar()
        if pretrained:
            # float32 master weights whatever the checkpoint stores (transformers 5 would keep an fp16 file's dtype)
            enc = AutoModel.from_pretrained(str(folder), add_pooling_layer=False, dtype=torch.float32)
        else:
            torch.manual_seed(torch.initial_seed())
            enc = AutoModel.from_config(AutoConfig.from_pretrained(str(folder)), add_pooling_layer=False)
        return cls(enc, num_classes)

    def forward_features(self, batch: dict) -> torch.Tensor:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.classifier(x)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.forward_head(self.forward_features(batch))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def group_matcher(self, coarse: bool = True) -> dict:
        return {"stem": r"^encoder\.embeddings", "blocks": [(r"^encoder\.encoder\.layer\.(\d+)", None)]}


class TokenBatches(torch.utils.data.Dataset):
    """Texts -> token ids (truncated to max_length); `collate` pads a batch dynamically."""

    def __init__(self, token_ids: list[list[int]], labels, indices, pad_id: int = 0):
        self.ids, self.labels, self.indices, self.pad_id = token_ids, labels, list(indices), pad_id

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return self.ids[j], self.labels[j]

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
    tok = AutoTokenizer.from_pretrained(str(folder))
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
