"""The files source on real files: multi-document reads and the watcher's add/change/delete."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from meshplane.sources.events import Event, Op, SourceCleared, SourceError
from meshplane.sources.files import Batch, DirectoryWatcher, read_dirs, read_file


def doc(kind: str, name: str, ns: str = "default", extra: str = "") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  host: {name}{extra}\n"
    )


def test_read_file_multi_document_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(
        "# comment\n" + doc("DestinationRule", "a") + "---\n---\n" + doc("Sidecar", "b")
    )
    items = read_file(path)
    assert [type(i) for i in items] == [Event, Event]
    events = [i for i in items if isinstance(i, Event)]
    assert [e.manifest["metadata"]["name"] for e in events] == ["a", "b"]
    assert [(e.origin.doc_index, e.origin.line) for e in events] == [(0, 2), (2, 11)]
    assert all(e.op is Op.UPSERT and e.origin.path == str(path) for e in events)


def test_list_kind_expands_and_json(tmp_path: Path) -> None:
    (tmp_path / "l.yaml").write_text(
        "kind: List\napiVersion: v1\nitems:\n- kind: Service\n  metadata: {name: a}\n"
        "- kind: Service\n  metadata: {name: b}\n"
    )
    (tmp_path / "j.json").write_text(json.dumps({"kind": "Pod", "metadata": {"name": "p"}}))
    (tmp_path / "ignored.txt").write_text("kind: Pod")
    items = read_dirs([tmp_path])
    names = [i.manifest["metadata"]["name"] for i in items if isinstance(i, Event)]
    assert names == ["p", "a", "b"]  # files sorted: j.json before l.yaml
    lines = [i.origin.line for i in items if isinstance(i, Event)]
    assert lines == [1, 4, 6]


def test_bad_documents_are_source_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "scalar.yaml").write_text(doc("Sidecar", "ok") + "---\njust a string\n")
    items = read_dirs([tmp_path])
    errors = [i for i in items if isinstance(i, SourceError)]
    assert [Path(e.origin.path).name for e in errors] == ["bad.yaml", "scalar.yaml"]
    assert "not valid YAML" in errors[0].reason and errors[0].origin.line == 2
    assert "not a mapping" in errors[1].reason and errors[1].origin.doc_index == 1
    assert [i.manifest["metadata"]["name"] for i in items if isinstance(i, Event)] == ["ok"]


def test_hidden_files_and_dirs_skipped_and_recursive(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "x.yml").write_text(doc("Sidecar", "x"))
    (tmp_path / ".hidden.yaml").write_text(doc("Sidecar", "h"))
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "y.yaml").write_text(doc("Sidecar", "y"))
    names = [i.manifest["metadata"]["name"] for i in read_dirs([tmp_path]) if isinstance(i, Event)]
    assert names == ["x"]


# -- watcher ----------------------------------------------------------------------------


class Watch:
    """A running watcher with a bounded wait for the next batch."""

    def __init__(self, watcher: DirectoryWatcher) -> None:
        self.watcher = watcher
        self.it: AsyncIterator[Batch] = aiter(watcher)

    async def next(self, timeout: float = 10.0) -> Batch:
        return await asyncio.wait_for(anext(self.it), timeout)

    async def until(self, predicate: Callable[[Batch], bool], timeout: float = 10.0) -> Batch:
        """Collect items until `predicate(all items so far)` holds."""
        seen: Batch = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(seen):
            seen.extend(await self.next(max(0.1, deadline - loop.time())))
        return seen


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[Watch]:
    (tmp_path / "a.yaml").write_text(doc("DestinationRule", "a") + "---\n" + doc("Sidecar", "b"))
    watcher = DirectoryWatcher([tmp_path], timeout_ms=200)
    w = Watch(watcher)
    try:
        yield w
    finally:
        watcher.stop()
        await w.it.aclose()  # type: ignore[attr-defined]


def names(items: Batch, op: Op) -> list[str]:
    return sorted(
        i.manifest["metadata"]["name"] for i in items if isinstance(i, Event) and i.op is op
    )


async def settle(w: Watch) -> None:
    """Wait for the watcher to be live (the first timeout rescan yields nothing)."""
    await asyncio.sleep(0.5)


async def test_watcher_lifecycle(watch: Watch, tmp_path: Path) -> None:
    first = await watch.next()
    assert names(first, Op.UPSERT) == ["a", "b"]
    await settle(watch)

    # created
    (tmp_path / "c.yaml").write_text(doc("Sidecar", "c"))
    got = await watch.until(lambda s: "c" in names(s, Op.UPSERT))
    assert names(got, Op.DELETE) == []

    # modified: b dropped from a.yaml, a changed
    (tmp_path / "a.yaml").write_text(doc("DestinationRule", "a", extra="\n  exportTo: ['.']"))
    got = await watch.until(lambda s: "b" in names(s, Op.DELETE))
    assert names(got, Op.UPSERT) == ["a"]

    # non-YAML write: a SourceError, and no deletes - the last good objects stay
    (tmp_path / "a.yaml").write_text("{{{ not yaml")
    got = await watch.until(lambda s: any(isinstance(i, SourceError) for i in s))
    assert names(got, Op.DELETE) == []

    # fixed again: the error is cleared
    (tmp_path / "a.yaml").write_text(doc("DestinationRule", "a"))
    got = await watch.until(lambda s: any(isinstance(i, SourceCleared) for i in s))
    assert names(got, Op.UPSERT) == ["a"]

    # replaced by rename, as editors do
    tmp = tmp_path / "c.yaml.tmp"
    tmp.write_text(doc("Sidecar", "c2"))
    os.replace(tmp, tmp_path / "c.yaml")
    got = await watch.until(lambda s: "c" in names(s, Op.DELETE))
    assert names(got, Op.UPSERT) == ["c2"]

    # deleted
    (tmp_path / "a.yaml").unlink()
    got = await watch.until(lambda s: "a" in names(s, Op.DELETE))
    assert all(Path(i.origin.path).name == "a.yaml" for i in got if isinstance(i, Event))


async def test_same_content_rewrite_is_silent(watch: Watch, tmp_path: Path) -> None:
    await watch.next()
    await settle(watch)
    content = (tmp_path / "a.yaml").read_text()
    (tmp_path / "a.yaml").write_text(content)
    (tmp_path / "z.yaml").write_text(doc("Sidecar", "z"))  # a marker that must arrive
    got = await watch.until(lambda s: "z" in names(s, Op.UPSERT))
    assert names(got, Op.UPSERT) == ["z"]


async def test_change_between_initial_read_and_watch_is_seen(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(doc("Sidecar", "a"))
    watcher = DirectoryWatcher([tmp_path], timeout_ms=200)
    w = Watch(watcher)
    try:
        assert names(await w.next(), Op.UPSERT) == ["a"]
        # Written before the notifier starts (it starts on the next iteration).
        (tmp_path / "b.yaml").write_text(doc("Sidecar", "b"))
        got = await w.until(lambda s: "b" in names(s, Op.UPSERT))
        assert names(got, Op.UPSERT) == ["b"]
    finally:
        watcher.stop()
        await w.it.aclose()  # type: ignore[attr-defined]
