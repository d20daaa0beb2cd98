"""Image-folder loading: find files, decode each once (skipping and listing bad ones), keep them as uint8.

    ds = load_image_folder("path/to/images", short_side=256)
    ds.classes, ds.labels, ds.items[i] (uint8 CHW tensor), ds.skipped  # [{"path", "reason"}]

Layouts: folder-per-class (`root/<class>/*.jpg`), or user splits `root/{train,val,test}/<class>/*`.
Every image becomes 3-channel RGB: grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit
inputs are converted. A file that cannot be decoded is skipped, counted and listed, never silently dropped.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.errors import UserError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
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
    skipped: list[dict] = field(default_factory=list)   # {"path", "reason"}
    stats: dict = field(default_factory=dict)           # loader facts for the report (e.g. audio rates)

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


def _list_class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_files(class_dir: Path, exts: set[str]) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in exts]
    return out


def scan_image_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, str, str]]]:
    return scan_folder(root, IMAGE_EXTS, "images")


def scan_folder(root: str | Path, exts: set[str], what: str) -> tuple[list[str], list[tuple[Path, str, str]]]:
    """Return (classes, [(file, class name, source split)]); raise UserError on unusable layouts.
    Class folders holding no usable file are listed in `empty_folders(root, entries)` for the results."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"data path {str(root)!r} does not exist; pass a folder with one subfolder per class")
    if not root.is_dir():
        raise UserError(f"data path {str(root)!r} is a file; pass a folder with one subfolder per class")
    subdirs = {p.name.lower(): p for p in _list_class_dirs(root)}
    entries: list[tuple[Path, str, str]] = []
    if "train" in subdirs:
        for name in SPLIT_NAMES:
            if name in subdirs:
                for cdir in _list_class_dirs(subdirs[name]):
                    entries += [(f, cdir.name, name) for f in _list_files(cdir, exts)]
        extra = sorted(set(subdirs) - set(SPLIT_NAMES))
        if extra:
            raise UserError(f"{root} has train/ beside unexpected folders {extra}; with user splits only "
                            "train/, val/ and test/ are allowed (or drop train/ for folder-per-class)")
    else:
        for cdir in subdirs.values():
            entries += [(f, cdir.name, "") for f in _list_files(cdir, exts)]
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


def empty_folders(root: str | Path, entries) -> list[dict]:
    """Class folders without a single usable file: listed as skipped (a class never silently disappears)."""
    root = Path(root)
    used = {(s, c) for _, c, s in entries}
    tops = {p.name.lower(): p for p in _list_class_dirs(root)}
    roles = [(n, tops[n]) for n in SPLIT_NAMES if n in tops] if "train" in tops else [("", root)]
    return [{"path": (f"{folder.name}/" if role else "") + f"{cdir.name}/",
             "reason": "empty class folder (no usable files): " + ("class ignored" if role in ("", "train")
                                                                   else "nothing to evaluate")}
            for role, folder in roles for cdir in _list_class_dirs(folder) if (role, cdir.name) not in used]


def decode_image(data: bytes, short_side: int) -> np.ndarray:
    """Decode bytes to an RGB uint8 HWC array whose shorter side is `short_side` (raises on bad data)."""
    import io

    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(data))       # Pillow refuses > 2 x MAX_IMAGE_PIXELS here; we refuse > 1 x
    if img.size[0] * img.size[1] > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"image is {img.size[0]}x{img.size[1]} pixels, above the {Image.MAX_IMAGE_PIXELS:,}-pixel "
                         "limit (decompression-bomb guard); downscale it")
    if img.format == "JPEG":
        img.draft("RGB", (short_side, short_side))    # DCT-domain downscale: decode only what we need
    img.load()
    img = ImageOps.exif_transpose(img)
    img = to_rgb(img)
    w, h = img.size
    scale = short_side / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != img.size:
        img = img.resize(size, Image.BICUBIC, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


def to_rgb(img):
    """Any PIL mode -> RGB: 16-bit and float scaled to 8 bits, alpha composited on white, CMYK converted."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return img.convert("RGB")


def _load_one(path: Path, short_side: int):
    try:
        data = path.read_bytes()
        if not data:
            return None, "empty file (0 bytes)"
        arr = decode_image(data, short_side)
        return (arr, hashlib.sha1(data).hexdigest()), None
    except Exception as e:  # any decoder failure: the file is skipped and listed, the run goes on
        return None, f"{type(e).__name__}: {e}".strip()[:200]


def load_image_folder(root: str | Path, short_side: int = 256, workers: int = 0) -> LabeledSet:
    """Scan and decode every image once; bad files end up in `skipped` with the reason."""
    import torch
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 200_000_000  # keep Pillow's decompression-bomb guard, at ~14k x 14k
    root = Path(root)
    classes, entries = scan_image_folder(root)
    index = {c: i for i, c in enumerate(classes)}
    ds = LabeledSet(root=root, classes=classes, skipped=empty_folders(root, entries))
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        results = list(pool.map(lambda e: _load_one(e[0], short_side), entries))
    for (path, cname, source), (ok, reason) in zip(entries, results):
        rel = path.relative_to(root).as_posix()
        if ok is None:
            ds.skipped.append({"path": rel, "reason": reason})
            continue
        arr, digest = ok
        ds.paths.append(rel)
        ds.labels.append(index[cname])
        ds.sources.append(source)
        ds.items.append(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))))
        ds.hashes.append(digest)
    if not ds.paths:
        raise UserError(f"none of the {len(entries)} image files under {root} could be decoded "
                        f"(first error: {ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    return ds
