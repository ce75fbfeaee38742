"""What `meshplane up` runs: pods planned from an example's `apps/v1` Deployments.

An example describes its workloads as a Kubernetes user would: Deployments (name,
namespace, `replicas`, pod template labels, `serviceAccountName`, one container's
`command`/`args`/`env`/`ports`) next to the Services that select them. The config loader
ignores Deployments (not mesh config); `up` reads them here and gives each replica a pod.

Pod addresses depend on the interception mode. REDIRECT (root): each pod has its own
network namespace and one IP on a bridge (10.88.0.N); iptables sends its traffic through
its sidecar, so the app listens on 0.0.0.0 and calls services by name. NONE (no root,
Istio's VM mode): pods share the host's loopback, so each pod N gets three addresses: a
pod IP 127.0.10.N, where its sidecar's inbound listeners take the container ports as the
Service endpoints; a pod loopback 127.0.11.N, where the app listens; and an outbound
address 127.0.12.N, where the sidecar's outbound listeners bind and the app sends its calls
(apart from the app's listeners, since both use the services' ports).
For each pod `up` writes a WorkloadEntry (the endpoint, labels, service account), and in
NONE mode also a Sidecar resource (ingress/egress listeners with `bind`), as Istio has for a
VM.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshplane.model.protocols import port_protocol

__all__ = ["POD_LABEL", "Pod", "generated_config", "plan_pods", "read_manifests"]

# A label naming one pod, so that each pod's Sidecar resource selects only that pod (as
# StatefulSets' `statefulset.kubernetes.io/pod-name` does).
POD_LABEL = "meshplane.io/pod"
POD_IP_PREFIX = "127.0.10."
POD_LOOPBACK_PREFIX = "127.0.11."
POD_OUTBOUND_PREFIX = "127.0.12."
# REDIRECT mode: .1 is the bridge, pods from .10 on.
REDIRECT_POD_PREFIX = "10.88.0."
REDIRECT_FIRST_HOST = 10
MAX_PODS = 240
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class InboundPort:
    """A container port and the protocol its Service port gives it."""

    number: int
    name: str
    protocol: str


@dataclass(frozen=True)
class Pod:
    """One replica of a Deployment: its identity, addresses and the process to run."""

    name: str
    namespace: str
    service_account: str
    labels: Mapping[str, str]
    ip: str
    loopback: str  # NONE mode only: where the app listens ("" in REDIRECT mode)
    outbound: str  # NONE mode only: where the app sends its calls
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[InboundPort, ...] = ()
    index: int = 0  # its address slot: kept while the pod exists, reused after it is gone


def read_manifests(example: Path) -> list[dict[str, Any]]:
    """Every YAML document in the example's *.yaml / *.yml files (sorted by file name)."""
    docs: list[dict[str, Any]] = []
    files = sorted([*example.glob("*.yaml"), *example.glob("*.yml")])
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                docs.append(doc)
    return docs


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _inbound_ports(
    container: Mapping[str, Any],
    services: list[Mapping[str, Any]],
    ns: str,
    labels: Mapping[str, str],
) -> tuple[InboundPort, ...]:
    """Container ports, each with the name/protocol of a Service port that targets it."""
    found = []
    for cport in container.get("ports") or ():
        number, cname = int(cport["containerPort"]), str(cport.get("name") or "")
        name, protocol = cname or f"tcp-{number}", port_protocol(cname) if cname else "TCP"
        for svc in services:
            spec = svc.get("spec") or {}
            if _namespace(svc) != ns or not _selects(spec.get("selector") or {}, labels):
                continue
            for sport in spec.get("ports") or ():
                target = sport.get("targetPort", sport.get("port"))
                if target in (number, str(number)) or (cname and target == cname):
                    name = str(sport.get("name") or name)
                    protocol = port_protocol(name, sport.get("appProtocol"))
        found.append(InboundPort(number, name, protocol))
    return tuple(found)


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command and args (unknown names stay as written)."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def pod_addresses(mode: str, index: int) -> tuple[str, str, str]:
    """(pod IP, app address, outbound address) of pod number `index` in `mode`."""
    if mode == "REDIRECT":
        return f"{REDIRECT_POD_PREFIX}{REDIRECT_FIRST_HOST + index}", "", ""
    n = index + 1
    return f"{POD_IP_PREFIX}{n}", f"{POD_LOOPBACK_PREFIX}{n}", f"{POD_OUTBOUND_PREFIX}{n}"


