"""Object metadata and the generic typed-object envelope shared by every kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshplane.sources.events import Origin

S = TypeVar("S")


@dataclass(frozen=True)
class ConfigKey:
    """Identity of a config object: kind plus namespace/name (versions of an API share a key)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectMeta:
    """The parts of Kubernetes ObjectMeta that the mesh uses."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    creation_timestamp: str = ""
    resource_version: str = ""
    generation: int = 0


@dataclass(frozen=True, eq=False)
class Object(Generic[S]):
    """A validated object of any kind.

    `revision` is a content hash of what the object means (spec, labels, the
    annotations that matter), so later stages can tell a real change from a
    rewrite of the same file. `seq` orders objects by first appearance, which
    breaks ties the way Istio's creationTimestamp does ("oldest wins").
    """

    kind: str
    api_version: str
    meta: ObjectMeta
    spec: S
    origin: Origin
    revision: str
    seq: int = 0

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.kind, self.meta.namespace, self.meta.name)

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def name(self) -> str:
        return self.meta.name
