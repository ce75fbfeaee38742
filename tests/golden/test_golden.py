"""One test per golden case: the translated output of every proxy equals the committed JSON,
the input's validation errors equal errors.txt, and every output is self-consistent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from harness import (
    discover_cases,
    expected_errors,
    render_case,
    write_case,
)

from tests.fixtures.consistency import consistency_problems

CASES = discover_cases()
MODEL_READY = all(
    importlib.util.find_spec(m) is not None
    for m in ("meshplane.model.load", "meshplane.model.views")
)


@pytest.mark.skipif(not MODEL_READY, reason="meshplane.model.load/views not available yet")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path, update_golden: bool) -> None:
    rendered = render_case(case)
    for stem, resources in rendered.resources.items():
        assert consistency_problems(resources) == [], stem
    if update_golden:
        write_case(case, rendered)
    assert rendered.errors == expected_errors(case)
    committed = {p.stem for p in case.glob("*.json")}
    assert committed == set(rendered.outputs), "stale or missing outputs: run `make golden`"
    for stem, text in rendered.outputs.items():
        assert (case / f"{stem}.json").read_text() == text, f"{case.name}/{stem}.json differs"


def test_cases_exist() -> None:
    assert CASES, "no golden cases found"
