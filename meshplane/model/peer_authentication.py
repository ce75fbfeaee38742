"""Which PeerAuthentication applies to a workload, and the mTLS mode it ends up with.

Istio's precedence (pilot/pkg/security/authn, ComposePeerAuthentication): the mesh policy
(root namespace, no selector) sets the base, PERMISSIVE without one; the namespace policy
(no selector) overrides it; the oldest workload policy of the proxy's namespace whose
selector matches overrides that. UNSET at any level inherits from the level above, and a
workload policy's `portLevelMtls` overrides its mode per workload port (UNSET there
inherits the workload's mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from meshplane.api.meta import Object
from meshplane.api.security.peer_authentication import PeerAuthenticationSpec
from meshplane.model.scope import InboundMtls
from meshplane.model.workloads import selects

PA = Object[PeerAuthenticationSpec]
DEFAULT_MODE = "PERMISSIVE"


def _oldest(policies: Iterable[PA]) -> PA | None:
    return next(iter(policies), None)  # the model keeps config oldest first


def applicable_policies(
    policies: Sequence[PA], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> tuple[PA | None, PA | None, PA | None]:
    """(mesh, namespace, workload) policies for a workload of `namespace` with `labels`."""
    mesh = _oldest(p for p in policies if p.namespace == root_namespace and not p.spec.selector)
    local = [p for p in policies if p.namespace == namespace]
    ns = _oldest(p for p in local if not p.spec.selector)
    workload = _oldest(p for p in local if p.spec.selector and selects(p.spec.selector, labels))
    return mesh, ns, workload


def _inherit(mode: str, parent: str) -> str:
    return parent if mode == "UNSET" else mode


def inbound_mtls(
    policies: Sequence[PA], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> InboundMtls:
    """The effective inbound mTLS settings of one workload."""
    mode = DEFAULT_MODE
    mesh, ns, workload = applicable_policies(policies, namespace, labels, root_namespace)
    for policy in (mesh, ns, workload):
        if policy is not None:
            mode = _inherit(policy.spec.mode, mode)
    ports: tuple[tuple[int, str], ...] = ()
    if workload is not None:
        ports = tuple(
            (port, _inherit(m, mode)) for port, m in sorted(workload.spec.port_mtls.items())
        )
    return InboundMtls(mode=mode, ports=ports)
