"""Faults: the runs of ``colony chaos`` with their reports, and, where this gateway takes
faults (``COLONY_FAULT_INJECTION``), injecting and healing one by hand: the teaching use of
killing a service and watching the checkout saga compensate.

- **Reports** are read from ``var/chaos/`` beside the data directory, where ``colony chaos``
  writes them (one folder per run or matrix, a ``.json`` and an ``.html`` per fault). Each
  is served read-only: names are checked against a strict pattern and the resolved path must
  stay inside that folder; the HTML page may style itself and do nothing else (no script,
  no form, sandboxed).
- **The running topology** (``processes.json`` in the data directory, written by
  ``colony up --distributed``): any fault of ``colony faults list`` by its spec, injected
  through :mod:`colony.faults` as ``colony faults inject`` does, and noted in the same ledger,
  so ``colony faults status`` and ``heal`` see it too. A heal that must wait (a killed
  process restarting) goes on after the page has answered, and the page says so. Not taken
  here: a database outage (it lasts only while the process injecting it runs; use the
  command) and killing or pausing a gateway (the console would stop with it).
- **This process** (every topology, the one-process marketplace included): the platform's
  fault table (:mod:`colony.platform.faults`) of the gateway's own process, a fault on a
  link to a dependency (the payment provider, SMTP, a service over HTTP), on a consumer's
  deliveries, or on the clock. In one process that is every service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.faults import (
    FAMILIES,
    FaultSpecError,
    InjectionFailed,
    NotHealed,
    RunningTopology,
    TopologyNotRunning,
    fault_from_spec,
)
from colony.faults.ledger import Entry, Ledger
from colony.faults.signals import ProcessKill, ProcessPause
from colony.faults.topology import process_state
from colony.platform import faults as fault_table
from colony.platform.errors import Conflict, NotFound
from colony.platform.logging import get_logger
from colony.platform.security import Actor
from colony.services.gateway.console.catalogue import GATEWAY
from colony.services.gateway.console.site import Console
from colony.services.gateway.storefront.forms import FormInvalid, read_form
from colony.services.gateway.storefront.session import redirect

REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'none'; sandbox"
)
"""A chaos report is a page of its own: inline styles and SVG, nothing that runs."""
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(json|html)$")
MAX_FOLDERS = 50
MAX_REPORT_BYTES = 64 * 1024 * 1024
INJECT_SECONDS = 6.0
"""An injection waits this long to see the fault in effect (a request has 10 s)."""
HEAL_WAIT_SECONDS = 4.0
"""A heal is waited for this long; past it, it goes on and the page says it is healing."""
PROBE_SECONDS = 0.5
MAX_SPEC = 200
NOTICES = {
    "injected": ("good", "Injected. Watch the service map and the sagas."),
    "healed": ("good", "Healed: what it broke was seen working again."),
    "healing": ("", "Healing: the heal goes on (a process restarting takes a while)."),
    "removed": ("good", "Removed from this process's fault table."),
    "not-installed": ("bad", "No such fault is installed in this process (already healed?)."),
}
"""What a redirect back to the faults page may say; a fixed list, so no text is injected."""
LOCAL_KINDS = {
    "latency": "link: wait before each call",
    "reset": "link: connection reset",
    "unavailable": "link: answered 503",
    "drop": "link: the call hangs until its timeout",
    "lose-response": "link: the call acts, its answer is lost",
    "duplicate": "consumer: each event delivered twice",
    "reorder": "consumer: events held and shuffled",
    "slow-consumer": "consumer: a pause before each event",
    "clock-skew": "the process's clock is off",
}
LINK_KINDS = ("latency", "reset", "unavailable", "drop", "lose-response")
CONSUMER_KINDS = ("duplicate", "reorder", "slow-consumer")
_log = get_logger("console")


# --- reports ---------------------------------------------------------------------------------


class _Check(msgspec.Struct, kw_only=True):
    name: str = ""
    ok: bool = True


class _Head(msgspec.Struct, kw_only=True):
    """What the list shows of a chaos report; the rest of its JSON is not decoded."""

    fault: str = ""
    checks: list[_Check] = []


@dataclass(frozen=True)
class Report:
    folder: str
    name: str
    html: bool
    fault: str
    ok: bool | None
    failed: tuple[str, ...]
    modified: float


def reports_root(data_dir: Path) -> Path:
    """Where ``colony chaos`` writes reports: ``var/chaos`` beside ``var/data``."""
    return data_dir.parent / "chaos"


class Reports:
    """The reports under one folder; each report's head read once per version of its file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._heads: dict[Path, tuple[float, _Head | None]] = {}

    def listed(self) -> list[Report]:
        if not self.root.is_dir():
            return []
        folders = [
            entry
            for entry in self.root.iterdir()
            if _FOLDER.match(entry.name) and entry.is_dir() and not entry.is_symlink()
        ]
        folders.sort(key=lambda folder: folder.stat().st_mtime, reverse=True)
        found = []
        for folder in folders[:MAX_FOLDERS]:
            for data in sorted(folder.glob("*.json")):
                if not _FILE.match(data.name) or data.is_symlink():
                    continue
                head = self._head(data)
                failed = tuple(c.name for c in head.checks if not c.ok) if head else ()
                found.append(
                    Report(
                        folder=folder.name,
                        name=data.stem,
                        html=data.with_suffix(".html").is_file(),
                        fault=head.fault if head else "",
                        ok=(not failed) if head and head.checks else None,
                        failed=failed,
                        modified=data.stat().st_mtime,
                    )
                )
        return found

    def _head(self, path: Path) -> _Head | None:
        modified = path.stat().st_mtime
        known = self._heads.get(path)
        if known is not None and known[0] == modified:
            return known[1]
        head: _Head | None = None
        if path.stat().st_size <= MAX_REPORT_BYTES:
            with contextlib.suppress(msgspec.DecodeError, OSError):
                head = msgspec.json.decode(path.read_bytes(), type=_Head)
        self._heads[path] = (modified, head)
        return head

    def file(self, folder: str, name: str) -> Path:
        """A report's file, or NotFound: a name outside the patterns, a path that leaves the
        folder (through a link, say), anything that is not a plain file."""
        if not (_FOLDER.match(folder) and _FILE.match(name)):
            raise NotFound("No such report.")
        root = self.root.resolve()
        try:
            path = (root / folder / name).resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound("No such report.") from None
        if not path.is_relative_to(root) or path.parent.parent != root or not path.is_file():
            raise NotFound("No such report.")
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise NotFound("That report is too large to show here.")
        return path


