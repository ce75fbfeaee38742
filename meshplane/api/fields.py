"""Reading raw manifest mappings field by field, collecting every problem with its exact path.

Parsers never stop at the first problem (Envoy Gateway's style): each accessor records an
error or warning against a path like ``spec.http[0].route[1].weight`` and returns None, so
one run reports everything wrong with an object.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshplane.api import formats

T = TypeVar("T")

UNSUPPORTED = "not supported yet, ignored"


@dataclass
class Problems:
    """(field path, reason) pairs found while reading one object."""

    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def error(self, path: str, reason: str) -> None:
        self.errors.append((path, reason))

    def warn(self, path: str, reason: str) -> None:
        self.warnings.append((path, reason))


def _type_name(value: object) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class Fields:
    """One mapping at `path`, read with the typed accessors below."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: Problems) -> None:
        self.data = data
        self.path = path
        self.problems = problems

    def keys(self, known: Collection[str], ignored: Collection[str] = ()) -> Fields:
        """Keys neither known nor `ignored` are errors ("unknown field", as kubectl's strict
        mode); keys in `ignored` are Istio fields meshplane does not model yet: a warning."""
        for key in self.data:
            if key in ignored:
                self.problems.warn(self.at(key), UNSUPPORTED)
            elif key not in known:
                self.problems.error(self.at(key), "unknown field")
        return self

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def error(self, key: str, reason: str) -> None:
        self.problems.error(self.at(key), reason)

    def warn(self, key: str, reason: str) -> None:
        self.problems.warn(self.at(key), reason)

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            self.error(key, "required field is missing")
        return value

    def _typed(self, key: str, required: bool, want: type | tuple[type, ...], what: str) -> Any:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (want if isinstance(want, tuple) else (want,)):
            self.error(key, f"must be {what}, got boolean")
            return None
        if not isinstance(value, want):
            self.error(key, f"must be {what}, got {_type_name(value)}")
            return None
        return value

    def text(self, key: str, *, required: bool = False, empty_ok: bool = True) -> str | None:
        value: str | None = self._typed(key, required, str, "a string")
        if value is not None and not empty_ok and not value:
            self.error(key, "must not be empty")
            return None
        return value

    def flag(self, key: str) -> bool | None:
        value: bool | None = self._typed(key, False, bool, "a boolean")
        return value

    def integer(
        self, key: str, *, required: bool = False, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        value: int | None = self._typed(key, required, int, "an integer")
        checked: int | None = self._in_range(key, value, lo, hi)
        return checked

    def number(
        self, key: str, *, required: bool = False, lo: float | None = None, hi: float | None = None
    ) -> float | None:
        value = self._typed(key, required, (int, float), "a number")
        checked: float | None = self._in_range(key, None if value is None else float(value), lo, hi)
        return checked

    def _in_range(self, key: str, value: Any, lo: Any, hi: Any) -> Any:
        if value is None:
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(key, f"{value} is out of range [{lo}, {hi}]")
            return None
        return value

    def port(self, key: str, *, required: bool = False) -> int | None:
        return self.integer(key, required=required, lo=1, hi=65535)

    def percent(self, key: str) -> float | None:
        return self.number(key, lo=0, hi=100)

    def enum(self, key: str, allowed: Collection[str], *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None and value not in allowed:
            self.error(key, f"{value!r} is not one of {', '.join(sorted(allowed))}")
            return None
        return value

    def duration(self, key: str, *, required: bool = False, min_ms: int = 0) -> float | None:
        """A protobuf/Go duration ("1.5s", "100ms", "1h30m") as float seconds; negatives fail."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(key, f'must be a duration string like "1.5s", got {_type_name(value)}')
            return None
        seconds, reason = formats.parse_duration(value)
        if seconds is None:
            self.error(key, reason)
            return None
        if seconds * 1000 < min_ms:
            self.error(key, f"duration {value!r} must be at least {min_ms}ms")
            return None
        return seconds

    def str_list(
        self, key: str, *, required: bool = False, check: Callable[[str], str] | None = None
    ) -> tuple[str, ...]:
        """A list of strings; `check` returns a reason ("" when fine) for each element."""
        value = self._typed(key, required, list, "a list of strings")
        if value is None:
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            path = f"{self.at(key)}[{i}]"
            if not isinstance(item, str):
                self.problems.error(path, f"must be a string, got {_type_name(item)}")
                continue
            reason = check(item) if check else ""
            if reason:
                self.problems.error(path, reason)
                continue
            out.append(item)
        if required and not value:
            self.error(key, "must have at least one entry")
        return tuple(out)

    def str_map(self, key: str, *, labels: bool = False) -> dict[str, str] | None:
        """A string -> string map; `labels` checks keys and values as Kubernetes labels."""
        value = self._typed(key, False, dict, "a map of strings")
        if value is None:
            return None
        out: dict[str, str] = {}
        for k, v in value.items():
            path = f"{self.at(key)}.{k}"
            if not isinstance(k, str) or not isinstance(v, str):
                self.problems.error(path, f"must be a string, got {_type_name(v)}")
                continue
            reason = (
                (formats.label_key_problem(k) or formats.label_value_problem(v)) if labels else ""
            )
            if reason:
                self.problems.error(path, reason)
                continue
            out[k] = v
        return out

    def obj(self, key: str, *, required: bool = False) -> Fields | None:
        value = self._typed(key, required, dict, "an object")
        if value is None:
            return None
        return Fields(value, self.at(key), self.problems)

    def read(self, key: str, reader: Callable[[Fields], T | None]) -> T | None:
        """Read a nested object with `reader`, or None when absent or invalid."""
        sub = self.obj(key)
        return reader(sub) if sub is not None else None

    def objs(self, key: str, *, required: bool = False) -> Iterator[Fields]:
        """Each mapping of a list of objects, with its `key[i]` path."""
        value = self._typed(key, required, list, "a list of objects")
        if value is None:
            return
        if required and not value:
            self.error(key, "must have at least one entry")
        for i, item in enumerate(value):
            path = f"{self.at(key)}[{i}]"
            if not isinstance(item, dict):
                self.problems.error(path, f"must be an object, got {_type_name(item)}")
                continue
            yield Fields(item, path, self.problems)

    def each(
        self, key: str, reader: Callable[[Fields], T | None], *, required: bool = False
    ) -> tuple[T, ...]:
        """Read every object of a list with `reader`, dropping the ones that failed."""
        out = [reader(f) for f in self.objs(key, required=required)]
        return tuple(x for x in out if x is not None)
