"""The `selector` every security.istio.io kind shares ({matchLabels: ...}), and the
`targetRef(s)` alternative meshplane does not apply yet."""

from __future__ import annotations

from meshplane.api.fields import Fields


def match_labels(f: Fields) -> dict[str, str] | None:
    """`selector.matchLabels`, or None when the policy selects no workload (namespace-wide).

    `targetRef(s)` names a Gateway or Service instead of workloads; applying the policy
    namespace-wide in its place would change who it covers, so it is an error."""
    for key in ("targetRef", "targetRefs"):
        if f.has(key):
            f.error(key, "targetRef/targetRefs are not supported yet; use selector.matchLabels")
    sel = f.obj("selector")
    if sel is None:
        return None
    sel.keys(("matchLabels",))
    return sel.str_map("matchLabels", labels=True) or None
