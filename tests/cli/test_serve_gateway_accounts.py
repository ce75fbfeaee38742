"""`serve --gateway-service-account NS/SA`: which Kubernetes accounts may run gateways."""

from __future__ import annotations

import pytest

from meshplane.cli.parser import build_parser
from meshplane.cli.serve_cmd import options_from_args
from meshplane.options import DEFAULT_GATEWAY_SERVICE_ACCOUNTS


def _options(*flags: str) -> object:
    return options_from_args(build_parser().parse_args(["serve", *flags]))


def test_default_is_istios_gateway_accounts() -> None:
    options = options_from_args(build_parser().parse_args(["serve", "--kubernetes"]))
    assert options.gateway_service_accounts == DEFAULT_GATEWAY_SERVICE_ACCOUNTS
    assert (
        "istio-system",
        "istio-ingressgateway-service-account",
    ) in DEFAULT_GATEWAY_SERVICE_ACCOUNTS


def test_listed_accounts_replace_the_default() -> None:
    args = ["serve", "--kubernetes", "--gateway-service-account", "edge/gw"]
    args += ["--gateway-service-account", "istio-system/istio-ingressgateway-service-account"]
    options = options_from_args(build_parser().parse_args(args))
    assert options.gateway_service_accounts == (
        ("edge", "gw"),
        ("istio-system", "istio-ingressgateway-service-account"),
    )


@pytest.mark.parametrize("bad", ["gw", "/gw", "edge/", "a/b/c", "edge/gw:x"])
def test_bad_accounts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/SERVICE_ACCOUNT"):
        _options("--kubernetes", "--gateway-service-account", bad)


def test_needs_kubernetes(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="needs --kubernetes"):
        _options("--config-dir", str(tmp_path), "--gateway-service-account", "edge/gw")
