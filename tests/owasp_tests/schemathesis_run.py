"""Running Schemathesis as its command, as a user would: the one way both fuzzing suites
(the gateway's API and a service's RPC surface) start it and read what it says."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
TESTS = Path(__file__).resolve().parent.parent
"""On the command's path, for its hooks (``owasp_tests.fuzzing_rules``)."""


async def run_schemathesis(
    workdir: Path, arguments: list[str], token: str | None, timeout_seconds: float
) -> tuple[int, str]:
    """``schemathesis run`` with every check, the configuration in ``workdir``, and
    ``token`` as the bearer if given: its exit code and its report."""
    args = [
        str(SCHEMATHESIS),
        "--config-file",
        str(workdir / "schemathesis.toml"),
        "--no-color",
        "run",
        *arguments,
        "--checks",
        "all",
    ]
    if token is not None:
        args += ["--header", f"Authorization: Bearer {token}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace")
