"""The one shape every source emits, so later stages never know where config came from."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Op(enum.Enum):
    """What happened to a manifest."""

    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True)
class Origin:
    """Where a manifest was read: a file (with document index and line) or a Kubernetes ref."""

    path: str
    doc_index: int = 0
    line: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


@dataclass(frozen=True)
class Event:
    """One manifest added, changed or removed.

    `manifest` is the raw decoded YAML/JSON object (apiVersion, kind, metadata, spec).
    For DELETE only apiVersion/kind/metadata.name/namespace need be present.
    """

    op: Op
    manifest: dict[str, Any] = field(hash=False, compare=False)
    origin: Origin


@dataclass(frozen=True)
class SourceError:
    """A document that could not be read at all (not YAML, not a mapping, unreadable file).

    The objects that document held before stay in force; this only reports.
    """

    origin: Origin
    reason: str


@dataclass(frozen=True)
class SourceCleared:
    """The file at `path` was read cleanly again, or removed: its earlier SourceErrors are over.

    Without it a consumer could not tell when to drop a file-level error, because a file that
    never parsed produced no objects whose later events could clear it.
    """

    path: str
