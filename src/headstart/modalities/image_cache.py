"""What reading an image folder learned, kept on disk so a resumed run, a grid worker or a second run on the same
folder does not decode every image again: per file (path, size, modification time) its content hash and 24x24
thumbnail, or why it could not be read.

    cache = ReadCache(cache_dir, root, short_side)
    hit = cache.lookup(path)          # (hash, reason, thumbnail) when the file's size and mtime are unchanged
    cache.record(path, hash, reason, thumbnail); cache.save()

A file whose size or mtime changed is read again. One that changed without either changing is caught when its
pixels are read (ImageFiles compares the hash). Stored with numpy's npz, never pickle.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from headstart.core.io import atomic_write_bytes


class ReadCache:
    def __init__(self, cache_dir: str | Path, root: str | Path, short_side: int, width: int):
        key = hashlib.sha1(f"{Path(root).resolve()}\0{short_side}\0{width}".encode()).hexdigest()[:20]
        self.path = Path(cache_dir) / f"read-{key}.npz"
        self.width = width
        self.known: dict[str, tuple] = {}
        self.rows: dict[str, tuple] = {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                for p, size, mtime, digest, reason, thumb in zip(z["paths"], z["sizes"], z["mtimes"], z["digests"],
                                                                 z["reasons"], z["thumbs"]):
                    self.known[str(p)] = (int(size), int(mtime), str(digest), str(reason), thumb)
        except (OSError, ValueError, KeyError, EOFError):     # none yet, or damaged: read the files
            self.known = {}

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def lookup(self, path: Path):
        """(hash, reason, thumbnail) recorded for this file as it is now, or None."""
        hit = self.known.get(str(path))
        if hit is None or self._stamp(path) != hit[:2]:
            return None
        return hit[2], hit[3], hit[4]

    def record(self, path: Path, digest: str, reason: str, thumb) -> None:
        stamp = self._stamp(path)
        if stamp is not None:
            self.rows[str(path)] = (*stamp, digest, reason,
                                    np.zeros(self.width, np.float32) if thumb is None else thumb)

    def save(self) -> None:
        """The files this read saw (a later read of the same folder finds them)."""
        changed = set(self.rows) != set(self.known) or any(self.known[k][:4] != v[:4] for k, v in self.rows.items())
        if not self.rows or not changed:
            return
        cols = list(zip(*self.rows.values()))
        buf = io.BytesIO()
        np.savez(buf, paths=np.array(list(self.rows), dtype=str), sizes=np.array(cols[0], np.int64),
                 mtimes=np.array(cols[1], np.int64), digests=np.array(cols[2], dtype=str),
                 reasons=np.array(cols[3], dtype=str), thumbs=np.stack(cols[4]).astype(np.float32))
        atomic_write_bytes(self.path, buf.getvalue())
