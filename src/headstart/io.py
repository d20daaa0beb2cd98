"""Atomic file writes (temp file + rename) so a killed run never leaves a half-written result."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def inside(root: str | Path, *parts) -> Path:
    """root/parts, refused when it would land outside root (a config value such as '../../x' or an absolute
    path never makes headstart write elsewhere than the run folder)."""
    from headstart.errors import UserError
    root = Path(root).resolve()
    path = root.joinpath(*map(str, parts)).resolve()
    if path != root and root not in path.parents:
        raise UserError(f"refusing to write {path}: outside the run folder {root}")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_default) + "\n").encode())


def write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def _default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
