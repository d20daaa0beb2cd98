"""Tables as users hold them: CSV, TSV, JSON Lines / JSON arrays, Parquet; rows keep their line for error lists.

    rows = read_rows(Path("data.csv"), "utf-8")     # [{column: value, "__line__": n}] (+ "__error__" when broken)
    col = pick_column(cols, "", LABEL_COLS, "label", path)
    root, classes, entries, skipped = media_table(Path("files.csv"), {".jpg"}, "images")   # paths + labels

A table whose column holds paths of image or audio files is a media table: the files are loaded, never the paths
trained on as text (a path names its class folder: TF-IDF on it scores 100% and means nothing).
"""
from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from pathlib import Path

from headstart.core.dataset import LabeledSet, display_name, empty_folders, not_regular, scan_folder
from headstart.core.errors import UserError

TABLE_EXTS = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
csv.field_size_limit(2**31 - 1)     # a field may be as long as the text it holds (the default stops at 128 KiB)
MISSING = {"", "nan", "null", "none", "n/a"}     # label cells that spreadsheets and pandas write for "no value"
LABEL_COLS = ("label", "labels", "class", "category", "target", "intent", "y")
PATH_COLS = ("file_name", "filename", "file", "path", "filepath", "image", "audio", "img")
SPLIT_COLS = ("split", "subset", "fold")
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
          "test": "test", "testing": "test"}
METADATA = ("metadata.csv", "metadata.jsonl", "metadata.parquet")    # Hugging Face imagefolder / audiofolder


def label_text(y, where: str, notes: dict | None = None) -> str:
    """A label cell as its class name: the same integer spelled "1" or "1.0" (pandas writes 1.0 for an int column
    with gaps) is one class, and NFC/NFD spellings of one name are one name; `notes` collects what was merged, so the
    run can say so. A list or object value (multi-label JSON) is refused: headstart trains one label per item."""
    if isinstance(y, (list, dict)):
        raise UserError(f"{where}: the label {json.dumps(y, ensure_ascii=False)[:60]} is a "
                        f"{'list' if isinstance(y, list) else 'JSON object'}; headstart trains one label per item "
                        "(multi-label is not supported): give each row one label")
    s = unicodedata.normalize("NFC", str(y).strip())
    if re.fullmatch(r"[+-]?\d+\.0+", s):
        merged = str(int(float(s)))
        if notes is not None:
            notes[s] = merged
        return merged
    return s


def decode_text(raw: bytes, path: Path, encoding: str) -> str:
    """The file's text; a UTF-16 byte-order mark (Excel's "Unicode text" export) is honoured whatever the encoding
    says, a UTF-8 one dropped."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    try:
        return raw.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line} is not valid {encoding} (byte {raw[e.start]:#x}); pass the file's "
                        "encoding, e.g. --encoding latin-1") from None


def json_rows(text: str) -> list[dict]:
    """A JSON array of objects (one row per element) or JSON Lines (one object per line); an element or line that
    is not an object is kept as an error row, so it is listed, not silently dropped."""
    def row(obj, where: str, i: int) -> dict:
        if isinstance(obj, dict):
            return {**obj, "__line__": i}
        return {"__error__": f"{where}: a JSON {type(obj).__name__}, not an object with text and label fields",
                "__line__": i}
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None                     # not one array: read it as JSON Lines below
        if isinstance(data, list):
            return [row(obj, f"element {i}", i) for i, obj in enumerate(data, 1)]
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(row(json.loads(line), f"line {i}", i))
            except json.JSONDecodeError as e:
                rows.append({"__error__": f"line {i}: not JSON ({e.msg})", "__line__": i})
    return rows


def read_rows(path: Path, encoding: str) -> list[dict]:
    odd = not_regular(path)
    if odd:
        raise UserError(f"{path}: {odd}; pass a regular CSV/TSV/JSON/Parquet file")
    if path.suffix.lower() == ".parquet":
        return parquet_rows(path)
    text = decode_text(path.read_bytes(), path, encoding)
    if path.suffix.lower() in (".jsonl", ".json"):
        return json_rows(text)
    delim = header_delimiter(text, "\t" if path.suffix.lower() == ".tsv" else ",")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delim)
    rows, last = [], 1
    for r in reader:
        row = {k: v for k, v in r.items() if k is not None}
        if None in r:
            row["__error__"] = f"line {reader.line_num}: {len(r[None])} more field(s) than the header"
        swallowed = max((sum(delim in ln for ln in str(v).split("\n")[1:]) for v in row.values() if v), default=0)
        if swallowed >= 2:      # a quoted text may span lines; one that holds whole rows is an unclosed quote
            row["__error__"] = (f"lines {last + 1}-{reader.line_num}: a quote opened on line {last + 1} is never "
                                f"closed, so {reader.line_num - last} lines were read as one field; fix the quote")
        row["__line__"] = reader.line_num
        last = reader.line_num
        rows.append(row)
    if reader.fieldnames is None:
        raise UserError(f"{path} is empty; it needs a header row with a text and a label column")
    dup = next((c for c in reader.fieldnames if reader.fieldnames.count(c) > 1), None)
    if dup is not None:
        raise UserError(f"{path}: line 1 names the column {dup!r} twice (which one holds the data?); rename one")
    return rows


def header_delimiter(text: str, default: str) -> str:
    """The delimiter the header row uses: European spreadsheets write CSV with ';', some tools '|' or tabs. The one
    that splits the header most wins; none: the extension's default."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: (counts[d], d == default))
    return best if counts[best] else default


