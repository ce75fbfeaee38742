"""`meshplane serve` settings as one frozen value.

A leaf module so that both the CLI (which parses flags into it) and the composition
root (`meshplane.app`, which runs from it) can import it without importing each other.
Defaults are DESIGN.md's contract.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "ServeOptions"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServeOptions:
    """Everything `meshplane serve` is told on its command line."""

    config_dirs: tuple[str, ...] = ()
    kubernetes: bool = False
    kubeconfig: str | None = None
    xds_address: str = "127.0.0.1:15010"
    xds_tls_address: str = "127.0.0.1:15012"
    http_address: str = "127.0.0.1:15014"
    state_dir: str = ".meshplane"
    trust_domain: str = "cluster.local"
    debounce_ms: int = 100
    debounce_max_ms: int = 10_000
    tls_sans: tuple[str, ...] = ()
    log_format: str = "text"
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format {self.log_format!r}: want one of {LOG_FORMATS}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r}: want one of {LOG_LEVELS}")
        if self.debounce_ms < 0 or self.debounce_max_ms < self.debounce_ms:
            raise ValueError("want 0 <= debounce_ms <= debounce_max_ms")
