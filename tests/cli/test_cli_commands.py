"""CLI wiring: serve's flags become ServeOptions, analyze's report, unimplemented commands."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from cli_run import run_cli

from meshplane.api.errors import ValidationError
from meshplane.cli import main
from meshplane.cli.analyze_cmd import report
from meshplane.options import ServeOptions
from meshplane.sources.events import Origin


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[ServeOptions]:
    """Stand in for meshplane.app (the lead's composition root) and record its options."""
    seen: list[ServeOptions] = []

    def run(options: ServeOptions) -> int:
        seen.append(options)
        return 0

    module: Any = types.ModuleType("meshplane.app")
    module.run = run
    monkeypatch.setitem(sys.modules, "meshplane.app", module)
    return seen


def test_serve_defaults_are_the_contracts(fake_app: list[ServeOptions]) -> None:
    assert main(["serve", "--config-dir", "cfg"]) == 0
    assert fake_app == [
        ServeOptions(
            config_dirs=("cfg",),
            xds_address="127.0.0.1:15010",
            xds_tls_address="127.0.0.1:15012",
            http_address="127.0.0.1:15014",
            state_dir=".meshplane",
            trust_domain="cluster.local",
            debounce_ms=100,
            debounce_max_ms=10000,
            log_format="text",
        )
    ]


def test_serve_every_flag(fake_app: list[ServeOptions]) -> None:
    argv = [
        "serve", "--config-dir", "a", "--config-dir", "b", "--xds-address", "127.0.0.1:1",
        "--xds-tls-address", "127.0.0.1:2", "--http-address", "127.0.0.1:3",
        "--state-dir", "/tmp/s", "--trust-domain", "example.org", "--debounce-ms", "5",
        "--debounce-max-ms", "50", "--tls-san", "x.example", "--tls-san", "10.0.0.1",
        "--log-format", "json", "--log-level", "debug",
    ]  # fmt: skip
    assert main(argv) == 0
    (opts,) = fake_app
    assert opts.config_dirs == ("a", "b")
    assert (opts.xds_address, opts.xds_tls_address, opts.http_address) == (
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
    )
    assert (opts.state_dir, opts.trust_domain) == ("/tmp/s", "example.org")
    assert (opts.debounce_ms, opts.debounce_max_ms) == (5, 50)
    assert opts.tls_sans == ("x.example", "10.0.0.1")
    assert (opts.log_format, opts.log_level) == ("json", "debug")


def test_serve_kubernetes(fake_app: list[ServeOptions]) -> None:
    assert main(["serve", "--kubernetes", "--kubeconfig", "/k"]) == 0
    assert (fake_app[0].kubernetes, fake_app[0].kubeconfig) == (True, "/k")


def test_serve_needs_a_config_source(
    fake_app: list[ServeOptions], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    assert "--config-dir" in capsys.readouterr().err
    assert fake_app == []


def _problem(path: str, line: int, severity: str) -> ValidationError:
    return ValidationError(
        Origin(path, line=line), "VirtualService", "default", "reviews",
        "spec.http[0].route[0].weight", "weights must add up to 100", severity,
    )  # fmt: skip


def test_report_errors_exit_1_warnings_exit_0() -> None:
    error, warning = _problem("b.yaml", 3, "error"), _problem("a.yaml", 9, "warning")
    lines, status = report([error, warning, error])
    assert status == 1
    assert lines == [
        "a.yaml:9: warning: VirtualService default/reviews spec.http[0].route[0].weight: "
        "weights must add up to 100",
        "b.yaml:3: error: VirtualService default/reviews spec.http[0].route[0].weight: "
        "weights must add up to 100",
    ]
    assert report([warning]) == (lines[:1], 0)
    assert report([]) == (["no problems found"], 0)


async def test_up_refuses_a_missing_example_dir(tmp_path: Path) -> None:
    done = await run_cli("up", str(tmp_path / "missing"))
    assert done.code == 2
    assert "not a directory" in done.err
    assert done.out == ""


REPO = Path(__file__).parents[2]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def test_analyze_good_config_finds_no_problems(tmp_path: Path) -> None:
    pytest.importorskip("meshplane.model.load")
    _write(
        tmp_path / "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: reviews, namespace: default}\nspec: {host: reviews}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n"
        "spec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080}]\n",
    )
    done = await run_cli("analyze", str(tmp_path))
    assert done.code == 0, done.out + done.err
    assert done.out.strip() == "no problems found"


async def test_analyze_warnings_print_but_exit_0(tmp_path: Path) -> None:
    pytest.importorskip("meshplane.model.load")
    _write(
        tmp_path / "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: reviews, namespace: default}\nspec: {host: reviews}\n",
    )
    done = await run_cli("analyze", str(tmp_path))
    assert done.code == 0, done.out + done.err
    (line,) = done.out.splitlines()
    assert line.startswith(f"{tmp_path / 'dr.yaml'}:1: warning: DestinationRule default/reviews")


async def test_analyze_rejected_object_exits_1_naming_file_object_and_field(
    tmp_path: Path,
) -> None:
    pytest.importorskip("meshplane.model.load")
    bad = _write(
        tmp_path / "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: default}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"
        "      weight: -5\n",
    )
    done = await run_cli("analyze", str(tmp_path))
    assert done.code == 1, done.out + done.err
    (line,) = [x for x in done.out.splitlines() if ": error: " in x]
    assert line.startswith(f"{bad}:")
    assert "VirtualService default/reviews" in line
    assert "weight" in line