def pick_column(cols: list[str], wanted: str, names: tuple[str, ...], what: str, path: Path) -> str:
    if wanted:
        if wanted not in cols:
            raise UserError(f"{path} has no column {wanted!r}; columns found: {cols}")
        return wanted
    hits = [c for c in cols if c.lower() in names]
    if len(hits) != 1:
        raise UserError(f"cannot tell which column of {path} holds the {what} ({'none' if not hits else hits} "
                        f"match); columns found: {cols}; pass --{what}-col NAME")
    return hits[0]


def parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path} is Parquet, which needs pyarrow: pip install 'headstart[tables]' (or pip install "
                        "pyarrow), or save the table as CSV") from None
    try:
        table = pq.read_table(path)
    except Exception as e:        # a truncated or foreign file: one line, not a traceback
        raise UserError(f"{path} could not be read as Parquet ({type(e).__name__}: {str(e)[:120]})") from None
    return [{**{k: ("" if v is None else str(v)) for k, v in r.items()}, "__line__": i}
            for i, r in enumerate(table.to_pylist(), 2)]


def check_column(cols: list[str], name: str, what: str, path: Path) -> None:
    if name and name not in cols:
        raise UserError(f"{path} has no column {name!r} for the --{what}-col; columns found: {cols}")


def path_column(rows: list[dict], exts: set[str]) -> str | None:
    """The column whose non-empty values are file names with one of `exts` (at least 80% of them), or None."""
    cols = [c for c in next((r for r in rows if "__error__" not in r), {}) if not c.startswith("__")]
    best, share = None, 0.0
    for c in cols:
        vals = [str(r.get(c) or "").strip() for r in rows if "__error__" not in r]
        vals = [v for v in vals if v]
        hit = sum(Path(v).suffix.lower() in exts for v in vals) / len(vals) if vals else 0.0
        if hit >= 0.8 and (hit > share or (hit == share and c.lower() in PATH_COLS)):
            best, share = c, hit
    return best


def metadata_file(folder: Path) -> Path | None:
    """A Hugging Face imagefolder/audiofolder metadata table at the top of `folder`, if there is one."""
    return next((folder / m for m in METADATA if (folder / m).is_file()), None)


def split_metadata(folder: Path, exts: set[str]) -> list[dict] | None:
    """The rows of a Hugging Face imagefolder/audiofolder whose metadata lies in its split folders
    (train/metadata.csv beside train's files, test/metadata.csv, ...), as one table relative to `folder` with a
    `split` column; None when no split folder holds a metadata table with a file column."""
    rows = []
    for sub in sorted(d for d in folder.iterdir() if d.is_dir() and d.name.lower() in SPLITS):
        meta = metadata_file(sub)
        part = read_rows(meta, "utf-8") if meta else []
        pcol = path_column(part, exts) if part else None
        if pcol is None:
            continue
        for r in part:
            r = dict(r)
            r["__line__"] = f"{r.get('__line__')} ({sub.name}/{meta.name})"
            if "__error__" not in r:
                name = str(r.get(pcol) or "").strip()
                r[pcol] = name if not name or Path(name).is_absolute() else f"{sub.name}/{name}"
                r["split"] = sub.name
            rows.append(r)
    return rows or None


def group_of(row: dict, col: str) -> str:
    """A row's --group-col value; a row without one is a group of its own."""
    return str(row.get(col) or "").strip() or f"(row {row['__line__']})"


