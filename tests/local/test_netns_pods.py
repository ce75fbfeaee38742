"""Pods in network namespaces with Istio's capture rules, on real sockets (root only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from netns_probes import CAPTURE_PROBE, CLIENT_PROBE, pod_network, processes, python, run

from meshplane.local import netns
from meshplane.local.iptables import apply_nat_rules
from meshplane.local.netns import NetnsError, PodNetwork, sweep

VIP = "10.96.0.10"


def _netns_list() -> str:
    return run(["ip", "netns", "list"])


def _link_names() -> set[str]:
    return {line.split(":")[1].strip() for line in run(["ip", "-o", "link"]).splitlines()}


def test_outbound_and_inbound_capture_between_two_pods() -> None:
    with pod_network() as net, processes() as procs:
        hosts = {"svc-b": VIP, "svc-b.default.svc.cluster.local": VIP}
        a = net.add_pod("pod-a", hosts=hosts)
        b = net.add_pod("pod-b")
        apply_nat_rules(a.netns)
        apply_nat_rules(b.netns)
        # Pod B's "sidecar": the inbound listener. Pod A's: the outbound one, as uid 1337,
        # which forwards to pod B's IP as Envoy would after picking an endpoint.
        procs.start(net.exec_prefix(b, uid=1337) + python(CAPTURE_PROBE, "15006"))
        procs.start(net.exec_prefix(a, uid=1337) + python(CAPTURE_PROBE, "15001", f"{b.ip}:9080"))
        out = run(net.exec_prefix(a) + python(CLIENT_PROBE, "svc-b", "9080", "hello"))
        outbound, inbound = out.strip().split(" | ")
        # The app resolved the VIP from the pod's hosts file and was captured with it intact.
        assert outbound == f"{VIP} port=15001 uid=1337 orig={VIP}:9080 got=hello"
        # The proxy's own connection left unredirected and was captured inbound at pod B.
        assert inbound == f"port=15006 uid=1337 orig={b.ip}:9080 got=hello"


def test_pod_files_run_as_uid_and_isolation() -> None:
    root_links = _link_names()
    with pod_network() as net:
        pod = net.add_pod("files", hosts={"reviews": "10.96.0.11", "ratings": "10.96.0.12"})
        assert net.add_pod("files") is pod  # idempotent
        assert pod.ip == str(net.network[2]) and net.bridge_ip == str(net.network[1])
        out = run([*net.exec_prefix(pod, uid=1337), "sh", "-c", "id -u; id -g; id -G"])
        assert out.split() == ["1337", "1337", "1337"]
        assert run([*net.exec_prefix(pod), "getent", "hosts", "ratings"]).split() == [
            "10.96.0.12",
            "ratings",
        ]
        # A name not in the hosts file fails inside the pod (no DNS server reachable).
        missing = subprocess.run(
            [*net.exec_prefix(pod), "getent", "hosts", "example.invalid"], timeout=10
        )
        assert missing.returncode != 0
        routes = run(["ip", "-n", pod.netns, "route", "show", "default"])
        assert f"via {net.bridge_ip}" in routes
        # The bridge and the veths live in the node and pod namespaces, none in the root one.
        assert _link_names() == root_links
        assert netns.BRIDGE in run(["ip", "-n", net.node_netns, "-o", "link"])
        with pytest.raises(ValueError):
            net.add_pod("node")
        with pytest.raises(ValueError):
            net.add_pod("other", ip=pod.ip)


def test_teardown_leaves_nothing_and_is_idempotent() -> None:
    with pod_network() as net:
        pods = [net.add_pod(name) for name in ("one", "two")]
        (net.run_dir / "bootstrap.json").write_text("{}")  # a caller's per-run file
        assert all(p.netns in _netns_list() for p in pods)
        removed = net.teardown()
        assert sorted(removed) == sorted([pods[0].netns, pods[1].netns, net.node_netns])
        assert net.tag not in _netns_list()
        assert not any(Path("/etc/netns", p.netns).exists() for p in pods)
        assert not net.run_dir.exists()
        assert net.run_dir == netns.DEFAULT_STATE_DIR / net.tag
        assert net.teardown() == []


def test_sweep_removes_dead_runs_only() -> None:
    with pod_network() as live, pod_network() as dead:
        live.add_pod("alive")
        dead.add_pod("crashed")
        # The dead run's owner is a pid that cannot exist.
        (netns.DEFAULT_STATE_DIR / dead.tag / "owner").write_text("999999999 1\n")
        removed = sweep()
        assert f"{dead.tag}-crashed" in removed and dead.node_netns in removed
        listed = _netns_list()
        assert dead.tag not in listed
        assert f"{live.tag}-alive" in listed and live.node_netns in listed
        assert not Path("/etc/netns", f"{dead.tag}-crashed").exists()


def test_errors_name_the_failing_command() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    net = PodNetwork(subnet="10.89.0.0/16")
    try:
        net.create()
        net.add_pod("dup", ip="10.89.0.5")
        with pytest.raises(NetnsError) as err:
            # Same namespace name again through a second PodNetwork with the same run id.
            PodNetwork(net.tag.removeprefix(netns.DEFAULT_PREFIX)).add_pod("dup")
        assert "ip netns add" in str(err.value) and "dup" in str(err.value)
    finally:
        net.teardown()
