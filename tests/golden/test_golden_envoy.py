"""Real Envoy accepts every committed golden output (`envoy --mode validate`).

One Envoy process per PROXY.json, two at a time in threads (the machine has two cores);
the results are computed once per session and each file's test asserts its own.
"""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from envoy_validate import validate
from harness import REPO_ROOT, discover_cases, proxies

pytestmark = pytest.mark.envoy

ENVOY = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
GOLDEN_FILES = [
    (case / f"{stem}.json", str(spec["id"]))
    for case in discover_cases()
    for stem, spec in proxies(case).items()
    if (case / f"{stem}.json").exists()
]


@pytest.fixture(scope="session")
def validations(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str | None]:
    """Envoy's verdict on every golden file (None = accepted)."""
    if ENVOY is None:
        pytest.skip("envoy binary not found")
    workdir = tmp_path_factory.mktemp("envoy-validate")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            path: pool.submit(validate, ENVOY, path, node_id, workdir, REPO_ROOT)
            for path, node_id in GOLDEN_FILES
        }
        return {path: future.result() for path, future in futures.items()}


@pytest.mark.parametrize(
    "path", [p for p, _ in GOLDEN_FILES], ids=[f"{p.parent.name}/{p.stem}" for p, _ in GOLDEN_FILES]
)
def test_envoy_accepts(path: Path, validations: dict[Path, str | None]) -> None:
    assert validations[path] is None, validations[path]