def _pod(
    deployment: Mapping[str, Any],
    replica: int,
    index: int,
    services: list[Mapping[str, Any]],
    mode: str,
) -> Pod:
    name = f"{deployment['metadata']['name']}-{replica}"
    ns = _namespace(deployment)
    template = deployment["spec"]["template"]
    labels = {**((template.get("metadata") or {}).get("labels") or {}), POD_LABEL: name}
    pod_spec = template.get("spec") or {}
    sa = str(pod_spec.get("serviceAccountName") or "default")
    container = (pod_spec.get("containers") or [{}])[0]
    ip, loopback, outbound = pod_addresses(mode, index)
    # The downward API's values, plus, without a netns, where to listen and call.
    env = {"POD_NAME": name, "POD_NAMESPACE": ns, "POD_IP": ip, "SERVICE_ACCOUNT": sa}
    if mode == "NONE":
        env |= {"POD_LOOPBACK": loopback, "POD_OUTBOUND": outbound}
    for var in container.get("env") or ():
        env[str(var["name"])] = _expand(str(var.get("value", "")), env)
    argv = [*(container.get("command") or ()), *(container.get("args") or ())]
    if not argv:
        raise ValueError(f"Deployment {ns}/{name}: the container has no command")
    return Pod(
        index=index,
        name=name,
        namespace=ns,
        service_account=sa,
        labels=labels,
        ip=ip,
        loopback=loopback,
        outbound=outbound,
        argv=tuple(_expand(str(a), env) for a in argv),
        env=env,
        ports=_inbound_ports(container, services, ns, labels),
    )


def plan_pods(
    manifests: Iterable[Mapping[str, Any]],
    mode: str = "NONE",
    indexes: Mapping[str, int] | None = None,
) -> list[Pod]:
    """One Pod per replica of each Deployment, in a stable order (ValueError if malformed).

    `mode` is the interception mode (NONE or REDIRECT), which decides the addresses;
    `indexes` gives pods that already run their address slots (a Deployment scaled while
    `up` runs must not move the others), new pods take the lowest free slots.
    """
    docs = list(manifests)
    services = [d for d in docs if d.get("kind") == "Service"]
    deployments = sorted(
        (d for d in docs if d.get("kind") == "Deployment"),
        key=lambda d: (_namespace(d), d["metadata"]["name"]),
    )
    wanted: list[tuple[Mapping[str, Any], int, str]] = []
    for deployment in deployments:
        meta = deployment.get("metadata") or {}
        try:
            replicas = int((deployment.get("spec") or {}).get("replicas", 1))
        except (TypeError, ValueError):
            raise ValueError(f"Deployment {meta.get('name', '?')}: bad spec.replicas") from None
        wanted += [(deployment, r, f"{meta.get('name')}-{r}") for r in range(replicas)]
    if len(wanted) > MAX_PODS:
        raise ValueError(f"{len(wanted)} pods: at most {MAX_PODS} fit in one /24")
    names = {name for _, _, name in wanted}
    kept = {name: i for name, i in (indexes or {}).items() if name in names}
    free = (i for i in range(MAX_PODS) if i not in kept.values())
    pods: list[Pod] = []
    for deployment, replica, name in wanted:
        index = kept[name] if name in kept else next(free)
        try:
            pods.append(_pod(deployment, replica, index, services, mode))
        except (KeyError, TypeError, IndexError) as exc:
            meta = deployment.get("metadata") or {}
            raise ValueError(f"Deployment {meta.get('name', '?')}: missing {exc}") from None
    return pods


def _workload_entry(pod: Pod) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
        "spec": {
            "address": pod.ip,
            "serviceAccount": pod.service_account,
            # The label auto mTLS looks for: this endpoint runs a sidecar.
            "labels": {**pod.labels, "security.istio.io/tlsMode": "istio"},
        },
    }


def _sidecar(pod: Pod) -> dict[str, Any]:
    ingress = [
        {
            "port": {"number": p.number, "name": p.name, "protocol": p.protocol},
            "bind": pod.ip,
            "defaultEndpoint": f"{pod.loopback}:{p.number}",
        }
        for p in pod.ports
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
        "spec": {
            "workloadSelector": {"labels": {POD_LABEL: pod.name}},
            "ingress": ingress,
            # No port: one outbound listener per port of every imported service, on the
            # pod's outbound address, where the app sends its calls.
            "egress": [{"bind": pod.outbound, "hosts": ["*/*"]}],
        },
    }


def generated_config(pods: Iterable[Pod], mode: str = "NONE") -> str:
    """The WorkloadEntries (and in NONE mode Sidecars) for `pods`, as one YAML file."""
    docs = []
    for pod in pods:
        docs += [_workload_entry(pod), _sidecar(pod)] if mode == "NONE" else [_workload_entry(pod)]
    header = f"# Written by `meshplane up` (INTERCEPTION_MODE={mode}): the pods.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False)
