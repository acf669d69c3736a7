"""``colony``: start the marketplace, seed it, and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colony.cli import chaos, faults, keys, mail, provider
from colony.cli import load as loading
from colony.cli import seed as seeding
from colony.cli import serve as serving
from colony.cli.companions import running_companions
from colony.composition import SERVICE_NAMES, service_definitions
from colony.distributed.plan import parse_replicas
from colony.distributed.running import running_distributed
from colony.platform.config import Settings
from colony.platform.errors import NotFound
from colony.platform.logging import configure_logging
from colony.platform.messaging.consumer import DeadLetter
from colony.platform.runtime import Runtime, Topology, collector
from colony.platform.security import Actor

app = typer.Typer(help="Colony: a marketplace of independent services.", no_args_is_help=True)
dlq = typer.Typer(help="Inspect and replay dead-lettered messages.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(provider.app, name="provider")
app.add_typer(mail.app, name="mail")
app.add_typer(faults.app, name="faults")
app.add_typer(chaos.app, name="chaos")
app.add_typer(keys.app, name="keys")
app.command("load")(loading.load)
projections = typer.Typer(help="The orders' read models.", no_args_is_help=True)
app.add_typer(projections, name="projections")
console = Console(stderr=True)

TopologyOption = Annotated[
    Path | None, typer.Option("--topology", help="A topology file (TOML); default: one process.")
]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def _settings(**overrides: Any) -> Settings:
    settings = Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _topology(settings: Settings, path: Path | None) -> Topology:
    path = path or settings.topology_file
    return Topology.load(path) if path else Topology.one_process()


@contextlib.asynccontextmanager
async def _services(
    settings: Settings, topology: Topology, identity: str = "cli"
) -> AsyncIterator[Runtime]:
    """The local services without relays or servers: for commands that drive them directly,
    calling as ``identity`` (what each service's list of allowed callers names)."""
    runtime = Runtime(settings, service_definitions(), topology, identity=identity)
    await runtime.start(background=False)
    try:
        yield runtime
    finally:
        await runtime.stop()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


async def _seed(runtime: Runtime, size: int) -> seeding.SeedReport:
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done)

        return await seeding.seed(runtime, size, progress)


def _print_logins() -> None:
    table = Table(title="Demo logins", show_edge=False)
    table.add_column("role")
    table.add_column("e-mail")
    table.add_column("password")
    table.add_row("buyer", "buyer01@colony.example … buyer05", seeding.BUYER_PASSWORD)
    table.add_row("seller", "seller01@colony.example … seller20", seeding.SELLER_PASSWORD)
    table.add_row("admin", "admin@colony.example", seeding.ADMIN_PASSWORD)
    console.print(table)


@app.command()
def seed(
    size: Annotated[
        int, typer.Option(help="How many listings to create.", min=1, max=1_000_000)
    ] = 2000,
    topology: TopologyOption = None,
) -> None:
    """Create deterministic demo data (accounts, listings in every category, stock)."""
    settings = _settings()

    async def main() -> None:
        async with _services(settings, _topology(settings, topology), "seed") as runtime:
            if await seeding.already_seeded(runtime):
                console.print("[yellow]The data directory is already seeded; nothing to do.")
                raise typer.Exit(0)
            started = time.perf_counter()
            report = await _seed(runtime, size)
            console.print(
                f"Seeded {report.listings:,} listings ({report.units:,} units) for"
                f" {report.sellers} sellers and {report.buyers} buyers"
                f" in {time.perf_counter() - started:.1f} s."
            )
        _print_logins()

    _run(main())


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port for the storefront and API.")] = None,
    topology: TopologyOption = None,
    seed_size: Annotated[int, typer.Option(help="Listings to seed on first start.")] = 2000,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="One supervised process per service, events over NATS JetStream.",
        ),
    ] = False,
    replicas: Annotated[
        str,
        typer.Option(help="With --distributed: processes per service, e.g. orders=3,inventory=2."),
    ] = "",
    fault_injection: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="Let `colony faults` inject faults into links, consumers and clocks"
            " (COLONY_FAULT_INJECTION).",
        ),
    ] = False,
) -> None:
    """Start the whole marketplace (one process by default); seeds demo data on first start."""
    settings = _settings(host=host, port=port, fault_injection=fault_injection or None)
    placement = _topology(settings, topology)
    try:
        counts = parse_replicas(replicas, SERVICE_NAMES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None
    if counts and not distributed:
        raise typer.BadParameter("replicas need --distributed", param_hint="--replicas")

    async def main() -> None:
        from colony.marketplace import running_marketplace

        started = time.perf_counter()
        # Seeding drives the services in this process, whatever the placement: nothing is
        # served yet for an HTTP binding to reach.
        async with _services(settings, Topology.one_process(), "seed") as runtime:
            if not await seeding.already_seeded(runtime):
                console.print("First start: seeding demo data…")
                await _seed(runtime, seed_size)
                _print_logins()
        stop = serving.stop_on_signals()
        async with contextlib.AsyncExitStack() as stack:
            notes = await stack.enter_async_context(running_companions(settings))
            if distributed:
                market: Any = await stack.enter_async_context(running_distributed(settings, counts))
                notes += [
                    f"{p.instance}: pid {c.pid}, {p.url}"
                    for p, c in zip(market.processes, market.supervisor.children, strict=True)
                ]
                notes.append(f"events: {market.nats_url}")
            else:
                market = await stack.enter_async_context(running_marketplace(settings, placement))
            collector.settle_after_start()
            console.print(
                f"[bold green]Colony is up[/] in {time.perf_counter() - started:.2f} s\n"
                f"  storefront  {market.url}/\n"
                f"  API docs    {market.url}/api/docs\n"
                f"  readiness   {market.url}/health/ready\n"
                f"  mail sink   http://127.0.0.1:{settings.mail_sink_http_port}/messages\n"
                + "".join(f"  ({note})\n" for note in notes)
                + "Press Ctrl-C to stop."
            )
            await stop.wait()
            console.print("Stopping…")
        console.print("Stopped.")

    _run(main())


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="A service's name, or gateway.")],
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    instance: Annotated[
        str | None, typer.Option(help="This replica's name (keep it across restarts).")
    ] = None,
    topology: TopologyOption = None,
) -> None:
    """Run one service (or the gateway) alone: a process of the multi-process topology."""
    settings = _settings(host=host, port=port, instance=instance)
    try:
        _run(serving.serve(settings, name, topology or settings.topology_file))
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None


