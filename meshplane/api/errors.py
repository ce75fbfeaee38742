"""Validation errors that name the file, object and field, so users can fix them."""

from __future__ import annotations

from dataclasses import dataclass

from meshplane.sources.events import Origin


@dataclass(frozen=True)
class ValidationError:
    """One problem with one object.

    `field` is a path like ``spec.http[0].route[1].weight``; empty for whole-document
    problems (not YAML, unknown kind). `severity` is "error" (object rejected) or
    "warning" (object accepted, but something is suspicious).
    """

    origin: Origin
    kind: str
    namespace: str
    name: str
    field: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        obj = f"{self.kind} {self.namespace}/{self.name}" if self.name else self.kind
        where = " ".join(p for p in (obj, self.field) if p)
        prefix = f"{self.origin}: {self.severity}:"
        return f"{prefix} {where}: {self.reason}" if where else f"{prefix} {self.reason}"

    def to_dict(self) -> dict[str, str]:
        """JSON shape used by /debug/config_errors."""
        return {
            "file": self.origin.path,
            "line": str(self.origin.line),
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "field": self.field,
            "reason": self.reason,
            "severity": self.severity,
        }


class InvalidObject(Exception):
    """Raised by a parser when an object cannot be accepted; carries every error found."""

    def __init__(self, errors: list[ValidationError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors
