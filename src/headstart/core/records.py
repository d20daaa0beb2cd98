"""Typed records for what a run writes as JSON (results.json, assessment.json, comparison.json): dataclasses whose
field annotations are the schema, so readers use attributes and the JSON stays what users already read.

    class Difference(Record):
        difference: float = 0.0
        ci: list = field(default_factory=list)
    d = Difference.from_dict({"difference": 0.1, "ci": [0.0, 0.2], "n": 40})   # unknown keys kept in d.extra
    d.to_dict() == {"difference": 0.1, "ci": [0.0, 0.2], "n": 40}

Nested records are built from the annotations (`Arm`, `dict[str, Arm]`, `list[Pair]`, `X | None`); a field named
in OPTIONAL is left out of the JSON while it is None (a key some runs do not write); `upgrade` fills what files
written by older versions lack. `Record.of(x)` accepts a record or its dict, so callers holding either work.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

R = TypeVar("R", bound="Record")


@dataclass
class Record:
    extra: dict = field(default_factory=dict, kw_only=True, repr=False)    # keys this version does not know
    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def upgrade(cls, d: dict) -> dict:
        """Fill in keys that files from older versions lack (default: nothing to do)."""
        return d

    @classmethod
    def from_dict(cls: type[R], d: dict) -> R:
        hints = _hints(cls)
        d = cls.upgrade(dict(d))
        known = {k: _build(hints[k], v) for k, v in d.items() if k in hints and k != "extra"}
        return cls(**known, extra={k: v for k, v in d.items() if k not in hints or k == "extra"})

    @classmethod
    def of(cls: type[R], x) -> R:
        return x if isinstance(x, cls) else cls.from_dict(x)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra" or (v is None and f.name in self.OPTIONAL):
                continue
            out[f.name] = plain(v)
        return {**out, **self.extra}


def plain(v):
    """A record, or containers of them, as JSON-ready dicts and lists."""
    if isinstance(v, Record) or (dataclasses.is_dataclass(v) and hasattr(v, "to_dict")):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _build(tp, v):
    """v (parsed JSON) as the annotation tp asks: records from dicts, inside dicts, lists and optionals."""
    if v is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], v) if len(inner) == 1 else v
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(v, dict):
        if issubclass(tp, Record):
            return tp.from_dict(v)
        names = {f.name for f in dataclasses.fields(tp)}       # a plain dataclass (RunConfig): its known keys
        return tp(**{k: x for k, x in v.items() if k in names})
    if origin is dict and isinstance(v, dict) and args:
        return {k: _build(args[1], x) for k, x in v.items()}
    if origin is list and isinstance(v, list) and args:
        return [_build(args[0], x) for x in v]
    return v


@dataclass
class Failable(Record):
    """A record that is a result, or when it failed only the reason (plus the fields KEEP_ON_FAIL names)."""
    failed: str | None = None
    KEEP_ON_FAIL: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        if self.failed is None:
            return super().to_dict()
        return {"failed": self.failed, **{k: plain(getattr(self, k)) for k in self.KEEP_ON_FAIL}, **self.extra}

    @property
    def ok(self) -> bool:
        return self.failed is None


@dataclass
class Difference(Record):
    """a's score minus b's on the same items (a share: 0.05 = 5 points), with the paired 95% CI."""
    difference: float = 0.0
    ci: list = field(default_factory=lambda: [0.0, 0.0])
    significant: bool = False            # the CI excludes 0
    metric: str = "accuracy"             # what was compared (the run's decision metric)

    @property
    def points(self) -> float:
        return 100 * self.difference

    @property
    def points_ci(self) -> tuple[float, float]:
        return 100 * self.ci[0], 100 * self.ci[1]

    @property
    def beyond_noise(self) -> bool:
        return self.significant


@dataclass
class Skipped(Record):
    """An input (file, backbone) left out, and why."""
    path: str | None = None
    backbone: str | None = None
    reason: str = ""
    OPTIONAL = ("path", "backbone")