def media_table(table: Path, exts: set[str], what: str, label_col: str = "", path_col: str = "",
                group_col: str = "", rows: list[dict] | None = None):
    """(root, classes, [(file, class name, source split)], skipped, {file: group}) from a table of file paths and
    labels (groups only with group_col).
    Paths are relative to the table's folder (or absolute); an optional split column (train/val/test) gives the
    user's split. Rows with a missing file or label are skipped and listed with their line. rows: the table, when
    the caller has read it already."""
    rows = read_rows(table, "utf-8") if rows is None else rows
    root = table.parent
    pcol = path_col or path_column(rows, exts)
    if pcol is None:
        raise UserError(f"{table}: no column holds {what} file names ({', '.join(sorted(exts))}); give one column of "
                        "file paths (relative to the table, or absolute) and one of labels, or pass --modality text "
                        "if the table holds texts")
    cols = [c for c in next(r for r in rows if "__error__" not in r) if not c.startswith("__")]
    lcol = pick_column([c for c in cols if c != pcol], label_col, LABEL_COLS, "label", table)
    scol = next((c for c in cols if c.lower() in SPLIT_COLS), None)
    check_column(cols, group_col, "group", table)
    entries, skipped, seen, groups = [], [], set(), {}
    for r in rows:
        where = f"{table.name}:{r['__line__']}"
        if "__error__" in r:
            skipped.append({"path": where, "reason": r["__error__"]})
            continue
        name, y = str(r.get(pcol) or "").strip(), label_text(r.get(lcol) or "", where)
        f = Path(name) if Path(name).is_absolute() else root / name
        source = SPLITS.get(str(r.get(scol) or "").strip().lower(), "") if scol else ""
        if scol and str(r.get(scol) or "").strip() and not source:
            skipped.append({"path": where, "reason": f"split {r.get(scol)!r} is none of train, val, test"})
        elif not name:
            skipped.append({"path": where, "reason": f"empty {pcol}"})
        elif y.lower() in MISSING:
            skipped.append({"path": where, "reason": "missing label"})
        elif not f.exists():
            skipped.append({"path": where, "reason": f"file not found: {display_name(name)}"})
        elif f.resolve() in seen:
            skipped.append({"path": where, "reason": f"{display_name(name)} listed twice (kept once)"})
        else:
            seen.add(f.resolve())
            entries.append((f, display_name(y), source))
            if group_col:
                groups[f] = group_of(r, group_col)
    if not entries:
        first = f" (first: {skipped[0]['path']}: {skipped[0]['reason']})" if skipped else ""
        raise UserError(f"no usable {what} listed in {table}{first}")
    if any(s for _, _, s in entries) and not any(s == "train" for _, _, s in entries):
        raise UserError(f"{table}: the {scol} column names no train rows; mark the training rows 'train'")
    classes = sorted({c for _, c, s in entries if s in ("", "train")})
    if len(classes) < 2:
        raise UserError(f"found {len(classes)} label(s) in {table}; classification needs at least 2")
    unknown = sorted({c for _, c, s in entries if c not in classes})
    if unknown:
        raise UserError(f"label(s) {unknown[:5]} in {table} appear only in val/test rows; add training rows for them")
    return root, classes, entries, skipped, groups


def scan_media(data: str | Path, exts: set[str], what: str, label_col: str = "", group_col: str = ""):
    """(root, classes, entries, skipped, groups) from a folder of class subfolders (or train/ val/ test/), a table of
    file paths and labels, or a Hugging Face imagefolder/audiofolder (files + metadata.csv/jsonl with a label
    column). groups ({file: id}) come from a table's group_col; a folder has none."""
    p = Path(data)
    if p.is_file() and p.suffix.lower() in TABLE_EXTS:
        return media_table(p, exts, what, label_col, group_col=group_col)
    meta = metadata_file(p) if p.is_dir() else None
    if meta is not None:
        rows = read_rows(meta, "utf-8")
        cols = {c for r in rows[:1] for c in r if not c.startswith("__")}
        if label_col in cols or any(c.lower() in LABEL_COLS for c in cols):   # else: labels are the folder names
            return media_table(meta, exts, what, label_col, group_col=group_col, rows=rows)
    split_rows = split_metadata(p, exts) if p.is_dir() and meta is None else None
    if split_rows:                      # train/metadata.csv, test/metadata.csv, ...: one table with a split column
        return media_table(p / "metadata.csv", exts, what, label_col, group_col=group_col, rows=split_rows)
    if group_col:
        raise UserError(f"--group-col {group_col} needs a table (CSV/TSV/JSONL/Parquet, or a metadata.csv beside the "
                        f"files) with that column; {data} is a folder of class subfolders")
    classes, entries = scan_folder(p, exts, what)
    return p, classes, entries, empty_folders(p, entries), {}


def labelled_media(scan, items, good: list[int], bad: dict[int, str], what: str):
    """The LabeledSet of scan_media's answer `scan` once its files were read: `items` (with .hashes) of the readable
    ones at positions `good`, {position: why} for the others (listed in skipped); none readable is refused."""
    root, classes, entries, skipped, groups = scan
    index = {c: i for i, c in enumerate(classes)}
    ds = LabeledSet(root=Path(root), classes=classes, skipped=skipped)
    ds.skipped += [{"path": rel_name(entries[k][0], root), "reason": bad[k]} for k in sorted(bad)]
    for k, digest in zip(good, items.hashes):
        path, cname, source = entries[k]
        ds.add(rel_name(path, root), index[cname], source, digest, group=groups[path] if groups else None)
    if not ds.paths:
        raise UserError(f"none of the {len(entries)} {what} under {root} could be decoded "
                        f"(first error: {ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    ds.items = items
    return ds


def rel_name(path: Path, root: Path) -> str:
    """A file's name in lists and split.json: relative to the data root, or absolute when it lies outside."""
    try:
        return display_name(path.relative_to(root).as_posix())
    except ValueError:
        return display_name(path.as_posix())
