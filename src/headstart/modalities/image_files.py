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
from headstart.core.tables import labelled_media, scan_media
from headstart.modalities.base import decoded_budget_gib
from headstart.modalities.image_cache import ReadCache
from headstart.models.device import to_numpy

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


def thumbnail(item) -> np.ndarray:
    """A decoded CHW uint8 image centre-cropped to a square and shrunk to 24x24 RGB, flattened (float32 in [0, 1]):
    what the classic baseline and the assessment's raw k-NN see."""
    import torch.nn.functional as F
    x = item.float() / 255
    side = min(x.shape[-2:])
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    x = x[:, top: top + side, left: left + side][None]
    return to_numpy(F.interpolate(x, size=(THUMB, THUMB), mode="bilinear", antialias=True).flatten())


THUMB = 24
CHUNK = 256             # images decoded per round: what is in flight at once while reading a folder


class ImageFiles:
    """The images of a LabeledSet as a sequence of uint8 CHW tensors (shorter side `short_side`): kept decoded
    while their total stays within decoded_budget_gib(), the rest decoded from the file on each access (DataLoader
    workers do it in parallel). `thumbs` holds every image's 24x24 thumbnail (classic's input, 7 KB per image).
    A file that changed or vanished after it was read is refused by name (its hash is checked on every re-read)."""

    def __init__(self, short_side: int):
        self.short_side = short_side
        self.files: list[Path] = []
        self.hashes: list[str] = []
        self.kept: dict[int, object] = {}
        self.thumbs = np.zeros((0, 3 * THUMB * THUMB), np.float32)
        self.kept_bytes = 0

    @property
    def streamed(self) -> bool:
        """Some images are decoded per access (the folder is larger than the decoded-image budget)."""
        return len(self.kept) < len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, j):
        j = int(j)
        if j in self.kept:
            return self.kept[j]
        ok, reason = read_image_file(self.files[j], self.short_side)
        if ok is None or ok[1] != self.hashes[j]:
            raise UserError(f"{self.files[j]} changed or became unreadable during the run ({reason or 'new content'});"
                            " keep the data unchanged while headstart runs, then run the same command to resume")
        return chw_tensor(ok[0])

    def __iter__(self):
        return (self[j] for j in range(len(self)))

    def subset(self, keep: list[int]) -> "ImageFiles":
        """The images at positions `keep`, in that order (thumbnails, hashes and kept pixels with them)."""
        out = ImageFiles(self.short_side)
        out.files = [self.files[j] for j in keep]
        out.hashes = [self.hashes[j] for j in keep]
        out.kept = {k: self.kept[j] for k, j in enumerate(keep) if j in self.kept}
        out.kept_bytes = sum(t.numel() for t in out.kept.values())
        out.thumbs = self.thumbs[np.asarray(keep, dtype=int)] if len(keep) else self.thumbs[:0]
        return out


def fixed_mmap_threshold(nbytes: int = 128 * 1024) -> None:
    """glibc only: allocations above `nbytes` always come from mmap, so freeing them returns the memory at once.
    glibc's default raises that threshold (up to 32 MiB) each time a large block is freed, after which the ~1 MiB
    decode temporaries of the reading threads come from the heap and fragment it: reading 10,000 images while
    keeping 2 GiB of them peaked at 9.6 GiB that way, 3.1 GiB with the threshold fixed (benchmarks/README.md)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)           # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass                                                   # not glibc: its allocator decides


def read_images(files: list[Path], short_side: int, workers: int = 0, progress=None,
                cache: ReadCache | None = None) -> tuple[ImageFiles, list[int], dict[int, str]]:
    """Read every file once, CHUNK at a time: (ImageFiles of the readable ones, their positions in `files`,
    {position: why} for the others). Each readable image's hash and thumbnail are kept, its pixels only while the
    decoded-image budget lasts; `cache` answers for files read before (their pixels are decoded only to be kept)."""
    images = ImageFiles(short_side)
    budget = decoded_budget_gib() * 2 ** 30
    thumbs, good, bad = [], [], {}
    workers = workers or min(8, os.cpu_count() or 1)

    def read(path: Path, pixels: bool):   # in a thread: PIL and torch release the GIL while decoding and resizing
        hit = cache.lookup(path) if cache else None
        if hit and (hit[1] or not pixels):        # known bad, or known good and its pixels are not kept
            return (None, hit[1]) if hit[1] else ((None, hit[0], hit[2]), None)
        ok, reason = read_image_file(path, short_side)
        if ok is None:
            return None, reason
        item = chw_tensor(ok[0])
        return (item, ok[1], thumbnail(item)), None

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(files), CHUNK):
            chunk = files[start: start + CHUNK]
            pixels = images.kept_bytes < budget
            for k, (path, (ok, reason)) in enumerate(zip(chunk, pool.map(lambda f: read(f, pixels), chunk)),
                                                    start):
                if cache:
                    cache.record(path, ok[1] if ok else "", reason or "", ok[2] if ok else None)
                if ok is None:
                    bad[k] = reason
                    continue
                item, digest, thumb = ok
                if item is not None and images.kept_bytes + item.numel() <= budget:
                    images.kept[len(images.files)] = item
                    images.kept_bytes += item.numel()
                images.files.append(path)
                images.hashes.append(digest)
                thumbs.append(thumb)
                good.append(k)
            if progress:
                progress(len(chunk), len(files))
    if cache:
        cache.save()
    images.thumbs = np.stack(thumbs) if thumbs else np.zeros((0, 3 * THUMB * THUMB), np.float32)
    return images, good, bad


def load_image_folder(root: str | Path, short_side: int = 256, workers: int = 0, label_col: str = "",
                      group_col: str = "", progress=None, cache_dir: str | Path | None = None) -> LabeledSet:
    """Scan and decode every image once (bad files end up in `skipped` with the reason), keeping its hash and 24x24
    thumbnail, and the decoded image itself while the decoded-image budget lasts (ImageFiles). root: a folder of
    class subfolders (or train/ val/ test/), a table of image paths and labels, or an HF imagefolder (metadata.csv).
    progress(n, total): called as images are read. cache_dir: where what was read is remembered
    (modalities/image_cache.py), so a second read decodes only changed files and those whose pixels are kept."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 200_000_000  # keep Pillow's decompression-bomb guard, at ~14k x 14k
    fixed_mmap_threshold()
    scan = scan_media(root, IMAGE_EXTS, "images", label_col, group_col)
    cache = ReadCache(cache_dir, scan[0], short_side, 3 * THUMB * THUMB) if cache_dir else None
    images, good, bad = read_images([e[0] for e in scan[2]], short_side, workers, progress, cache)
    return labelled_media(scan, images, good, bad, "image files")


def scan_image_folder(root: str | Path):
    return scan_folder(root, IMAGE_EXTS, "images")
