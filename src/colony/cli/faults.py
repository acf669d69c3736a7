"""``colony faults``: inject faults into a running topology and heal them.

``inject SPEC --duration 30s`` injects, waits (with a progress bar) and heals; without a
duration the fault stays until ``heal`` — except a held fault (a database outage), which lasts
while the command runs and is healed when it stops (Ctrl-C, or ``heal`` from elsewhere).
Nonsense (an unknown fault or service, a negative duration) exits 2; a fault that could not be
injected or healed, or no running topology, exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from colony.faults import (
    FAMILIES,
    Fault,
    FaultSpecError,
    InjectionFailed,
    NotHealed,
    RunningTopology,
    TopologyNotRunning,
    fault_from_spec,
    heal_everything,
)
from colony.faults.ledger import Ledger
from colony.faults.spec import parse_duration
from colony.faults.topology import process_state

app = typer.Typer(
    help="Inject faults into a running topology, and heal them.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="COLONY_DATA_DIR",
        help="The running topology's data directory (where processes.json is).",
    ),
]
DEFAULT_DATA_DIR = Path("var/data")
_HOLDER_STOP_SECONDS = 120.0


def _nonsense(message: str) -> typer.Exit:
    err.print(f"[red]{message}")
    return typer.Exit(2)


def _failed(message: str) -> typer.Exit:
    err.print(f"[red]{message}")
    return typer.Exit(1)


def _topology(data_dir: Path) -> RunningTopology:
    try:
        return RunningTopology.load(data_dir)
    except TopologyNotRunning as exc:
        raise _failed(str(exc)) from None


def _fault(spec: str, topology: RunningTopology) -> Fault:
    try:
        return fault_from_spec(spec, topology)
    except FaultSpecError as exc:
        raise _nonsense(str(exc)) from None


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return asyncio.run(coro)
    except (InjectionFailed, NotHealed) as exc:
        raise _failed(f"{type(exc).__name__}: {exc}") from None
    except FaultSpecError as exc:
        raise _nonsense(str(exc)) from None


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@app.command("list")
def list_families() -> None:
    """The fault families, their grammar and examples."""
    table = Table(show_edge=False, show_lines=True)
    for column in ("family", "spec", "examples", "what it does"):
        table.add_column(column)
    for family in FAMILIES:
        table.add_row(family.name, family.grammar, "\n".join(family.examples), family.summary)
    out.print(table)
    out.print(
        "TARGET: a service (every process of it) or one process (orders-2). DURATION: a number"
        " and a unit (200ms, 1.5s, 2m). SHARE: 0.3 or 30%. Quote a spec with -> or | in a"
        " shell. Link, delivery and clock faults need the topology started with"
        " `colony up --distributed --faults`."
    )


@app.command()
def inject(
    spec: Annotated[str, typer.Argument(help="The fault, e.g. latency:orders->payments:200ms.")],
    duration: Annotated[
        str | None,
        typer.Option(help="Heal after this long (30s, 2m; a bare number is seconds)."),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Inject a fault; with --duration, wait and heal it."""
    seconds = None if duration is None else _duration(duration)
    topology = _topology(data_dir)
    fault = _fault(spec, topology)
    ledger = Ledger(data_dir)

    async def main() -> None:
        stop = _stop_event()
        await fault.inject()
        err.print(f"[yellow]Injected[/] {fault.spec}: {fault.description}")
        if seconds is not None:
            await _wait(stop, seconds, fault.spec)
        elif fault.held:
            ledger.add(fault.spec, fault.description, holder_pid=os.getpid())
            err.print("Held while this command runs: Ctrl-C (or `colony faults heal`) heals it.")
            try:
                await stop.wait()
            finally:
                ledger.remove(fault.spec, holder_pid=os.getpid())
        else:
            ledger.add(fault.spec, fault.description)
            err.print(f"It stays until `colony faults heal {fault.spec}`.")
            return
        await fault.heal()
        err.print(f"[green]Healed[/] {fault.spec}")

    _run(main())


def _duration(text: str) -> float:
    if text.strip().startswith("-"):
        raise _nonsense(f"--duration cannot be negative; got {text!r}")
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_duration(text, "--duration")
        except FaultSpecError as exc:
            raise _nonsense(str(exc)) from None
    if not 0 <= seconds < float("inf"):
        raise _nonsense(f"--duration is a length of time, 0 or more; got {text!r}")
    return seconds


