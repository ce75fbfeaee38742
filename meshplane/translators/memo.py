"""TranslationMemo: resources built for one view, reused for the next when nothing they depend
on changed.

Scopes of one mesh share most of their resources (a cluster is the same in every namespace
that sees it), and one config edit changes few of them, yet translation rebuilds everything
for every scope. The memo lets the translators hand back the message they built before, the
very same object, so the xDS layer (which interns by object as well as by content) also skips
serializing and hashing it again.

Translators stay pure: the memo is an explicit argument whose lifetime the caller owns (the
pusher keeps one). Each entry sits in a *slot* naming what the resource is (``("cds",
cluster name)``) and keeps the *key* it was built from: everything the output depends on,
compared with ``==``. A lookup under another key rebuilds and replaces the entry, so a slot
holds one version at most and a stale entry can never be returned for changed input. Keys
hold the model values themselves (frozen dataclasses compare by content), not revisions or
hashes of them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["TranslationMemo"]


class TranslationMemo:
    """Slot -> (key, built value). Not thread-safe; one owner."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[object, Any]] = {}
        self._used: set[Hashable] = set()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, slot: Hashable, key: object, build: Callable[[], T]) -> T:
        """The value built for `key` in `slot`, built now if the slot holds another key.

        `build` must depend on nothing but what `key` holds: that is the memo's contract.
        Callers must not mutate what they get back (it may be shared with other views).
        """
        self._used.add(slot)
        found = self._slots.get(slot)
        if found is not None and found[0] == key:
            self.hits += 1
            value: T = found[1]
            return value
        built = build()
        self._slots[slot] = (key, built)
        self.misses += 1
        return built

    def sweep(self) -> int:
        """Drop the slots not used since the previous sweep; returns how many went.

        The owner calls this after each full translation round, so what the memo holds is
        bounded by what the live views use, however much config churns.
        """
        stale = [slot for slot in self._slots if slot not in self._used]
        for slot in stale:
            del self._slots[slot]
        self._used = set()
        return len(stale)