# --- the running topology ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessView:
    name: str
    service: str
    state: str
    restarts: int
    url: str
    faults: list[str]


class Injector:
    """Faults put into the running topology from the console, and the heals still going."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ledger = Ledger(data_dir)
        self.healing: dict[str, asyncio.Task[None]] = {}
        self.outcomes: dict[str, str] = {}
        """The last heal that failed, by spec: what it said."""

    def topology(self) -> RunningTopology | None:
        try:
            return RunningTopology.load(self.data_dir)
        except (TopologyNotRunning, OSError, msgspec.DecodeError):
            return None

    async def inject(self, spec: str, topology: RunningTopology) -> None:
        try:
            fault = fault_from_spec(spec, topology)
        except FaultSpecError as exc:
            raise FormInvalid.one("spec", str(exc)) from None
        if fault.held:
            raise FormInvalid.one(
                "spec",
                f"{fault.description}: it lasts only while the command injecting it runs."
                f" Run `colony faults inject {fault.spec}` in a terminal instead.",
            )
        if isinstance(fault, ProcessKill | ProcessPause) and any(
            topology.process(name).service == GATEWAY for name in fault.names
        ):
            raise FormInvalid.one(
                "spec",
                "That would stop a gateway, this console's own process: use `colony faults`.",
            )
        try:
            async with asyncio.timeout(INJECT_SECONDS):
                await fault.inject()
        except InjectionFailed as exc:
            raise Conflict(f"The fault could not be injected: {exc}") from None
        except TimeoutError:
            self._heal_later(spec, topology)
            raise Conflict(
                f"The fault was not seen in effect within {INJECT_SECONDS:g} s; it is being"
                " healed again."
            ) from None
        self.outcomes.pop(fault.spec, None)
        self.ledger.add(fault.spec, fault.description)

    async def heal(self, spec: str, topology: RunningTopology) -> bool:
        """Heal ``spec``; True once healed, False while the heal goes on."""
        task = self._heal_later(spec, topology)
        done, _ = await asyncio.wait({task}, timeout=HEAL_WAIT_SECONDS)
        return bool(done)

    def _heal_later(self, spec: str, topology: RunningTopology) -> asyncio.Task[None]:
        running = self.healing.get(spec)
        if running is not None:
            return running

        async def heal() -> None:
            try:
                await fault_from_spec(spec, topology).heal()
            except (NotHealed, FaultSpecError) as exc:
                self.outcomes[spec] = str(exc)
                _log.warning("console could not heal a fault", spec=spec, error=str(exc))
            else:
                self.outcomes.pop(spec, None)
                self.ledger.remove(spec)

        task = asyncio.create_task(heal(), name=f"console-heal:{spec}")
        self.healing[spec] = task
        task.add_done_callback(lambda _: self.healing.pop(spec, None))
        return task

    async def processes(self, topology: RunningTopology) -> list[ProcessView]:
        """Each process of the topology, its state, and the faults its table holds."""
        processes = topology.processes
        timeout = aiohttp.ClientTimeout(total=PROBE_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def table(url: str) -> list[str]:
                if not url.startswith("http"):
                    return []
                try:
                    async with session.get(url + "/admin/faults") as answer:
                        if answer.status != 200:
                            return []
                        body = await answer.json()
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    return ["(no answer)"]
                return [_describe(f) for f in body.get("faults", []) if isinstance(f, dict)]

            tables = await asyncio.gather(*(table(p.url) for p in processes.values()))
        views = []
        for (name, process), held in zip(processes.items(), tables, strict=True):
            pid = topology.owned_pid(name)
            state = "down" if pid is None else "paused" if process_state(pid) == "T" else "running"
            views.append(
                ProcessView(name, process.service, state, process.restarts, process.url, held)
            )
        return views


def _describe(fault: dict[str, Any]) -> str:
    details = ", ".join(f"{k}={v}" for k, v in fault.items() if k not in ("kind", "id"))
    return f"{fault.get('kind')} ({details})"


# --- this process -------------------------------------------------------------------------------


def local_fault(fields: dict[str, str]) -> fault_table.FaultSpec:
    """A fault for this process's table from the form; FormInvalid saying what is wrong."""
    kind = fields.get("kind", "")
    if kind not in LOCAL_KINDS:
        raise FormInvalid.one("kind", "Kind is one of the choices.")
    target = fields.get("target", "").strip()
    body: dict[str, Any] = {"kind": kind}
    if kind in LINK_KINDS or kind in CONSUMER_KINDS:
        if not target:
            what = "dependency" if kind in LINK_KINDS else "consumer (a service)"
            raise FormInvalid.one("target", f"Name the {what} it applies to.")
        body["dependency" if kind in LINK_KINDS else "consumer"] = target
        body["id"] = f"console.{kind}.{target}"[:128]
    if kind in LINK_KINDS or kind == "duplicate":
        body["probability"] = _number(fields, "share", "Share of calls", 1.0)
    if kind in ("latency", "slow-consumer"):
        body["delay_ms"] = _number(fields, "delay_ms", "Delay", None)
    if kind == "reorder":
        body["window_ms"] = _number(fields, "delay_ms", "Window", 200.0)
    if kind == "clock-skew":
        body["seconds"] = _number(fields, "skew_seconds", "Skew", None)
    try:
        fault: fault_table.FaultSpec = msgspec.convert(body, fault_table.FaultSpec)
    except msgspec.ValidationError as exc:
        raise FormInvalid.one("kind", f"Not a fault this process takes: {exc}") from None
    return fault


