"""Loading the capture rules into a real pod namespace and taking them out (root only)."""

from __future__ import annotations

import pytest
from netns_probes import pod_network

from meshplane.local.iptables import (
    CaptureConfig,
    IptablesError,
    apply_nat_rules,
    read_nat_rules,
    remove_nat_rules,
)

POLICIES = [
    "-P PREROUTING ACCEPT",
    "-P INPUT ACCEPT",
    "-P OUTPUT ACCEPT",
    "-P POSTROUTING ACCEPT",
]
# What `iptables -t nat -S` prints back for the default rules (it adds the implicit
# `-m tcp`, orders chains by name and moves -s/-d before -o).
EXPECTED_BACK = {
    "-N ISTIO_INBOUND",
    "-N ISTIO_IN_REDIRECT",
    "-N ISTIO_OUTPUT",
    "-N ISTIO_REDIRECT",
    "-A PREROUTING -p tcp -j ISTIO_INBOUND",
    "-A OUTPUT -j ISTIO_OUTPUT",
    "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
    "-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020,15000,2222 -j RETURN",
    "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
    "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
    "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner "
    "--uid-owner 1337 -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner "
    "--gid-owner 1337 -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
    "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
}


def _istio_rules(rules: list[str]) -> list[str]:
    return [r for r in rules if r not in POLICIES]


def test_apply_reads_back_twice_and_removes_cleanly() -> None:
    with pod_network() as net:
        pod = net.add_pod("iptables")
        cfg = CaptureConfig(exclude_inbound_ports=(2222,))
        apply_nat_rules(pod.netns, cfg)
        first = read_nat_rules(pod.netns)
        assert set(_istio_rules(first)) == EXPECTED_BACK
        assert len(_istio_rules(first)) == len(EXPECTED_BACK)
        # Applying again replaces, it does not duplicate.
        apply_nat_rules(pod.netns, cfg)
        assert read_nat_rules(pod.netns) == first
        remove_nat_rules(pod.netns)
        assert read_nat_rules(pod.netns) == POLICIES
        remove_nat_rules(pod.netns)  # nothing left to remove is fine
        # The node namespace (and so the root one) never got a rule.
        assert read_nat_rules(net.node_netns) == POLICIES


def test_a_failing_command_is_named_with_its_stderr() -> None:
    with pod_network() as net, pytest.raises(IptablesError) as err:
        apply_nat_rules(f"{net.tag}-missing", CaptureConfig())
    assert "ip netns exec" in str(err.value)
    assert f"{net.tag}-missing" in str(err.value)
