"""``colony load``: open-loop load against a running marketplace, with a summary at the end.

A thin shell over ``colony.load.run_load``: options become a ``LoadConfig`` (whose checks
refuse nonsense, here with exit code 2), a progress bar shows arrivals ending, and the report
is printed and saved as JSON (summary, per-second timeline, every checkout) beside a history
of every arrival, one JSON line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from colony.load import (
    DEFAULT_MIX,
    DEFAULT_URL,
    InvalidLoadConfig,
    LoadConfig,
    LoadReport,
    SetupError,
    parse_mix,
    parse_steps,
    run_load,
)
from colony.load.outcomes import OUTCOMES

app = typer.Typer(
    help="Open-loop load: a realistic mix of buyers' traffic at a fixed or stepped rate."
)
out = Console()
err = Console(stderr=True)

_DEFAULT_MIX_TEXT = ",".join(f"{kind}={weight:g}" for kind, weight in DEFAULT_MIX.items())
_LAG_WARNING_MS = 10.0


@app.command()
def load(
    url: Annotated[str, typer.Option(help="The marketplace's base URL.")] = DEFAULT_URL,
    rate: Annotated[
        float | None, typer.Option(help="Arrivals a second, constant. (default 20)")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of arrivals at --rate. (default 10)")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            help="A stepped rate instead: RATE:SECONDS,… e.g. 20:30,40:30 (rate 0 pauses)."
        ),
    ] = None,
    mix: Annotated[
        str, typer.Option(help="Relative weights of browse, search, product, cart, checkout.")
    ] = _DEFAULT_MIX_TEXT,
    timeout: Annotated[
        float, typer.Option(help="Seconds a request may take; then its outcome is unknown.")
    ] = 5.0,
    max_in_flight: Annotated[
        int, typer.Option(help="Arrivals under way at once; past that they fail as dropped.")
    ] = 1000,
    connections: Annotated[int, typer.Option(help="Keep-alive connections at most.")] = 200,
    buyers: Annotated[
        int,
        typer.Option(help="Buyers to register (or reuse) besides the 5 demo ones."),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same sequence of requests.")] = 1,
    report: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to save the report (JSON). (default var/load/load-<time>.json)",
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(help="Also save every arrival's entry beside it (<out>.history.jsonl)."),
    ] = True,
) -> None:
    """Send buyers' traffic on a fixed schedule, whatever the server does, and report the rate
    achieved, outcomes (ok, failed, unknown) by kind, latency percentiles and a timeline."""
    if steps is not None and (rate is not None or duration is not None):
        raise typer.BadParameter("give either --steps or --rate/--duration", param_hint="--steps")
    path = report or Path("var/load") / f"load-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; name a file", param_hint="--out")
    config = _config(
        url=url,
        rate=rate,
        duration=duration,
        steps=steps,
        mix=mix,
        timeout=timeout,
        max_in_flight=max_in_flight,
        connections=connections,
        buyers=buyers,
        seed=seed,
        history=str(path.with_suffix(".history.jsonl")) if history else None,
    )
    try:
        result = _run(_with_progress(config))
    except SetupError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    saved = result.save(path)
    _print_summary(result, saved)


def _config(*, steps: str | None, mix: str, **values: Any) -> LoadConfig:
    """The options as a LoadConfig; any refusal names its option and exits with code 2."""
    try:
        if steps is not None:
            try:
                values["steps"] = parse_steps(steps)
            except ValueError as exc:
                raise InvalidLoadConfig("steps", str(exc)) from None
        values["mix"] = parse_mix(mix)
        return LoadConfig(**{k: v for k, v in values.items() if v is not None})
    except InvalidLoadConfig as exc:
        option = "--" + exc.field.replace("_", "-")
        raise typer.BadParameter(exc.message, param_hint=option) from None


async def _with_progress(config: LoadConfig) -> LoadReport:
    columns = (
        TextColumn("[bold]{task.description:<7}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    stop = _stop_on_ctrl_c()
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        return await run_load(config, progress, stop)


def _stop_on_ctrl_c() -> asyncio.Event:
    """The first Ctrl-C ends the schedule, and the run still reports what it sent; a second
    one aborts as usual."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        err.print("[yellow]Stopping: waiting for requests in flight (Ctrl-C again to abort)…")
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    # Signal handlers can be set only from the main thread (not, say, under a test runner).
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, first)
    return stop


def _print_summary(report: LoadReport, saved: Path) -> None:
    everything = report.kinds["all"]
    out.print(
        f"[bold]{report.arrivals:,} arrivals[/] against {report.config.url} over"
        f" {report.schedule_s:g} s: {report.intended_rate:.1f}/s intended,"
        f" {report.achieved_rate:.1f}/s achieved; {report.requests:,} HTTP requests;"
        f" {report.buyers} buyers."
    )
    out.print(
        f"[green]ok {everything.ok:,}[/], [red]failed {everything.failed:,}[/]"
        f" ({everything.dropped:,} dropped), [yellow]unknown {everything.unknown:,}[/];"
        f" {report.ok_rate:.1f} ok/s over {report.elapsed_s:.1f} s."
    )
    table = Table(show_edge=False, title="Latency from due time (ms)", title_justify="left")
    for column in ("kind", "arrivals", "ok", "failed", "unknown"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for column in ("p50", "p90", "p99", "p99.9", "max"):
        table.add_column(column, justify="right")
    for kind, summary in report.kinds.items():
        latency = summary.latency
        table.add_row(
            f"[bold]{kind}[/]" if kind == "all" else kind,
            f"{summary.arrivals:,}",
            f"{summary.ok:,}",
            f"{summary.failed:,}",
            f"{summary.unknown:,}",
            *(
                _ms(value)
                for value in (latency.p50, latency.p90, latency.p99, latency.p999, latency.max)
            ),
        )
    out.print(table)
    if report.errors:
        shown = list(report.errors.items())[:6]
        out.print("Errors: " + "; ".join(f"{error} ({count:,})" for error, count in shown))
    checkouts = report.checkouts
    if checkouts:
        counts = {o: sum(c.outcome == o for c in checkouts) for o in OUTCOMES}
        out.print(
            f"Checkouts: {len(checkouts):,} with a buyer — {counts['ok']:,} orders acknowledged,"
            f" {counts['failed']:,} failed, {counts['unknown']:,} unknown."
        )
    if report.lag.p99 > _LAG_WARNING_MS:
        out.print(
            f"[yellow]The generator started arrivals up to {report.lag.p99:.1f} ms late (p99):"
            " this machine, not only the marketplace, was busy."
        )
    if any(error.startswith("dropped: no free buyer") for error in report.errors):
        out.print("[yellow]Checkouts were dropped for want of a free buyer: add --buyers N.")
    if report.stopped:
        out.print("[yellow]Stopped before the end of the schedule; the figures cover what ran.")
    out.print(f"Report (summary, timeline, checkouts): {saved}")
    if report.history:
        out.print(f"History (every arrival): {report.history}")


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _run(coro: Coroutine[Any, Any, LoadReport]) -> LoadReport:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform
        return asyncio.run(coro)
    return uvloop.run(coro)
