"""Traffic capture for a pod: the nat rules of Istio's init container (istio-iptables).

A sidecar in REDIRECT mode only sees the pod's traffic because the kernel hands it every TCP
connection: inbound ones to 15006, outbound ones to 15001, with the original destination kept
for SO_ORIGINAL_DST. `render_nat_rules` writes the same rules, in the same chains and order,
as `istio-iptables -p 15001 -z 15006 -u 1337 -g 1337 -m REDIRECT -i '*' -b '*'
-d 15090,15021,15020` (the sidecar injector's defaults; Istio 1.2x), as `iptables-restore`
input; `apply_nat_rules` loads them in a pod's network namespace and `remove_nat_rules`
takes them out again, touching nothing but the ISTIO_* chains and the two jumps to them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CHAINS",
    "DEFAULT_INBOUND_EXCLUDES",
    "CaptureConfig",
    "IptablesError",
    "apply_nat_rules",
    "read_nat_rules",
    "remove_nat_rules",
    "render_nat_rules",
]

# Istio's own ports that stay reachable without the proxy's inbound listener: Prometheus
# merged stats (15090), health (15021), merged agent metrics (15020) - what the injector passes
# as `-d` - plus Envoy's admin port (15000), which `up` reads from outside the pod.
DEFAULT_INBOUND_EXCLUDES: tuple[int, ...] = (15090, 15021, 15020, 15000)
# HBONE (ambient's tunnel port): istio-iptables always leaves it alone, so do we.
HBONE_PORT = 15008
CHAINS: tuple[str, ...] = ("ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT")
# The source address Envoy binds to when it forwards inbound traffic to the app.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"
LOCALHOST = "127.0.0.1/32"
# iptables' multiport match takes at most 15 ports.
_MULTIPORT_MAX = 15
_JUMPS: tuple[tuple[str, ...], ...] = (
    ("PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"),
    ("OUTPUT", "-j", "ISTIO_OUTPUT"),
)


class IptablesError(RuntimeError):
    """An iptables command failed; the message names the command and carries its stderr."""


@dataclass(frozen=True)
class CaptureConfig:
    """What istio-iptables is told: proxy ports, the proxy's uid/gid and the exclusions."""

    proxy_uid: int = 1337
    proxy_gid: int = 1337
    outbound_port: int = 15001
    inbound_port: int = 15006
    # Inbound ports never captured: always DEFAULT_INBOUND_EXCLUDES plus these.
    exclude_inbound_ports: tuple[int, ...] = ()
    # Outbound destination ports never captured (istio-iptables `-o`).
    exclude_outbound_ports: tuple[int, ...] = ()

    def inbound_excludes(self) -> tuple[int, ...]:
        """Every inbound port left uncaptured, defaults first, without duplicates."""
        return tuple(dict.fromkeys((*DEFAULT_INBOUND_EXCLUDES, *self.exclude_inbound_ports)))


def _port_matches(ports: Sequence[int]) -> list[str]:
    """`--dport P` for one port, `-m multiport --dports A,B,...` per 15 ports otherwise."""
    if len(ports) == 1:
        return [f"--dport {ports[0]}"]
    return [
        "-m multiport --dports " + ",".join(str(p) for p in ports[i : i + _MULTIPORT_MAX])
        for i in range(0, len(ports), _MULTIPORT_MAX)
    ]


def _owner_rules(kind: str, ident: int) -> list[str]:
    """The three rules istio-iptables writes per proxy uid (kind "uid") or gid ("gid")."""
    owner = f"--{kind}-owner {ident}"
    return [
        # The proxy calling its own pod's IP (an app calling its own service) goes back in
        # through the inbound listener, as traffic from another pod would.
        f"-A ISTIO_OUTPUT -o lo ! -d {LOCALHOST} -p tcp ! --dport {HBONE_PORT} "
        f"-m owner {owner} -j ISTIO_IN_REDIRECT",
        # The app talking to itself over loopback is not captured.
        f"-A ISTIO_OUTPUT -o lo -m owner ! {owner} -j RETURN",
        # The proxy's own outbound connections leave unredirected (no loop).
        f"-A ISTIO_OUTPUT -m owner {owner} -j RETURN",
    ]


def render_nat_rules(config: CaptureConfig | None = None) -> str:
    """The `iptables-restore --noflush` input (nat table) that captures a pod's TCP."""
    cfg = config or CaptureConfig()
    lines = ["*nat", *(f"-N {chain}" for chain in CHAINS)]
    lines += [
        f"-A ISTIO_INBOUND -p tcp --dport {HBONE_PORT} -j RETURN",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {cfg.outbound_port}",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {cfg.inbound_port}",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
    ]
    lines += [
        f"-A ISTIO_INBOUND -p tcp {m} -j RETURN" for m in _port_matches(cfg.inbound_excludes())
    ]
    lines += ["-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT", "-A OUTPUT -j ISTIO_OUTPUT"]
    if cfg.exclude_outbound_ports:
        for proto in ("tcp", "udp"):
            lines += [
                f"-A ISTIO_OUTPUT -p {proto} {m} -j RETURN"
                for m in _port_matches(cfg.exclude_outbound_ports)
            ]
    lines.append(f"-A ISTIO_OUTPUT -o lo -s {INBOUND_PASSTHROUGH_SOURCE} -j RETURN")
    lines += _owner_rules("uid", cfg.proxy_uid)
    lines += _owner_rules("gid", cfg.proxy_gid)
    lines += [f"-A ISTIO_OUTPUT -d {LOCALHOST} -j RETURN", "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IptablesError(f"{' '.join(argv)}: {exc}") from exc


def _check(argv: Sequence[str], stdin: str | None = None) -> str:
    done = _run(argv, stdin)
    if done.returncode != 0:
        raise IptablesError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout}"
        )
    return done.stdout


def apply_nat_rules(
    netns: str, config: CaptureConfig | None = None, *, iptables: str = "iptables"
) -> None:
    """Load the capture rules in `netns`, replacing any earlier ones (idempotent)."""
    remove_nat_rules(netns, iptables=iptables)
    _check(_in_netns(netns, [f"{iptables}-restore", "--noflush"]), render_nat_rules(config))


def remove_nat_rules(netns: str, *, iptables: str = "iptables") -> None:
    """Delete the jumps to and the ISTIO_* chains in `netns`; absent ones are fine."""
    rules = read_nat_rules(netns, iptables=iptables)
    present = set(_chains(rules))
    for jump in _JUMPS:
        # Deleted as often as `-S` lists it (twice after a crash between two applies).
        for _ in range(rules.count("-A " + " ".join(jump))):
            _check(_in_netns(netns, [iptables, "-t", "nat", "-D", *jump]))
    for chain in CHAINS:
        if chain in present:
            _check(_in_netns(netns, [iptables, "-t", "nat", "-F", chain]))
    for chain in CHAINS:
        if chain in present:
            _check(_in_netns(netns, [iptables, "-t", "nat", "-X", chain]))


def read_nat_rules(netns: str, *, iptables: str = "iptables") -> list[str]:
    """`iptables -t nat -S` in `netns`, one rule or chain declaration per item."""
    out = _check(_in_netns(netns, [iptables, "-t", "nat", "-S"]))
    return [line for line in out.splitlines() if line.strip()]


def _chains(rules: Iterable[str]) -> list[str]:
    return [line.split()[1] for line in rules if line.startswith("-N ")]
