"""The labelled set every modality loads into, and the class-folder scan the folder modalities share.

    classes, entries = scan_folder(root, {".jpg", ".png"}, "images")   # [(file, class, "train"|"val"|"test"|"")]
    ds = LabeledSet(root, classes)      # .paths .labels .sources .items .hashes .skipped [{"path", "reason"}]

Layouts: folder-per-class (`root/<class>/*`), or user splits `root/{train,val,test}/<class>/*`.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


from headstart.core.errors import UserError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class LabeledSet:
    """Any modality: `items` are decoded images (uint8 CHW tensors), texts, or audio arrays."""
    root: Path
    classes: list[str]
    paths: list[str] = field(default_factory=list)      # relative to root
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)    # "train"/"val"/"test" subfolder, or "" (no user split)
    items: list = field(default_factory=list)           # images: uint8 CHW tensors (shorter side = short_side)
    hashes: list[str] = field(default_factory=list)     # sha1 of file bytes
    match_keys: list[str] = field(default_factory=list)  # optional looser identity for the duplicate search (text:
                                                        # casefolded, punctuation and spacing removed); [] -> none
    skipped: list[dict] = field(default_factory=list)   # {"path", "reason"}
    groups: list[str] = field(default_factory=list)     # --group-col: one group id per item (patient, speaker); []
    stats: dict = field(default_factory=dict)           # loader facts for the report (e.g. audio rates)

    def add(self, path: str, label: int, source: str, digest: str, item=None, group: str | None = None) -> None:
        """One readable item: its path, class index, split folder ("" if none), content hash, the item itself (None
        when the items are held elsewhere, e.g. modalities/image_files.ImageFiles) and its --group-col id."""
        self.paths.append(path)
        self.labels.append(label)
        self.sources.append(source)
        self.hashes.append(digest)
        if item is not None:
            self.items.append(item)
        if group is not None:
            self.groups.append(group)

    @property
    def layout(self) -> str:
        return "user-split" if any(self.sources) else "single pool (split carved)"

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for p, y, d in zip(self.paths, self.labels, self.hashes):
            h.update(f"{p}\0{y}\0{d}\n".encode())
        return h.hexdigest()


def not_regular(path: Path) -> str | None:
    """Why a path cannot be read as a data file without risk (a FIFO would block the run forever, a device never
    ends), or None for a regular file. Links are followed once; a dangling one is named as such."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "dangling link (its target does not exist)" if path.is_symlink() else "file vanished while reading"
    except OSError as e:
        return f"cannot stat ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else
            "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "directory" if stat.S_ISDIR(mode) else
            "special file")
    return f"not a regular file ({kind}): skipped without reading"


def display_name(name: str) -> str:
    """A path as text that any writer can encode: bytes that are not UTF-8 (an old Windows zip) are shown
    escaped (\\xe9), never passed on as lone surrogates that break JSON, Markdown and terminal output."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _list_class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_files(class_dir: Path, exts: set[str], seen: set[str] | None = None) -> list[Path]:
    """Files with one of `exts` below class_dir, links followed, but every real folder walked once and every real
    file counted once (a link loop, or a link back into the tree, would otherwise repeat files: training images
    copied into test). `seen` is shared across the class folders of one scan."""
    seen = set() if seen is None else seen
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith(".") or Path(f).suffix.lower() not in exts:
                continue
            path = Path(dirpath) / f
            key = "file:" + os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                out.append(path)
    return out


def scan_folder(root: str | Path, exts: set[str], what: str) -> tuple[list[str], list[tuple[Path, str, str]]]:
    """Return (classes, [(file, class name, source split)]); raise UserError on unusable layouts.
    Class folders holding no usable file are listed in `empty_folders(root, entries)` for the results."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"data path {str(root)!r} does not exist; pass a folder with one subfolder per class")
    if not root.is_dir():
        raise UserError(f"data path {str(root)!r} is a file; pass a folder with one subfolder per class")
    subdirs = _by_casefold(_list_class_dirs(root))      # train/ and Train/ (a merged export): both are train
    entries: list[tuple[Path, str, str]] = []
    seen: set[str] = set()
    name_of: dict[str, str] = {}                         # one class for Cats/ and cats/: its first spelling

    def cls(cdir: Path) -> str:
        return name_of.setdefault(display_name(cdir.name).casefold(), display_name(cdir.name))
    if "train" in subdirs:
        for name in SPLIT_NAMES:
            for folder in subdirs.get(name, []):
                for cdir in _list_class_dirs(folder):
                    entries += [(f, cls(cdir), name) for f in _list_files(cdir, exts, seen)]
        extra = sorted(set(subdirs) - set(SPLIT_NAMES))
        if extra:
            raise UserError(f"{root} has train/ beside unexpected folders {extra}; with user splits only "
                            "train/, val/ and test/ are allowed (or drop train/ for folder-per-class)")
    else:
        for cdir in (d for ds in subdirs.values() for d in ds):
            entries += [(f, cls(cdir), "") for f in _list_files(cdir, exts, seen)]
    if not entries:
        raise UserError(f"no {what} found under {root} (looked for {', '.join(sorted(exts))} files "
                        "inside class subfolders: root/<class>/<file>)")
    classes = sorted({c for _, c, s in entries if s in ("", "train")})
    if len(classes) < 2:
        raise UserError(f"found {len(classes)} class ({', '.join(classes)}) under {root}; "
                        f"classification needs at least 2 class subfolders with {what}")
    unknown = sorted({c for _, c, s in entries if c not in classes})
    if unknown:
        raise UserError(f"classes {unknown} appear in val/ or test/ but have no training images under {root}/train; "
                        "add training images for them or remove them")
    return classes, entries


def _by_casefold(dirs: list[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for d in dirs:
        out.setdefault(d.name.lower(), []).append(d)
    return out


def empty_folders(root: str | Path, entries) -> list[dict]:
    """Class folders without a single usable file, and hidden folders (a name starting with '.') that were not
    read: listed as skipped (a class or a folder of data never silently disappears)."""
    root = Path(root)
    used = {(s, c.casefold()) for _, c, s in entries}
    tops = _by_casefold(_list_class_dirs(root))
    roles = ([(n, f) for n in SPLIT_NAMES for f in tops.get(n, [])] if "train" in tops else [("", root)])
    return [{"path": display_name((f"{folder.name}/" if role else "") + f"{cdir.name}/"),
             "reason": "empty class folder (no usable files): " + ("class ignored" if role in ("", "train")
                                                                   else "nothing to evaluate")}
            for role, folder in roles for cdir in _list_class_dirs(folder)
            if (role, display_name(cdir.name).casefold()) not in used] + hidden_folders(root)


def hidden_folders(root: Path, depth: int = 3) -> list[dict]:
    """Folders whose name starts with '.' down to `depth` levels (root/, split/, class/): not read, but named."""
    out = []
    for dirpath, dirnames, _ in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in sorted(dirnames):
            if d.startswith("."):
                out.append({"path": display_name(f"{rel / d}/" if rel.parts else f"{d}/"),
                            "reason": "hidden folder (its name starts with '.'): not read; rename it to use its "
                                      "files"})
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if len(rel.parts) + 1 < depth else []
    return out
