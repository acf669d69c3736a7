"""``colony chaos``: load, a fault, and the proof that nothing was lost.

``run`` starts a multi-process topology of its own (or uses one already running), runs load,
injects one fault at a set time, heals it, waits for the orders to end and checks the
invariants; it writes the report as JSON and as an HTML page. ``matrix`` does that for every
fault family in turn, against one topology, and prints one table. ``sweep`` needs no topology:
it reruns a checkout, cancellation or refund once per call between services and per way that
call can fail (see :mod:`colony.chaos.sweep`).
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from colony.chaos import deployment as deployments
from colony.chaos.matrix import FAULTS, REPLICAS, MatrixRow, run_matrix
from colony.chaos.report import save
from colony.chaos.run import ChaosConfig, ChaosReport, run_chaos
from colony.faults import FaultSpecError
from colony.faults.spec import parse

app = typer.Typer(help="Faults under load, and the invariants checked after each.")
# A report is read in logs and CI output too, where no terminal says how wide to be.
out = Console(width=None if sys.stdout.isatty() else 180)
err = Console(stderr=True)

Rate = Annotated[float, typer.Option(help="Arrivals a second (30 % of them checkouts).")]
Duration = Annotated[float, typer.Option(help="Seconds of load.")]
FaultAt = Annotated[float, typer.Option(help="Seconds into the load when the fault starts.")]
FaultFor = Annotated[float, typer.Option(help="Seconds the fault lasts before it is healed.")]
Database = Annotated[str, typer.Option(help="sqlite or postgresql (the machine's server).")]
Replicas = Annotated[str, typer.Option(help="Processes per service, e.g. orders=2,inventory=2.")]
Out = Annotated[Path | None, typer.Option(help="Folder for the reports (default var/chaos/…).")]


def _config(
    fault: str, *, rate: float, duration: float, fault_at: float, fault_for: float
) -> ChaosConfig:
    try:
        config = ChaosConfig(
            fault=fault, rate=rate, duration=duration, fault_at=fault_at, fault_for=fault_for
        )
        for phase in config.phases:
            parse(phase)
        return config
    except (FaultSpecError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _check_database(database: str) -> None:
    if database not in deployments.DATABASES:
        err.print(f"[red]--database must be one of {', '.join(deployments.DATABASES)}[/]")
        raise typer.Exit(2)


def _folder(out_dir: Path | None, kind: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return out_dir or Path("var/chaos") / f"{kind}-{stamp}"


@app.command()
def run(
    fault: Annotated[
        str,
        typer.Option(
            help="The fault, e.g. kill:payments (see colony faults list); several in turn"
            " joined by ' then ', e.g. 'provider:latency:1500ms then provider:outage'."
        ),
    ],
    rate: Rate = 20.0,
    duration: Duration = 60.0,
    fault_at: FaultAt = 20.0,
    fault_for: FaultFor = 15.0,
    database: Database = "sqlite",
    replicas: Replicas = REPLICAS,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the reports.")] = None,
) -> None:
    """One fault under load; exit 1 when a check fails."""
    config = _config(fault, rate=rate, duration=duration, fault_at=fault_at, fault_for=fault_for)
    _check_database(database)
    folder = _folder(out_dir, "run")

    async def main() -> ChaosReport:
        with deployments.started(_data_dir(folder), replicas, database) as running:
            return await run_chaos(config, running, progress=lambda m: err.print(f"… {m}"))

    report = asyncio.run(main())
    data, page = save(report, folder, "report")
    _print_checks(report)
    out.print(f"report: {page} (and {data.name})")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def matrix(
    rate: Rate = 10.0,
    duration: Duration = 30.0,
    fault_at: FaultAt = 8.0,
    fault_for: FaultFor = 10.0,
    database: Database = "sqlite",
    replicas: Replicas = REPLICAS,
    only: Annotated[
        str, typer.Option(help="Comma-separated faults instead of every family's.")
    ] = "",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the reports.")] = None,
) -> None:
    """Every fault family in turn, one table; exit 1 when any check fails."""
    faults = [f.strip() for f in only.split(",") if f.strip()] or list(FAULTS)
    for fault in faults:
        _config(fault, rate=rate, duration=duration, fault_at=fault_at, fault_for=fault_for)
    template = _config(
        faults[0], rate=rate, duration=duration, fault_at=fault_at, fault_for=fault_for
    )
    _check_database(database)
    folder = _folder(out_dir, "matrix")
    count = iter(range(1, len(faults) + 1))

    def keep(report: ChaosReport) -> None:
        name = f"{next(count):02d}-{report.config.fault.replace(':', '_').replace('>', '')}"
        save(report, folder, name.replace("|", "_").replace("/", "_"))

    async def main() -> list[MatrixRow]:
        with deployments.started(_data_dir(folder), replicas, database) as running:
            return await run_matrix(
                running, template, faults, keep, progress=lambda m: err.print(f"… {m}")
            )

    rows = asyncio.run(main())
    table = Table(title=f"colony chaos matrix ({database}, {replicas})", show_edge=False)
    for column in (
        "fault",
        "result",
        "orders",
        "checkouts failed",
        "cancelled (machinery)",
        "throughput before→during",
        "back to 90 %",
        "checkout p99 during",
        "provider req/order",
        "last order ended",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.fault,
            "[green]ok[/]" if r.ok else "[red]FAILED: " + ", ".join(r.failed_checks) + "[/]",
            str(r.acknowledged),
            str(r.checkouts_failed),
            f"{r.cancelled} ({r.cancelled_by_machinery})",
            f"{r.throughput_before:g}→{r.throughput_during:g}/s",
            _maybe(r.recovered_after_heal_s, "s"),
            _maybe(r.checkout_p99_during_ms, "ms"),
            _maybe(r.provider_requests_per_order, ""),
            _maybe(r.last_ended_after_heal_s, "s after heal", "before heal"),
        )
    out.print(table)
    (folder / "matrix.json").write_bytes(msgspec.json.encode(rows))
    out.print(f"reports: {folder}")
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)


def _data_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="topology-", dir=folder))


def _print_checks(report: ChaosReport) -> None:
    table = Table(title=f"chaos run: {report.fault}", show_edge=False)
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAILED[/]", check.detail)
    out.print(table)
    t = report.throughput
    out.print(
        f"throughput {t.before:g} → {t.during:g} → {t.after:g}/s; back to 90 % "
        f"{_maybe(t.recovered_after_heal_s, 's after the heal')}; checkout p99 during "
        f"{_maybe(t.checkout_p99_during_ms, 'ms')}; provider requests/order "
        f"{_maybe(report.provider_requests_per_order, '')}; cancelled "
        f"{report.orders.cancelled} of {report.orders.acknowledged}"
    )


def _maybe(value: float | None, unit: str, none: str = "—") -> str:
    return none if value is None else f"{value:g} {unit}".strip()


@app.command("sweep")
def sweep_command(
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="A scenario to sweep (repeatable); default: every one."),
    ] = None,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated fault kinds; default: all four.")
    ] = "unavailable,timeout-before,timeout-after,duplicate",
    pairs: Annotated[int, typer.Option(help="Pairs of faults sampled per scenario.", min=0)] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the pairs' sample.")] = 0,
) -> None:
    """Every call between services of each scenario, broken in each way, one run each in a
    fresh marketplace (Filibuster's method); exit 1 on any violation."""
    import shutil
    from typing import cast

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from colony.chaos.interpose import FAULT_KINDS, FaultKind
    from colony.chaos.sweep import SCENARIOS, Sweep, SweepReport, sweep_settings
    from colony.cli.companions import running_companions
    from colony.platform.config import Settings
    from colony.platform.logging import configure_logging
    from colony.platform.web.server import free_port

    names = scenario or list(SCENARIOS)
    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    wrong = [n for n in names if n not in SCENARIOS] + [k for k in chosen if k not in FAULT_KINDS]
    if wrong or not chosen:
        err.print(
            f"[red]Unknown: {', '.join(wrong) or 'no fault kinds'}. Scenarios:"
            f" {', '.join(SCENARIOS)}; kinds: {', '.join(FAULT_KINDS)}.[/]"
        )
        raise typer.Exit(2)
    configure_logging("error", json=True)
    workdir = Path(tempfile.mkdtemp(prefix="colony-sweep-"))
    # Companions of its own, on free ports: a marketplace already running keeps its own.
    base = Settings.from_env(
        data_dir=str(workdir),
        payment_provider_url=f"http://127.0.0.1:{free_port()}",
        smtp_port=free_port(),
        mail_sink_http_port=free_port(),
    )

    async def main() -> list[SweepReport]:
        reports = []
        async with running_companions(base):
            runner = Sweep(lambda data_dir: sweep_settings(base, data_dir), workdir)
            with Progress(
                TextColumn("[bold]{task.description:<14}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
            ) as bar:
                for name in names:
                    task = bar.add_task(name, total=None)

                    def advance(done: int, total: int, task: TaskID = task) -> None:
                        bar.update(task, completed=done, total=total)

                    faults = cast("list[FaultKind]", chosen)
                    reports.append(
                        await runner.sweep(SCENARIOS[name], faults, pairs, seed, advance)
                    )
        return reports

    try:
        reports = asyncio.run(main())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for report in reports:
        out.print(report.summary(), soft_wrap=True)
        if report.failures:
            out.print(report.describe_failures(), markup=False, soft_wrap=True)
    raise typer.Exit(0 if all(not r.failures for r in reports) else 1)
