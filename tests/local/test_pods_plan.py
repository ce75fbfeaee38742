"""Planning `up`'s pods from Deployments: addresses per interception mode, the downward API
environment, `$(VAR)` expansion, and address slots that stay put when a Deployment scales."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshplane.local.pods import generated_config, plan_pods


def deployment(name: str, replicas: int = 1, app: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "serviceAccountName": "web-sa",
                    "containers": [
                        {
                            "command": ["python", "-m", "server"],
                            "args": ["--listen", "$(POD_IP):8000", "--name", "$(POD_NAME)"],
                            "env": [{"name": "GREETING", "value": "hi $(POD_NAMESPACE)"}],
                            "ports": [{"containerPort": 8000}],
                        }
                    ],
                },
            },
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8000}],
    },
}


def test_none_mode_gives_three_loopback_addresses_and_the_downward_api() -> None:
    [pod] = plan_pods([deployment("web-v1"), SERVICE], "NONE")
    assert (pod.name, pod.namespace, pod.service_account) == ("web-v1-0", "shop", "web-sa")
    assert (pod.ip, pod.loopback, pod.outbound) == ("127.0.10.1", "127.0.11.1", "127.0.12.1")
    assert pod.argv == (
        "python",
        "-m",
        "server",
        "--listen",
        "127.0.10.1:8000",
        "--name",
        "web-v1-0",
    )
    assert pod.env["GREETING"] == "hi shop"
    assert pod.env["POD_OUTBOUND"] == "127.0.12.1"
    assert [(p.number, p.name, p.protocol) for p in pod.ports] == [(8000, "http", "HTTP")]


def test_redirect_mode_gives_one_bridge_ip_and_no_loopback_hints() -> None:
    [pod] = plan_pods([deployment("web-v1")], "REDIRECT")
    assert (pod.ip, pod.loopback, pod.outbound) == ("10.88.0.10", "", "")
    assert "POD_LOOPBACK" not in pod.env and "POD_OUTBOUND" not in pod.env
    docs = list(yaml.safe_load_all(generated_config([pod], "REDIRECT")))
    assert [d["kind"] for d in docs] == ["WorkloadEntry"]  # no Sidecar: iptables captures
    assert docs[0]["spec"]["labels"]["security.istio.io/tlsMode"] == "istio"
    none_docs = list(yaml.safe_load_all(generated_config([pod], "NONE")))
    assert [d["kind"] for d in none_docs] == ["WorkloadEntry", "Sidecar"]


def test_scaling_keeps_every_running_pods_address() -> None:
    before = plan_pods([deployment("api", 1, "api"), deployment("web", 2)], "REDIRECT")
    assert [(p.name, p.ip) for p in before] == [
        ("api-0", "10.88.0.10"),
        ("web-0", "10.88.0.11"),
        ("web-1", "10.88.0.12"),
    ]
    slots = {p.name: p.index for p in before}
    # api scales up: its new pod must not take web's addresses.
    after = plan_pods([deployment("api", 2, "api"), deployment("web", 2)], "REDIRECT", slots)
    assert {p.name: p.ip for p in after} == {
        "api-0": "10.88.0.10",
        "api-1": "10.88.0.13",
        "web-0": "10.88.0.11",
        "web-1": "10.88.0.12",
    }
    # web scales down: the freed slot is reused by the next new pod.
    slots = {p.name: p.index for p in after}
    down = plan_pods([deployment("api", 2, "api"), deployment("web", 1)], "REDIRECT", slots)
    assert {p.name: p.ip for p in down} == {
        "api-0": "10.88.0.10",
        "api-1": "10.88.0.13",
        "web-0": "10.88.0.11",
    }
    again = plan_pods(
        [deployment("api", 3, "api"), deployment("web", 1)],
        "REDIRECT",
        {p.name: p.index for p in down},
    )
    assert {p.name: p.ip for p in again}["api-2"] == "10.88.0.12"


def test_bad_replicas_is_an_error_naming_the_deployment() -> None:
    bad = deployment("web")
    bad["spec"]["replicas"] = "many"
    with pytest.raises(ValueError, match=r"Deployment web: bad spec\.replicas"):
        plan_pods([bad])
