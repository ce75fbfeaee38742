"""The rendered capture rules: Istio's exact list, and what they do to a given packet.

`verdict` walks the rendered nat rules the way netfilter does for the matches istio-iptables
uses, so the tests assert where a connection goes, not only which strings are present.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from meshplane.local.iptables import CaptureConfig, render_nat_rules

# `istio-iptables -p 15001 -z 15006 -u 1337 -g 1337 -m REDIRECT -i '*' -b '*'
# -d 15090,15021,15020` as Istio 1.2x renders it (its capture testdata), with 15000 added
# to the inbound exclusions as meshplane does.
ISTIO_SIDECAR_RULES = """\
*nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020,15000 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 \
-j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 \
-j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
"""


@dataclass(frozen=True)
class Packet:
    """The first packet of a TCP connection, as the nat table sees it."""

    dst: str
    dport: int
    src: str = "10.88.0.2"
    oif: str = "eth0"
    uid: int = 0
    gid: int = 0
    proto: str = "tcp"


def _matches(words: list[str], pkt: Packet) -> bool:
    """Whether every match in one rule's words (after `-A CHAIN`, before `-j`) holds."""
    i, negate = 0, False
    while i < len(words):
        word = words[i]
        if word == "!":
            negate, i = True, i + 1
            continue
        if word == "-m":  # the match's options follow
            i += 2
            continue
        value = words[i + 1]
        if word == "-p":
            ok = pkt.proto == value
        elif word == "-o":
            ok = pkt.oif == value
        elif word in ("-s", "-d"):
            addr = pkt.src if word == "-s" else pkt.dst
            ok = ipaddress.ip_address(addr) in ipaddress.ip_network(value)
        elif word == "--dport":
            ok = pkt.dport == int(value)
        elif word == "--dports":
            ok = pkt.dport in {int(p) for p in value.split(",")}
        elif word == "--uid-owner":
            ok = pkt.uid == int(value)
        elif word == "--gid-owner":
            ok = pkt.gid == int(value)
        else:
            raise AssertionError(f"the test does not know the match {word}")
        if ok == negate:
            return False
        i, negate = i + 2, False
    return True


def verdict(rules: str, chain: str, pkt: Packet) -> str:
    """What the nat table does to `pkt` entering `chain`: "REDIRECT PORT" or "ACCEPT"."""
    by_chain: dict[str, list[list[str]]] = {}
    for line in rules.splitlines():
        if line.startswith("-A "):
            words = shlex.split(line)
            by_chain.setdefault(words[1], []).append(words[2:])
    return _walk(by_chain, chain, pkt, depth=0) or "ACCEPT"


def _walk(by_chain: dict[str, list[list[str]]], chain: str, pkt: Packet, depth: int) -> str:
    assert depth < 10, "jump loop"
    for words in by_chain.get(chain, []):
        j = words.index("-j")
        if not _matches(words[:j], pkt):
            continue
        target = words[j + 1]
        if target == "RETURN":
            return ""
        if target == "REDIRECT":
            return f"REDIRECT {words[words.index('--to-ports') + 1]}"
        result = _walk(by_chain, target, pkt, depth + 1)
        if result:
            return result
    return ""


def test_default_rules_are_istio_sidecar_rules() -> None:
    assert render_nat_rules() == ISTIO_SIDECAR_RULES


def test_app_outbound_goes_to_15001() -> None:
    rules = render_nat_rules()
    assert verdict(rules, "OUTPUT", Packet(dst="10.96.0.10", dport=9080)) == "REDIRECT 15001"
    # Any destination and port: the capture is not limited to known services.
    assert verdict(rules, "OUTPUT", Packet(dst="8.8.8.8", dport=443)) == "REDIRECT 15001"


def test_proxy_outbound_is_not_redirected() -> None:
    rules = render_nat_rules()
    envoy = Packet(dst="10.88.0.3", dport=9080, uid=1337, gid=1337)
    assert verdict(rules, "OUTPUT", envoy) == "ACCEPT"
    # The gid alone exempts too (a proxy run with another uid but the proxy group).
    assert verdict(rules, "OUTPUT", Packet(dst="10.88.0.3", dport=9080, gid=1337)) == "ACCEPT"


def test_proxy_calling_its_own_pod_ip_goes_inbound() -> None:
    rules = render_nat_rules()
    own_ip = Packet(dst="10.88.0.2", dport=9080, oif="lo", uid=1337, gid=1337)
    assert verdict(rules, "OUTPUT", own_ip) == "REDIRECT 15006"


def test_loopback_traffic_and_inbound_passthrough_stay_local() -> None:
    rules = render_nat_rules()
    # Envoy's inbound cluster connects to the app from 127.0.0.6.
    passthrough = Packet(src="127.0.0.6", dst="10.88.0.2", dport=9080, oif="lo", uid=1337)
    assert verdict(rules, "OUTPUT", passthrough) == "ACCEPT"
    # The app talking to itself or to localhost.
    assert verdict(rules, "OUTPUT", Packet(dst="10.88.0.2", dport=9080, oif="lo")) == "ACCEPT"
    local = Packet(src="127.0.0.1", dst="127.0.0.1", dport=15000, oif="lo")
    assert verdict(rules, "OUTPUT", local) == "ACCEPT"


def test_inbound_goes_to_15006_except_istio_ports() -> None:
    rules = render_nat_rules()
    assert verdict(rules, "PREROUTING", Packet(dst="10.88.0.2", dport=9080)) == "REDIRECT 15006"
    for port in (15090, 15021, 15020, 15000, 15008):
        assert verdict(rules, "PREROUTING", Packet(dst="10.88.0.2", dport=port)) == "ACCEPT"
    udp = Packet(dst="10.88.0.2", dport=9080, proto="udp")
    assert verdict(rules, "PREROUTING", udp) == "ACCEPT"


def test_caller_excludes_and_custom_ports() -> None:
    many = tuple(range(20000, 20020))
    cfg = CaptureConfig(
        proxy_uid=999,
        proxy_gid=998,
        outbound_port=16001,
        inbound_port=16006,
        exclude_inbound_ports=(22, *many),
        exclude_outbound_ports=(15012,),
    )
    rules = render_nat_rules(cfg)
    pod = "10.88.0.2"
    assert verdict(rules, "PREROUTING", Packet(dst=pod, dport=22)) == "ACCEPT"
    assert verdict(rules, "PREROUTING", Packet(dst=pod, dport=20019)) == "ACCEPT"
    assert verdict(rules, "PREROUTING", Packet(dst=pod, dport=80)) == "REDIRECT 16006"
    assert verdict(rules, "OUTPUT", Packet(dst="10.88.0.1", dport=15012)) == "ACCEPT"
    assert verdict(rules, "OUTPUT", Packet(dst="10.88.0.1", dport=15014)) == "REDIRECT 16001"
    assert verdict(rules, "OUTPUT", Packet(dst="10.1.1.1", dport=80, uid=999)) == "ACCEPT"
    assert verdict(rules, "OUTPUT", Packet(dst="10.1.1.1", dport=80, uid=1337)) == (
        "REDIRECT 16001"
    )
    # iptables' multiport takes at most 15 ports per rule.
    for line in rules.splitlines():
        if "--dports" in line:
            assert len(line.split("--dports ")[1].split()[0].split(",")) <= 15
