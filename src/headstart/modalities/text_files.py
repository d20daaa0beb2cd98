"""Text files: labelled tables (CSV/TSV/JSONL, columns auto-detected) or folders of class subfolders with .txt
files, every unusable row skipped and listed with its line; unlabelled texts for prediction and suggestions.

    ds = load_text("questions.csv")                      # LabeledSet of strings
    texts, where = read_texts(["new.csv", "a literal question?"])
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from headstart.core.dataset import LabeledSet, display_name, not_regular
from headstart.core.errors import UserError
from headstart.core.tables import LABEL_COLS, MISSING, TABLE_EXTS, check_column, decode_text, group_of, label_text, \
    pick_column, read_rows

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
    records, group, merged = [], {}, {}
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
                        text = decode_text(f.read_bytes(), f, encoding).strip()
                        records.append((where, text, display_name(cdir.name), role))
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
                records.append((where, str(t).strip(), label_text(y, where, merged), role))
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
        ds.add(where, index[y], role, digest(t), item=t)
        ds.match_keys.append(normalised(t))
    ds.groups = [group[w] for w in ds.paths] if group_col else []
    if merged:
        ds.stats["merged_labels"] = merged          # the run log says which spellings became one class
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


def digest(text: str) -> str:
    """A text's content hash: labelled and unlabelled texts must hash alike (suggest skips known texts by it)."""
    return hashlib.sha1(text.encode()).hexdigest()


def normalised(text: str) -> str:
    """The text as a duplicate check compares it: case, punctuation and spacing ignored ("What is X ?" = "what is
    x?"). A text with no letter or digit (emoji, emoticons) keeps its symbols, spacing folded: stripped to "", every
    such text was one "duplicate" of every other, and --dedupe removed them all."""
    key = " ".join("".join(ch if ch.isalnum() else " " for ch in text.casefold()).split())
    return key or " ".join(text.casefold().split())


LITERAL = "text:"          # `headstart predict MODEL text:notes.csv` classifies the string "notes.csv" itself


def looks_like_a_path(s: str) -> bool:
    """One word with a folder separator or a data file's extension: meant as a file, never a question."""
    return len(s.split()) == 1 and ("/" in s or "\\" in s or Path(s).suffix.lower() in TEXT_EXTS | {".txt"})


def read_texts(inputs: list[str], text_col: str = "", encoding: str = "utf-8") -> tuple[list[str], list[str]]:
    """(texts, where each came from): CSV/TSV/JSONL tables (their text column), .txt files (one text each), folders
    of those, piped lines and literal strings. An argument that looks like a file name but does not exist is refused
    (a mistyped questons.csv was classified as a question); `text:...` forces a literal text."""
    texts, where = [], []
    for n, s in enumerate(_expand_folders(inputs), 1):
        p = Path(s)
        if getattr(s, "piped", False):      # piped lines are texts, even when one looks like a file name
            texts.append(str(s))
            where.append(s.origin)
        elif str(s).startswith(LITERAL):
            texts.append(str(s)[len(LITERAL):])
            where.append(getattr(s, "origin", f"arg {n}"))
        elif p.is_file() and p.suffix.lower() in TEXT_EXTS:
            rows = read_rows(p, encoding)
            col = pick_column([c for c in rows[0] if not c.startswith("__")], text_col, TEXT_COLS, "text", p) \
                if rows else ""
            for r in rows:
                texts.append(str(r.get(col) or ""))
                where.append(f"{p.name}:{r['__line__']}")
        elif p.is_file():
            texts.append(p.read_text(encoding=encoding, errors="replace"))
            where.append(str(p))
        elif looks_like_a_path(str(s)):
            raise UserError(f"input {str(s)!r} looks like a file name but does not exist; check the path, or pass "
                            f"{LITERAL}{s} to classify that string itself")
        else:
            texts.append(str(s))
            where.append(getattr(s, "origin", f"arg {n}"))
    return texts, where


def _expand_folders(inputs: list[str]) -> list[str]:
    """A folder is never a text: it stands for the tables and .txt files below it (none: a user error)."""
    out = []
    for s in inputs:
        p = Path(s)
        if getattr(s, "piped", False) or not p.is_dir():
            out.append(s)
            continue
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_EXTS | {".txt"})
        if not files:
            raise UserError(f"input {s!r} is a folder with no tables or .txt files; pass text files, tables or "
                            "literal texts")
        out += [str(f) for f in files]
    return out