@dlq.command("list")
def dlq_list(
    include_replayed: Annotated[bool, typer.Option(help="Show replayed ones too.")] = False,
    topology: TopologyOption = None,
) -> None:
    """Dead letters of every service, each asked through its own endpoint."""
    settings = _settings()

    async def main() -> None:
        async with _services(settings, _topology(settings, topology)) as runtime:
            table = Table(show_edge=False)
            for column in ("id", "consumer", "topic", "attempts", "failed at", "replayed", "error"):
                table.add_column(column)
            count = 0
            for name in sorted(runtime.definitions):
                letters = await runtime.operations(name).dead_letters(_OPERATOR, include_replayed)
                for letter in letters:
                    count += 1
                    table.add_row(
                        letter.id,
                        letter.consumer,
                        letter.topic,
                        str(letter.attempts),
                        letter.failed_at,
                        letter.replayed_at or "",
                        letter.error[:60],
                    )
            console.print(table if count else "No dead letters.")

    _run(main())


_OPERATOR = Actor.system("cli")
"""Who ``colony dlq`` asks as: the operator's command, acting as itself."""


async def _find(runtime: Runtime, dead_letter_id: str) -> tuple[str, DeadLetter]:
    """The service holding a dead letter, and the letter, asking each service in turn."""
    for name in sorted(runtime.definitions):
        try:
            return name, await runtime.operations(name).dead_letter(_OPERATOR, dead_letter_id)
        except NotFound:
            continue
    console.print(f"[red]No dead letter {dead_letter_id}.")
    raise typer.Exit(1)


@dlq.command("show")
def dlq_show(dead_letter_id: str, topology: TopologyOption = None) -> None:
    """One dead letter, with its message."""
    settings = _settings()

    async def main() -> None:
        import msgspec

        async with _services(settings, _topology(settings, topology)) as runtime:
            _, letter = await _find(runtime, dead_letter_id)
            console.print_json(msgspec.json.encode(letter).decode())

    _run(main())


@dlq.command("replay")
def dlq_replay(dead_letter_id: str, topology: TopologyOption = None) -> None:
    """Apply a dead letter again (its consumer's inbox still prevents a second effect)."""
    settings = _settings()

    async def main() -> None:
        async with _services(settings, _topology(settings, topology)) as runtime:
            service, _ = await _find(runtime, dead_letter_id)
            if await runtime.operations(service).replay(_OPERATOR, dead_letter_id):
                console.print(f"[green]Replayed {dead_letter_id}.")
            else:
                console.print(f"[red]{dead_letter_id} failed again; it stays dead-lettered.")
                raise typer.Exit(1)

    _run(main())


@projections.command("rebuild")
def projections_rebuild(topology: TopologyOption = None) -> None:
    """Rebuild the buyer histories and seller queues from the order events."""
    settings = _settings()

    async def main() -> None:
        from colony.services.orders.api import OrdersApi

        async with _services(settings, _topology(settings, topology)) as runtime:
            counts = await runtime.client(OrdersApi).rebuild_projections(Actor.system("cli"))
        for name, applied in counts.items():
            console.print(f"{name}: rebuilt from {applied:,} events")

    _run(main())


@app.command("verify")
def verify_command(
    outbox_bound: Annotated[
        float, typer.Option(help="Seconds an event may wait in an outbox.")
    ] = 30.0,
    topology: TopologyOption = None,
) -> None:
    """Check the running system against the invariants; exits 1 on any violation, and 3 when
    it could not check (a database it cannot read): that is neither a pass nor a violation."""
    settings = _settings()

    async def main() -> bool:
        from colony.verify import verify

        async with _services(settings, _topology(settings, topology), "verify") as runtime:
            checks = await verify(runtime, outbox_bound)
        table = Table(show_edge=False)
        for column in ("check", "result", "counts", "violations", "as of"):
            table.add_column(column)
        for check in checks:
            table.add_row(
                check.name,
                "[green]ok[/]" if check.ok else "[red]VIOLATED[/]",
                ", ".join(f"{k} {v:,}" for k, v in check.counts.items()),
                "\n".join(check.violations),
                # The moment of each service's snapshot that the check read.
                "\n".join(f"{name} {moment}" for name, moment in check.as_of.items()),
            )
        Console().print(table)
        return all(check.ok for check in checks)

    try:
        passed = _run(main())
    except Exception as exc:  # whatever kept it from reading: said, and told apart by the code
        console.print(f"[yellow]could not check: {exc.__class__.__name__}: {exc}[/]")
        raise typer.Exit(3) from None
    if not passed:
        raise typer.Exit(1)
