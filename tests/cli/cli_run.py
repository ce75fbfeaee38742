"""Run the installed `meshplane` console script as a subprocess without blocking the loop."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

MESHPLANE = str(Path(sys.executable).parent / "meshplane")
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


async def run_cli(*args: str, cwd: str | None = None) -> Done:
    proc = await asyncio.create_subprocess_exec(
        MESHPLANE,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
