"""ConfigStore: the last good version of every object, the current errors, and the MeshModel.

Bad input never reaches a proxy: an object that fails validation is reported and its last
good version stays in force. A second object with a key already taken by another file is a
duplicate: the first one wins and the second is reported (and takes over if the first goes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from meshplane.api.errors import InvalidObject, ValidationError
from meshplane.api.meta import ConfigKey, Object
from meshplane.api.registry import NOT_IN_MODEL, UnsupportedKind, config_key, parse
from meshplane.model.analysis import cross_object_warnings
from meshplane.model.changes import NO_CHANGE, Change
from meshplane.model.hosts import resolve_destination_rule, resolve_virtual_service
from meshplane.model.mesh import MeshConfig, MeshModel
from meshplane.model.mesh_config import effective_mesh_config
from meshplane.model.registry import REGISTRY_KINDS, ServiceRegistry
from meshplane.sources.events import Event, Op, SourceCleared, SourceError

log = logging.getLogger("meshplane.config")

CONFIG_KINDS = (
    "DestinationRule",
    "VirtualService",
    "Gateway",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Secret",
    "ConfigMap",  # only istio-system/istio (MeshConfig) is accepted
)
Item = Event | SourceError | SourceCleared


def _error_sort_key(e: ValidationError) -> tuple[Any, ...]:
    return (e.origin.path, e.origin.line, e.kind, e.namespace, e.name, e.field, e.reason)


def config_order(obj: Object[Any]) -> tuple[str, int, str, str]:
    """Istio's "oldest wins" order: creation time, then first appearance, then ns/name."""
    return (obj.meta.creation_timestamp, obj.seq, obj.namespace, obj.name)


