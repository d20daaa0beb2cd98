"""Atomic file writes (temp file + rename) so a killed run never leaves a half-written result."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

from headstart.core.errors import DamagedFile, UserError


def default_cache_dir() -> Path:
    """Where feature and read caches go: $HEADSTART_CACHE, else $XDG_CACHE_HOME/headstart (~/.cache/headstart)."""
    return Path(os.environ.get("HEADSTART_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                / "headstart")


def cache_dir_of(cfg) -> Path:
    """The cache folder of a run: its --cache-dir, else the default."""
    return Path(cfg.cache_dir) if getattr(cfg, "cache_dir", "") else default_cache_dir()


def inside(root: str | Path, *parts) -> Path:
    """root/parts, refused when it would land outside root (a config value such as '../../x' or an absolute
    path never makes headstart write elsewhere than the run folder)."""
    root = Path(root).resolve()
    path = root.joinpath(*map(str, parts)).resolve()
    if path != root and root not in path.parents:
        raise UserError(f"refusing to write {path}: outside the run folder {root}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()      # what open() would give: colleagues can read a shared report (mkstemp: 0600)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
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
    """UTF-8; a lone surrogate (a file name that was not UTF-8) is written escaped, never an encoding error."""
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def read_json(path: str | Path, fix: str = "delete it to have headstart write it again, or use a new --out folder"):
    """A JSON file headstart wrote; a damaged one (truncated, empty, overwritten) is a DamagedFile naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = "empty" if not Path(path).stat().st_size else f"not valid JSON: {getattr(e, 'msg', e)}"
        raise DamagedFile(f"{path} is damaged ({why}); {fix}") from None


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def default_run_dir(data: str, kind: str = "") -> str:
    """runs/<dataset>[-<kind>]-<timestamp>: where a run goes without --out."""
    name = Path(data).resolve().name or "data"
    return str(Path("runs") / f"{name}{'-' + kind if kind else ''}-{datetime.now():%Y%m%d-%H%M%S}")


def ensure_writable(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass          # a name of its own: worker processes probe the same folder at the same time
    except OSError as e:
        raise UserError(f"cannot write to the output folder {run_dir} ({e.strerror}); choose another with --out") \
            from None
    return run_dir
