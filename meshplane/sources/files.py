"""The embedded config source: directories of YAML/JSON manifests, read once or watched.

Every document becomes an Event carrying where it came from, so a validation error can name
the file and line. The watcher remembers which objects each file produced: a file that stops
declaring an object deletes it, a deleted file deletes all of its objects, and a file that
no longer parses deletes nothing (the last good objects stay in force).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from watchfiles import awatch

from meshplane.sources.events import Event, Op, Origin, SourceCleared, SourceError

__all__ = ["SUFFIXES", "DirectoryWatcher", "Item", "read_dirs", "read_file"]

SUFFIXES = (".yaml", ".yml", ".json")

Item = Event | SourceError
Batch = list[Event | SourceError | SourceCleared]
# apiVersion group, kind, namespace, name: what makes two documents the same object.
Identity = tuple[str, str, str, str]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_file(path: str | os.PathLike[str]) -> list[Item]:
    """Every object in one manifest file, in document order, or the reasons it cannot be read.

    A YAML syntax error makes the whole file one SourceError: documents after the error
    cannot be told apart, and applying half a file is more surprising than applying none.
    """
    return _read(str(path))[1]


def _read(name: str) -> tuple[str, list[Item]]:
    """(digest of the bytes, items): the digest lets the watcher skip rewrites of equal content."""
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        return "", [SourceError(Origin(name), f"cannot read file: {exc.strerror or exc}")]
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return digest, [SourceError(Origin(name), f"not UTF-8 text: {exc}")]
    if name.endswith(".json"):
        return digest, _read_json(name, text)
    return digest, _read_yaml(name, text)


def _read_json(name: str, text: str) -> list[Item]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return [SourceError(Origin(name), f"not valid JSON: {exc}")]
    return _expand(data, Origin(name, 0, 1), [])


def _read_yaml(name: str, text: str) -> list[Item]:
    items: list[Item] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:  # an empty document (a lone `---`) declares nothing
                origin = Origin(name, index, node.start_mark.line + 1)
                items.extend(_expand(data, origin, _item_lines(node)))
            index += 1
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return [SourceError(Origin(name, 0, line), f"not valid YAML: {_one_line(exc)}")]
    finally:
        loader.dispose()
    return items


def _item_lines(node: yaml.Node) -> list[int]:
    """Lines of the entries of a top-level `items:` list (for `kind: List` documents)."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _expand(data: object, origin: Origin, item_lines: list[int]) -> list[Item]:
    if not isinstance(data, dict):
        kind = type(data).__name__
        return [SourceError(origin, f"document is a {kind}, not a mapping (a manifest object)")]
    if data.get("kind") == "List" and isinstance(data.get("items"), list):
        out: list[Item] = []
        for i, item in enumerate(data["items"]):
            line = item_lines[i] if i < len(item_lines) else origin.line
            item_origin = Origin(origin.path, origin.doc_index, line)
            if isinstance(item, dict):
                out.append(Event(Op.UPSERT, item, item_origin))
            else:
                out.append(SourceError(item_origin, f"items[{i}] is not a mapping"))
        return out
    return [Event(Op.UPSERT, data, origin)]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def manifest_files(dirs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """All manifest files under `dirs`, recursively, sorted; hidden files and dirs skipped.

    Hidden entries are editor swap files and the `..data` directories of Kubernetes
    ConfigMap mounts, whose visible symlinks are read instead.
    """
    found: set[str] = set()
    for top in dirs:
        top_s = str(top)
        if os.path.isfile(top_s):
            found.add(top_s)
            continue
        for root, subdirs, files in os.walk(top_s, followlinks=True):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            for f in files:
                if not f.startswith(".") and f.endswith(SUFFIXES):
                    found.add(os.path.join(root, f))
    return sorted(found)


def read_dirs(dirs: Iterable[str | os.PathLike[str]]) -> list[Item]:
    """Every object in every manifest file under `dirs`, in a deterministic order."""
    items: list[Item] = []
    for path in manifest_files(dirs):
        items.extend(read_file(path))
    return items


def identity(manifest: Mapping[str, Any]) -> Identity:
    """What makes two manifests the same object; versions of one API group share it."""
    api_version = str(manifest.get("apiVersion") or "")
    group = api_version.rpartition("/")[0]
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (
        group,
        str(manifest.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _delete_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    keep = {k: meta[k] for k in ("name", "namespace") if k in meta}
    return {
        "apiVersion": manifest.get("apiVersion"),
        "kind": manifest.get("kind"),
        "metadata": keep,
    }


class _FileState:
    """What the watcher last saw of one file."""

    __slots__ = ("digest", "failed", "fingerprint", "objects")

    def __init__(self) -> None:
        self.fingerprint: tuple[int, ...] = ()
        self.digest = ""
        self.objects: dict[Identity, dict[str, Any]] = {}  # identity -> manifest for DELETE
        self.failed = False


def _fingerprint(path: str) -> tuple[int, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class DirectoryWatcher:
    """Async iterator of batches: first every object under `dirs`, then each change.

    Notification events only say *where* to look: after each one the watcher compares every
    manifest file's stat fingerprint with what it last read, so renames, symlink swaps
    (ConfigMap mounts) and changes made between the initial read and the start of watching
    are all seen. The first rescan happens when the notifier reports it is live (its first
    timeout or change), which closes the gap between the initial read and the watch.
    """

    def __init__(
        self,
        dirs: Sequence[str | os.PathLike[str]],
        *,
        debounce_ms: int = 50,
        step_ms: int = 20,
        timeout_ms: int = 500,
        force_polling: bool | None = None,
    ) -> None:
        self._dirs = [os.path.abspath(str(d)) for d in dirs]
        self._files: dict[str, _FileState] = {}
        self._stop = asyncio.Event()
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._timeout_ms = timeout_ms
        self._force_polling = force_polling

    def stop(self) -> None:
        """End iteration (within about `timeout_ms`)."""
        self._stop.set()

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[Batch]:
        yield self._rescan(set())
        live = False
        try:
            async for changes in awatch(
                *self._dirs,
                watch_filter=None,
                debounce=self._debounce_ms,
                step=self._step_ms,
                rust_timeout=self._timeout_ms,
                yield_on_timeout=True,
                stop_event=self._stop,
                force_polling=self._force_polling,
            ):
                if live and not changes:
                    continue
                live = True
                batch = self._rescan({os.path.abspath(p) for _, p in changes})
                if batch:
                    yield batch
        finally:
            self._stop.set()

    def _rescan(self, touched: set[str]) -> Batch:
        batch: Batch = []
        current = manifest_files(self._dirs)
        for path in current:
            state = self._files.get(path)
            fingerprint = _fingerprint(path)
            if state is None or path in touched or fingerprint != state.fingerprint:
                batch.extend(self._reread(path, fingerprint))
        for path in sorted(set(self._files) - set(current)):
            batch.extend(self._forget(path))
        return batch

    def _reread(self, path: str, fingerprint: tuple[int, ...]) -> Batch:
        state = self._files.setdefault(path, _FileState())
        state.fingerprint = fingerprint
        digest, items = _read(path)
        if digest and digest == state.digest:
            return []
        state.digest = digest
        events = [i for i in items if isinstance(i, Event)]
        errors = [i for i in items if isinstance(i, SourceError)]
        found = {identity(e.manifest): _delete_manifest(e.manifest) for e in events}
        if errors:
            # Keep remembering the old objects: a later good version must still delete them.
            state.objects.update(found)
            state.failed = True
            return [*events, *errors]
        origin = Origin(path)
        gone = [
            Event(Op.DELETE, manifest, origin)
            for ident, manifest in state.objects.items()
            if ident not in found
        ]
        batch: Batch = [SourceCleared(path)] if state.failed else []
        state.objects = found
        state.failed = False
        return [*batch, *events, *gone]

    def _forget(self, path: str) -> Batch:
        state = self._files.pop(path)
        origin = Origin(path)
        batch: Batch = [Event(Op.DELETE, m, origin) for m in state.objects.values()]
        if state.failed:
            batch.append(SourceCleared(path))
        return batch