async def _wait(stop: asyncio.Event, seconds: float, spec: str) -> None:
    """``seconds``, with a progress bar; Ctrl-C ends the wait early (and the fault is healed)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(spec, total=seconds)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds and not stop.is_set():
            progress.update(task, completed=elapsed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.2, seconds - elapsed)):
                    await stop.wait()


@app.command()
def heal(
    spec: Annotated[str | None, typer.Argument(help="The fault as it was injected.")] = None,
    heal_all: Annotated[
        bool, typer.Option("--all", help="Heal every fault, known or not.")
    ] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Heal one fault (by its spec), or every one (--all)."""
    if (spec is None) == (not heal_all):
        raise _nonsense("give a fault's SPEC, or --all (not both)")
    topology = _topology(data_dir)
    ledger = Ledger(data_dir)
    faults = [_fault(spec, topology)] if spec is not None else []

    async def main() -> None:
        problems: list[str] = []
        entries = ledger.entries()
        for fault in faults:
            if fault.held:
                holders = [e.holder_pid for e in entries if e.spec == fault.spec]
                await _stop_holders([pid for pid in holders if pid is not None])
            else:
                await fault.heal()
            ledger.remove(fault.spec)
            err.print(f"[green]Healed[/] {fault.spec}")
        if heal_all:
            await _stop_holders([e.holder_pid for e in entries if e.holder_pid is not None])
            for entry in entries:
                if entry.holder_pid is None:
                    try:
                        await fault_from_spec(entry.spec, topology).heal()
                    except (FaultSpecError, NotHealed) as exc:
                        problems.append(f"{entry.spec}: {exc}")
            problems += await heal_everything(topology)
            ledger.remove()
            err.print("[green]Healed[/] every fault" + (" but:" if problems else "."))
        for problem in problems:
            err.print(f"  [red]{problem}")
        if problems:
            raise NotHealed("; ".join(problems))

    _run(main())


async def _stop_holders(pids: list[int]) -> None:
    """Ask each ``colony faults inject`` holding a fault to stop, which heals it; wait."""
    for pid in pids:
        if _is_fault_holder(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _HOLDER_STOP_SECONDS
    while any(_is_fault_holder(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise NotHealed(f"the commands holding faults ({pids}) did not stop")
        await asyncio.sleep(0.1)


def _is_fault_holder(pid: int) -> bool:
    """Whether ``pid`` is a live ``colony faults inject``: the only processes a heal stops."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"faults" in argv and b"inject" in argv and process_state(pid) not in (None, "Z")


@app.command()
def status(data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """The topology's processes, the faults each one holds, and those `inject` left."""
    topology = _topology(data_dir)

    async def main() -> None:
        tables = await _fault_tables(topology)
        table = Table(show_edge=False)
        for column in ("process", "pid", "state", "restarts", "address", "faults in it"):
            table.add_column(column)
        for name, process in topology.processes.items():
            pid = topology.owned_pid(name)
            if pid is None:
                state = "[red]down"
            else:
                state = "[yellow]paused" if process_state(pid) == "T" else "running"
            table.add_row(
                name, str(pid or ""), state, str(process.restarts), process.url, tables[name]
            )
        out.print(table)
        entries = Ledger(data_dir).entries()
        if entries:
            out.print("Left by `colony faults inject`:")
            for entry in entries:
                held = f" (held by pid {entry.holder_pid})" if entry.holder_pid else ""
                out.print(f"  {entry.spec}{held}: {entry.description}, since {entry.injected_at}")

    _run(main())


async def _fault_tables(topology: RunningTopology) -> dict[str, str]:
    timeout = aiohttp.ClientTimeout(total=3.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(url: str) -> str:
            if not url.startswith("http"):
                return ""
            try:
                async with session.get(url + "/admin/faults") as response:
                    if response.status == 404:
                        return "(takes no faults)"
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return "(no answer)"
            return "\n".join(_describe(f) for f in body.get("faults", [])) or "none"

        names = list(topology.processes)
        found = await asyncio.gather(*(one(topology.processes[n].url) for n in names))
    return dict(zip(names, found, strict=True))


def _describe(fault: dict[str, Any]) -> str:
    details = ", ".join(f"{k}={v}" for k, v in fault.items() if k not in ("kind", "id"))
    return f"{fault.get('kind')} ({details})"