def _number(fields: dict[str, str], name: str, label: str, default: float | None) -> float:
    text = fields.get(name, "").strip()
    if not text:
        if default is None:
            raise FormInvalid.one(name, f"{label} is required for this kind.")
        return default
    try:
        value = float(text)
    except ValueError:
        raise FormInvalid.one(name, f"{label} is a number.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise FormInvalid.one(name, f"{label} is a number.")
    return value


# --- the pages ---------------------------------------------------------------------------------


def routes(console: Console) -> list[Route]:
    settings = console.settings
    reports = Reports(reports_root(settings.data_dir))
    injector = Injector(settings.data_dir)

    async def page(
        request: Request,
        errors: dict[str, str] | None = None,
        typed: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        topology = injector.topology() if settings.fault_injection else None
        processes = await injector.processes(topology) if topology is not None else []
        entries: list[Entry] = injector.ledger.entries() if topology is not None else []
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return await console.render(
            request,
            "console/faults.html",
            {
                "reports": reports.listed(),
                "reports_root": reports.root,
                "enabled": settings.fault_injection,
                "topology": topology,
                "processes": processes,
                "entries": entries,
                "healing": sorted(injector.healing),
                "outcomes": injector.outcomes,
                "families": FAMILIES,
                "local": [(f.id, _describe(msgspec.to_builtins(f))) for f in fault_table.active()],
                "local_kinds": LOCAL_KINDS,
                "dependencies": [
                    *console.catalogue.services,
                    "payment-provider",
                    "smtp",
                    "webhooks",
                    "nats",
                ],
                "consumers": [name for name, s in console.catalogue.services.items() if s.consumes],
                "errors": errors or {},
                "typed": typed or {},
                "notice": notice,
                "max_spec": MAX_SPEC,
            },
            status=status,
        )

    @console.page
    async def faults_page(request: Request, actor: Actor) -> Response:
        return await page(request)

    def require_enabled() -> None:
        if not settings.fault_injection:
            raise Conflict(
                "Fault injection is off in this gateway: start the marketplace with"
                " COLONY_FAULT_INJECTION=true (`colony up --distributed --faults`)."
            )

    @console.page
    async def inject(request: Request, actor: Actor) -> Response:
        fields = await read_form(request)
        require_enabled()
        try:
            if fields.get("where") == "topology":
                spec = fields.get("spec", "").strip()
                if not 0 < len(spec) <= MAX_SPEC:
                    raise FormInvalid.one(
                        "spec", f"Give a fault's spec, at most {MAX_SPEC} characters."
                    )
                topology = injector.topology()
                if topology is None:
                    raise FormInvalid.one(
                        "spec", "No multi-process topology runs from this data directory."
                    )
                await injector.inject(spec, topology)
                _log.info("fault injected from the console", spec=spec, admin=actor.id)
            else:
                fault = fault_table.install(local_fault(fields))
                _log.info("fault installed from the console", fault=fault.id, admin=actor.id)
        except FormInvalid as exc:
            return await page(request, exc.errors, fields, exc.status)
        return redirect("/console/faults?notice=injected")

    @console.page
    async def heal(request: Request, actor: Actor) -> Response:
        fields = await read_form(request)
        require_enabled()
        if fields.get("where") == "topology":
            topology = injector.topology()
            spec = fields.get("spec", "")
            if topology is None or not 0 < len(spec) <= MAX_SPEC:
                raise NotFound("No such fault in the running topology.")
            healed = await injector.heal(spec, topology)
            _log.info("fault healed from the console", spec=spec, admin=actor.id)
            return redirect("/console/faults?notice=" + ("healed" if healed else "healing"))
        if fields.get("all") == "yes":
            fault_table.heal_all()
            return redirect("/console/faults?notice=removed")
        removed = fault_table.heal(fields.get("fault_id", ""))
        return redirect("/console/faults?notice=" + ("removed" if removed else "not-installed"))

    @console.page
    async def report(request: Request, actor: Actor) -> Response:
        path = reports.file(request.path_params["folder"], request.path_params["name"])
        content = await asyncio.to_thread(path.read_bytes)
        media = "text/html; charset=utf-8" if path.suffix == ".html" else "application/json"
        return Response(
            content,
            media_type=media,
            headers={
                "content-security-policy": REPORT_POLICY,
                "x-content-type-options": "nosniff",
                "cache-control": "private, no-store",
                "referrer-policy": "same-origin",
            },
        )

    return [
        Route("/console/faults", faults_page, methods=["GET"]),
        Route("/console/faults/inject", inject, methods=["POST"]),
        Route("/console/faults/heal", heal, methods=["POST"]),
        Route("/console/faults/reports/{folder}/{name}", report, methods=["GET"]),
    ]