class ConfigStore:
    """Feed it every source item with `apply`; read `mesh()` for the current model."""

    def __init__(self, mesh_config: MeshConfig | None = None) -> None:
        self.mesh_config = mesh_config or MeshConfig()
        self._registry = ServiceRegistry(self.mesh_config.dns_domain_suffix)
        self._objects: dict[ConfigKey, Object[Any]] = {}
        self._seq: dict[ConfigKey, int] = {}
        self._rejected: dict[ConfigKey, list[ValidationError]] = {}
        self._object_warnings: dict[ConfigKey, list[ValidationError]] = {}
        self._duplicates: dict[ConfigKey, dict[str, tuple[Event, ValidationError]]] = {}
        self._source_errors: dict[str, dict[int, ValidationError]] = {}
        self._logged: set[str] = set()
        self._version = 0
        self._mesh: MeshModel | None = None
        self._by_kind: dict[str, tuple[Object[Any], ...]] = {}
        self._dirty_kinds: set[str] = set(CONFIG_KINDS)
        self._changed_at: dict[ConfigKey, int] = {}

    # -- input --------------------------------------------------------------------------

    def apply_all(self, items: Iterable[Item]) -> Change:
        change = NO_CHANGE
        for item in items:
            change = change.merge(self.apply(item))
        return change

    def apply(self, item: Item) -> Change:
        """Apply one source item; the Change is empty unless the model changed."""
        if isinstance(item, SourceError):
            err = ValidationError(item.origin, "", "", "", "", item.reason)
            self._source_errors.setdefault(item.origin.path, {})[item.origin.doc_index] = err
            self._log_new()
            return NO_CHANGE
        if isinstance(item, SourceCleared):
            if self._source_errors.pop(item.path, None) is not None:
                self._log_new()
            return NO_CHANGE
        change = self._upsert(item) if item.op is Op.UPSERT else self._delete(item)
        self._log_new()
        if not change.is_empty:
            self._version += 1
            self._mesh = None
            for key in change.configs:  # O(objects changed): config status reads it
                if key in self._objects:
                    self._changed_at[key] = self._version
                else:
                    self._changed_at.pop(key, None)
        return change

    def _upsert(self, event: Event) -> Change:
        key = config_key(event.manifest)
        path = event.origin.path
        current = self._objects.get(key)
        if current is not None and current.origin.path != path:
            where = f"{current.origin}"
            dup = ValidationError(
                event.origin,
                key.kind,
                key.namespace,
                key.name,
                "metadata.name",
                f"duplicate: {key} is already defined at {where} (that one is in force)",
            )
            self._duplicates.setdefault(key, {})[path] = (event, dup)
            return NO_CHANGE
        seq = self._seq.setdefault(key, len(self._seq) + 1)
        try:
            obj, warnings = parse(event.manifest, event.origin, seq)
        except UnsupportedKind as exc:
            if exc.severity != "ignore":
                problem = ValidationError(
                    event.origin, key.kind, key.namespace, key.name, "", exc.reason, exc.severity
                )
                target = self._rejected if exc.severity == "error" else self._object_warnings
                target[key] = [problem]
            return NO_CHANGE
        except InvalidObject as exc:
            self._rejected[key] = exc.errors
            return NO_CHANGE
        self._rejected.pop(key, None)
        self._object_warnings[key] = warnings
        if current is not None and current.revision == obj.revision:
            self._objects[key] = obj  # keep its origin current for messages; same meaning
            return NO_CHANGE
        self._objects[key] = obj
        return self._effect(current, obj)

    def _delete(self, event: Event) -> Change:
        key = config_key(event.manifest)
        path = event.origin.path
        dups = self._duplicates.get(key, {})
        if path in dups:
            del dups[path]
            return NO_CHANGE
        current = self._objects.get(key)
        owned = current is not None and current.origin.path == path
        rejected = self._rejected.get(key)
        if rejected and (owned or current is None or rejected[0].origin.path == path):
            del self._rejected[key]
        if not owned:
            if current is None:
                self._object_warnings.pop(key, None)
            return NO_CHANGE
        assert current is not None
        del self._objects[key]
        self._object_warnings.pop(key, None)
        change = self._effect(current, None)
        if dups:  # the first duplicate in file order takes over
            path0 = min(dups)
            waiting, _ = dups.pop(path0)
            change = change.merge(self._upsert(waiting))
        return change

    def _effect(self, old: Object[Any] | None, new: Object[Any] | None) -> Change:
        obj = new or old
        assert obj is not None
        if obj.kind in REGISTRY_KINDS:
            return self._registry.apply(old, new)
        if obj.kind in NOT_IN_MODEL:
            return NO_CHANGE
        self._dirty_kinds.add(obj.kind)
        return Change(configs=frozenset({obj.key}))

    def _log_new(self) -> None:
        active = {str(e): e for e in self.errors()}
        for text, err in active.items():
            if text not in self._logged:
                log.error("%s", text, extra={"validation": err.to_dict()})
        self._logged = set(active)

    # -- reads --------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def errors(self) -> list[ValidationError]:
        """Every current error (rejected objects, unreadable files, duplicates), sorted."""
        found = [e for errs in self._rejected.values() for e in errs if e.severity == "error"]
        found += [e for docs in self._source_errors.values() for e in docs.values()]
        found += [err for dups in self._duplicates.values() for _, err in dups.values()]
        # Across objects: an accepted object that cannot work as written (a CUSTOM
        # AuthorizationPolicy whose provider is unknown, model/ext_authz.py).
        found += [e for e in self.mesh().warnings if e.severity == "error"]
        return sorted(found, key=_error_sort_key)

    def warnings(self) -> list[ValidationError]:
        """Warnings on single objects and across objects (conflicts, unknown references)."""
        found = [w for ws in self._object_warnings.values() for w in ws]
        found += [w for errs in self._rejected.values() for w in errs if w.severity != "error"]
        found += [w for w in self.mesh().warnings if w.severity != "error"]
        return sorted(found, key=_error_sort_key)

    def objects(self) -> list[Object[Any]]:
        """Accepted objects (including kinds accepted but not yet enforced), by key."""
        return sorted(self._objects.values(), key=lambda o: (o.kind, o.namespace, o.name))

    def changed_at(self, key: ConfigKey) -> int:
        """The model version at which this accepted object last changed meaning (0: never
        changed the model, e.g. a kind kept out of it)."""
        return self._changed_at.get(key, 0)

    def get(self, key: ConfigKey) -> Object[Any] | None:
        return self._objects.get(key)

    def mesh(self) -> MeshModel:
        """The current model; built lazily and cached until the next effective change."""
        if self._mesh is None:
            self._mesh = self._build()
        return self._mesh

    def _configs(self, kind: str) -> tuple[Object[Any], ...]:
        if kind in self._dirty_kinds:
            suffix = self.mesh_config.dns_domain_suffix
            objs = sorted((o for o in self._objects.values() if o.kind == kind), key=config_order)
            if kind == "VirtualService":
                objs = [resolve_virtual_service(o, suffix) for o in objs]
            elif kind == "DestinationRule":
                objs = [resolve_destination_rule(o, suffix) for o in objs]
            self._by_kind[kind] = tuple(objs)
            self._dirty_kinds.discard(kind)
        return self._by_kind[kind]

    def _build(self) -> MeshModel:
        services = self._registry.services()
        configmaps = self._configs("ConfigMap")
        mesh_config, mesh_warnings = effective_mesh_config(
            self.mesh_config, configmaps[0] if configmaps else None
        )
        model = MeshModel(
            version=self._version,
            services=services,
            endpoints=self._registry.endpoints(),
            destination_rules=self._configs("DestinationRule"),
            virtual_services=self._configs("VirtualService"),
            gateways=self._configs("Gateway"),
            sidecars=self._configs("Sidecar"),
            peer_authentications=self._configs("PeerAuthentication"),
            authorization_policies=self._configs("AuthorizationPolicy"),
            request_authentications=self._configs("RequestAuthentication"),
            credentials={(o.namespace, o.name): o.spec for o in self._configs("Secret")},
            mesh_config=mesh_config,
        )
        claims = {
            host: [self._objects[k] for k in keys if k in self._objects]
            for host, keys in self._registry.conflicts.items()
        }
        warnings = mesh_warnings + cross_object_warnings(model, claims)
        return MeshModel(**{**model.__dict__, "warnings": tuple(warnings)})
