"""Image files: find them (folder per class, train/val/test folders, a table of paths, an HF imagefolder), decode
each once to RGB at a given short side, and list every file that could not be read with the reason.

    ds = load_image_folder("path/to/images", short_side=256)     # LabeledSet: uint8 CHW tensors, skipped files

Every image becomes 3-channel RGB: grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit inputs are
converted. A file that cannot be decoded is skipped, counted and listed, never silently dropped.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from headstart.core.dataset import LabeledSet, not_regular, scan_folder
from headstart.core.errors import UserError
from headstart.core.tables import rel_name, scan_media

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_ASPECT = 20          # longest side / shortest side of an image headstart decodes


def decode_image(data: bytes, short_side: int) -> np.ndarray:
    """Decode bytes to an RGB uint8 HWC array whose shorter side is `short_side` (raises on bad data)."""
    import io

    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(data))       # Pillow refuses > 2 x MAX_IMAGE_PIXELS here; we refuse > 1 x
    if img.size[0] * img.size[1] > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"image is {img.size[0]}x{img.size[1]} pixels, above the {Image.MAX_IMAGE_PIXELS:,}-pixel "
                         "limit (decompression-bomb guard); downscale it")
    if max(img.size) > MAX_ASPECT * min(img.size):   # resized to the short side, 1x4000 px would take GiBs
        raise ValueError(f"image is {img.size[0]}x{img.size[1]} pixels: aspect ratio above {MAX_ASPECT}:1, not a photo "
                         "headstart can crop from; crop or pad it")
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
        img = Image.fromarray(to_uint8(np.asarray(img, dtype=np.float64), img.mode == "F"))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return img.convert("RGB")


def to_uint8(a: np.ndarray, floating: bool) -> np.ndarray:
    """One channel of high-range pixels scaled by the range the image really uses: floats in [0, 1] (scientific
    exports) x 255, floats in [0, 255] as they are; integers by the smallest bit depth that holds their maximum (a
    12-bit sensor stored in 16-bit TIFFs fills 0-4095: divided by 65535 it was almost black); signed or other
    ranges stretched from their minimum to their maximum. Not-a-number pixels are refused."""
    if not np.isfinite(a).all():
        raise ValueError("image has not-a-number or infinite pixels; export it with finite values")
    lo, hi = float(a.min()), float(a.max())
    if floating and lo >= 0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = a
    elif lo >= 0 and not floating:
        depth = next(b for b in (10, 12, 14, 16, 32) if hi < 2 ** b)
        scaled = a / (2 ** depth - 1) * 255.0
    else:
        scaled = (a - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def chw_tensor(arr: np.ndarray):
    """A decoded HWC uint8 array as the CHW tensor every image item is kept as."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_image_file(path: Path, short_side: int):
    """((RGB uint8 HWC array, sha1 of the bytes), None), or (None, why it could not be read)."""
    odd = not_regular(path)
    if odd:
        return None, odd
    try:
        data = path.read_bytes()
        if not data:
            return None, "empty file (0 bytes)"
        arr = decode_image(data, short_side)
        return (arr, hashlib.sha1(data).hexdigest()), None
    except Exception as e:  # any decoder failure: the file is skipped and listed, the run goes on
        why = re.sub(r"image file <_io\.BytesIO object at 0x[0-9a-f]+>", "this file as an image", str(e))
        return None, f"{type(e).__name__}: {why}".strip()[:200]


def load_image_folder(root: str | Path, short_side: int = 256, workers: int = 0, label_col: str = "",
                      group_col: str = "") -> LabeledSet:
    """Scan and decode every image once; bad files end up in `skipped` with the reason. root: a folder of class
    subfolders (or train/ val/ test/), a table of image paths and labels, or an HF imagefolder (metadata.csv)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 200_000_000  # keep Pillow's decompression-bomb guard, at ~14k x 14k
    root, classes, entries, skipped, groups = scan_media(root, IMAGE_EXTS, "images", label_col, group_col)
    index = {c: i for i, c in enumerate(classes)}
    ds = LabeledSet(root=root, classes=classes, skipped=skipped)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        results = list(pool.map(lambda e: read_image_file(e[0], short_side), entries))
    for (path, cname, source), (ok, reason) in zip(entries, results):
        rel = rel_name(path, root)
        if ok is None:
            ds.skipped.append({"path": rel, "reason": reason})
            continue
        arr, digest = ok
        ds.paths.append(rel)
        ds.labels.append(index[cname])
        ds.sources.append(source)
        if groups:
            ds.groups.append(groups[path])
        ds.items.append(chw_tensor(arr))
        ds.hashes.append(digest)
    if not ds.paths:
        raise UserError(f"none of the {len(entries)} image files under {root} could be decoded "
                        f"(first error: {ds.skipped[0]['path']}: {ds.skipped[0]['reason']})")
    return ds



def scan_image_folder(root: str | Path):
    return scan_folder(root, IMAGE_EXTS, "images")
