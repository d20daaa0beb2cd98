"""The modality registry and detection from the input; each modality implements modalities/base.Modality.

    mod = MODALITIES[detect_modality(cfg.data, cfg.modality)]()
"""
from __future__ import annotations

from pathlib import Path

from headstart.core.errors import UserError
from headstart.core.tables import TABLE_EXTS, path_column, read_rows
from headstart.modalities.audio import AudioModality
from headstart.modalities.base import Modality, ModalityState
from headstart.modalities.image import ImageModality
from headstart.modalities.text import TextModality

MODALITIES: dict[str, type[Modality]] = {"image": ImageModality, "text": TextModality, "audio": AudioModality}
DEFAULT = "image"        # a folder whose files are mostly none of the others'


def detect_modality(data: str, explicit: str = "") -> str:
    if explicit:
        if explicit not in MODALITIES:
            raise UserError(f"unknown modality {explicit!r}; choose from {', '.join(MODALITIES)}")
        return explicit
    p = Path(data)
    if p.is_file() and p.suffix.lower() in TABLE_EXTS:
        media = _media_table_modality(p)
        if media:
            return media
    if p.is_file():
        for name, m in MODALITIES.items():
            if p.suffix.lower() in m.file_exts:
                return name
        readable = sorted(e for m in MODALITIES.values() for e in m.file_exts)
        raise UserError(f"{data} is a file of a type headstart does not read ({p.suffix or 'no extension'}); pass "
                        f"a {'/'.join(readable)} file or a folder")
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()][:2000]
        counts = {name: sum(f.suffix.lower() in m.folder_exts for f in files) for name, m in MODALITIES.items()}
        ranked = sorted((n, name) for name, n in counts.items() if n)
        if len(ranked) >= 2 and ranked[-2][0] >= max(2, 0.1 * ranked[-1][0]):    # a stray README.txt is no mix
            found = " and ".join(f"{n} {name} file(s)" for n, name in reversed(ranked))
            raise UserError(f"{data} mixes modalities ({found}), e.g. transcripts beside clips; pass --modality "
                            f"{' or --modality '.join(name for _, name in reversed(ranked))} to say which to train on")
        for name, m in MODALITIES.items():
            if name != DEFAULT and counts[name] and counts[name] >= len(files) / 2:
                return name
    return DEFAULT


def _media_table_modality(table: Path) -> str | None:
    """The modality whose files a table's path column names (image or audio), or None (a text table)."""
    try:
        rows = read_rows(table, "utf-8")
    except UserError:
        return None                  # not readable as UTF-8 here: the text loader reports it with --encoding
    for name, m in MODALITIES.items():
        if not m.file_exts and path_column(rows, m.folder_exts):
            return name
    return None


__all__ = ["MODALITIES", "Modality", "ModalityState", "detect_modality"]
