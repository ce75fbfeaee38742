"""Load config from paths in one synchronous pass: `meshplane analyze` and golden tests.

It goes through the same reader, parsers and store as `serve`, so what it reports and
builds is what the running control plane would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from meshplane.model.mesh import MeshConfig
from meshplane.model.store import ConfigStore
from meshplane.sources.files import read_dirs


def load_paths(
    paths: Sequence[str | os.PathLike[str]], mesh_config: MeshConfig | None = None
) -> ConfigStore:
    """Read every manifest under `paths` (directories recursively, or single files)."""
    store = ConfigStore(mesh_config)
    store.apply_all(read_dirs(paths))
    return store
