"""The processes `meshplane up` starts: each by PID, its output in a log file, all stopped.

A child that exits is fatal for `up`, except one started with `restart=True` (the control
plane): that one is started again, as a Kubernetes deployment of istiod would be, so the
mesh shows what happens when its control plane dies - Envoys keep their last config and
resync when it is back.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "Supervisor", "http_get", "wait_until"]

RESTART_DELAY_S = 1.0


@dataclass
class Child:
    """One started process and how to start it again."""

    name: str
    cmd: list[str]
    env: dict[str, str] | None
    proc: subprocess.Popen[bytes]
    restart: bool = False
    restarts: int = 0
    died_at: float | None = None


class Supervisor:
    """Starts processes, remembers their PIDs, and stops all of them (and only them)."""

    def __init__(self, logdir: Path, say: Callable[[str], None] = print) -> None:
        self.logdir = logdir
        self.children: list[Child] = []
        self.say = say

    def _spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        try:
            return subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        finally:
            log.close()  # the child has its own copy

    def start(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        restart: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` with output to LOGDIR/NAME.log; `restart` brings it back if it dies."""
        child = Child(name, cmd, env, self._spawn(name, cmd, env), restart=restart)
        self.children.append(child)
        return child.proc

    def pid(self, name: str) -> int:
        """The current PID of the child called `name`."""
        return next(c.proc.pid for c in self.children if c.name == name)

    def check(self) -> None:
        """Raise if a child died (restartable ones are started again after a short delay)."""
        now = time.monotonic()
        for child in self.children:
            if child.proc.poll() is None:
                continue
            if not child.restart:
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode}; "
                    f"see {self.logdir}/{child.name}.log"
                )
            if child.died_at is None:
                child.died_at = now
                self.say(f"  {child.name} exited ({child.proc.returncode}); restarting it")
            elif now - child.died_at >= RESTART_DELAY_S:
                child.proc = self._spawn(child.name, child.cmd, child.env)
                child.restarts += 1
                child.died_at = None

    def stop_child(self, name: str) -> None:
        """SIGTERM the child called `name` (SIGKILL after 5 s) and forget it."""
        leaving = [c for c in self.children if c.name == name]
        self.children = [c for c in self.children if c.name != name]
        _terminate(leaving)

    def stop(self) -> None:
        """SIGTERM every child still running (newest first), SIGKILL after 5 s."""
        _terminate(list(reversed(self.children)))


def _terminate(children: list[Child]) -> None:
    """SIGTERM each running child in order, then wait; SIGKILL what is left after 5 s."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    deadline = time.monotonic() + 5
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET `url`: (status, body), or (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError:
        return 0, b""


def wait_until(what: str, ok: Callable[[], bool], sup: Supervisor, timeout: float = 60.0) -> None:
    """Poll `ok()` every 100 ms until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check()
        if ok():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
