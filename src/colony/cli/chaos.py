"""``colony chaos``: load, a fault, and the proof that nothing was lost.

``run`` starts a multi-process topology of its own (or uses one already running), runs load,
injects one fault at a set time, heals it, waits for the orders to end and checks the
invariants; it writes the report as JSON and as an HTML page. ``matrix`` does that for every
fault family in turn, against one topology, and prints one table.
"""

from __future__ import annotations

import asyncio
import datetime
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
out = Console()
err = Console(stderr=True)

Rate = Annotated[float, typer.Option(help="Arrivals a second (30 % of them checkouts).")]
Duration = Annotated[float, typer.Option(help="Seconds of load.")]
FaultAt = Annotated[float, typer.Option(help="Seconds into the load when the fault starts.")]
FaultFor = Annotated[float, typer.Option(help="Seconds the fault lasts before it is healed.")]
Database = Annotated[str, typer.Option(help="sqlite or postgresql (the machine's server).")]
Replicas = Annotated[str, typer.Option(help="Processes per service, e.g. orders=2,inventory=2.")]
Out = Annotated[Path | None, typer.Option(help="Folder for the reports (default var/chaos/…).")]


def _config(fault: str, **values: float) -> ChaosConfig:
    try:
        parse(fault)
        return ChaosConfig(fault=fault, **values)  # type: ignore[arg-type]
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
        str, typer.Option(help="The fault, e.g. kill:payments (see colony faults list).")
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
