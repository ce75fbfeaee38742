"""`meshplane up` following its example dir: Services and Deployments edited while it runs.

The control plane watches the mesh config itself; what it cannot do is what Kubernetes'
own controllers do: give pods the Services' names (REDIRECT mode's /etc/hosts) and run the
pods a Deployment asks for. `reconcile_pods` is that controller: a replica added starts a
pod (network, app, sidecar), a replica removed leaves the endpoints first and stops a
second later, a pod whose template changed is replaced in its address slot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from meshplane.local.modes import Mode
from meshplane.local.pods import generated_config, plan_pods, read_manifests
from meshplane.local.processes import Mesh

__all__ = ["DRAIN_S", "example_signature", "follow_example"]

# Time for the control plane (debounce 50 ms) to push the endpoints without a leaving pod
# before its processes stop: requests in flight finish, new ones go elsewhere.
DRAIN_S = 1.0


def example_signature(example: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a manifest is written, added or removed (names, mtimes, sizes)."""
    found = []
    for path in sorted([*example.glob("*.yaml"), *example.glob("*.yml")]):
        try:
            st = path.stat()
        except OSError:
            continue  # removed between the glob and the stat: the next poll sees it
        found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


def follow_example(mesh: Mesh, mode: Mode, example: Path, generated: Path) -> None:
    """After an edit: the Services' names in every pod, then the Deployments' pods."""
    try:
        manifests = read_manifests(example)
    except (OSError, ValueError, yaml.YAMLError):
        return  # the control plane reports a bad file; pods keep what they have
    changed = mode.refresh(manifests)
    if changed:
        print(f"  pods' /etc/hosts updated: {', '.join(changed)}", flush=True)
    reconcile_pods(mesh, mode, manifests, generated)


def reconcile_pods(mesh: Mesh, mode: Mode, manifests: list[Any], generated: Path) -> None:
    """Start the pods the Deployments now ask for and stop those they no longer do."""
    try:
        pods = plan_pods(manifests, mode.name, {n: p.index for n, p in mesh.pods.items()})
    except ValueError as exc:
        print(f"  Deployments not applied: {exc}", flush=True)
        return
    wanted = {p.name: p for p in pods}
    leaving = [name for name, pod in mesh.pods.items() if wanted.get(name) != pod]
    coming = [p for p in pods if mesh.pods.get(p.name) != p]
    if not pods or not (leaving or coming):
        return  # an example without Deployments is a mistake being typed: keep the pods
    (generated / "pods.yaml").write_text(generated_config(pods, mode.name))
    if leaving:
        time.sleep(DRAIN_S)
    for name in leaving:
        mesh.stop_pod(name)
        mode.remove_pod(name)
    for pod in coming:
        mode.add_pod(pod)
        mesh.start_pod(pod)
    summary = [f"-{n}" for n in leaving if n not in wanted] + [f"+{p.name}" for p in coming]
    print(f"  pods: {' '.join(summary)}", flush=True)
