"""`meshplane bootstrap`: the Envoy bootstrap a sidecar or gateway starts from."""

from meshplane.bootstrap.build import bootstrap, bootstrap_dict, render_json
from meshplane.bootstrap.options import BadBootstrapOptions, BootstrapOptions, parse_labels

__all__ = [
    "BadBootstrapOptions",
    "BootstrapOptions",
    "bootstrap",
    "bootstrap_dict",
    "parse_labels",
    "render_json",
]
