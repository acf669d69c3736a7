"""The service map: every service and replica with its health and RED figures, the calls and
event flows between them drawn as a graph, a breaker on each call, and beside it the event
catalogue.

The graph is generated, never drawn by hand: the boxes and call arrows from the interfaces
(:mod:`.catalogue`), the dashed publish and consume arrows from the AsyncAPI document, and on
top what is observed: each box's health (readiness, per replica over HTTP), its figures from
the trace store (:mod:`.observed`), each arrow's weight from the calls seen, each breaker's
state from the process that makes the calls (this one's ``runtime.resilience``, or another
process's ``/admin/dependencies``).

The layout is deterministic and needs no script: columns by call depth (the gateway first, a
service one column right of its deepest caller), each column ordered by where its callers
are, and the topics in a column of their own on the right, each beside the services it joins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.errors import ColonyError
from colony.platform.logging import get_logger
from colony.platform.runtime.topology import Topology
from colony.platform.security import Actor
from colony.services.gateway.console.catalogue import EXTERNALS, GATEWAY, Catalogue
from colony.services.gateway.console.observed import Observed, Red, observe
from colony.services.gateway.console.site import Console, format_seconds

LIVE_SECONDS = 5
BOX_W, BOX_H = 186, 66
X_STEP, ROW_STEP, MARGIN = 246, 92, 28
TOPIC_H, TOPIC_STEP, TOPIC_GAP = 24, 34, 86
TOPIC_CHAR_W = 7.0
"""The width of a character of a topic's name (11.5 px monospace), to size its pill."""
BREAKER_TEXT = {
    "closed": "breaker closed",
    "half_open": "breaker half-open (probing)",
    "open": "breaker open: calls fail at once",
    "none": "in-process call: no breaker (caller and callee fail together)",
    "idle": "no call made yet, so no breaker yet",
    "unknown": "breaker state unknown (the calling process did not answer)",
}
_WORST = ("open", "half_open", "closed")
_log = get_logger("console")


# --- the layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    name: str
    label: str
    kind: str  # gateway, service, external
    x: float
    y: float

    @property
    def cy(self) -> float:
        return self.y + BOX_H / 2


@dataclass(frozen=True)
class TopicBox:
    topic: str
    x: float
    y: float

    @property
    def cy(self) -> float:
        return self.y + TOPIC_H / 2


@dataclass
class Edge:
    kind: str  # call, publish, consume
    source: str
    target: str
    path: str
    mid: tuple[float, float]
    title: str = ""
    state: str = ""
    """For a call, its breaker's state (a key of BREAKER_TEXT)."""
    seen: int = 0
    """Calls or deliveries observed in the window."""


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[str, Box]
    topics: list[TopicBox]
    edges: list[Edge]
    topic_width: float


def layout(catalogue: Catalogue) -> Layout:
    """Where every box, topic and arrow of ``catalogue`` goes: the same input, the same
    picture."""
    labels = {GATEWAY: "gateway", **{n: n for n in catalogue.services}}
    kinds = {GATEWAY: "gateway", **{n: "service" for n in catalogue.services}}
    links = list(catalogue.calls)
    for external in EXTERNALS:
        labels[external.name] = external.label
        kinds[external.name] = "external"
        links.append((external.caller, external.name))
    depth = _depths(list(labels), links)
    columns: dict[int, list[str]] = {}
    row_of: dict[str, float] = {}
    for level in sorted(set(depth.values())):
        members = [name for name in labels if depth[name] == level]

        def barycentre(name: str) -> tuple[float, str]:
            above = [row_of[a] for a, b in links if b == name and a in row_of]
            return (sum(above) / len(above) if above else float("inf"), name)

        members.sort(key=barycentre)
        columns[level] = members
        for index, name in enumerate(members):
            row_of[name] = index - (len(members) - 1) / 2  # centred on the middle row
    tallest = max(len(members) for members in columns.values())
    graph_height = tallest * ROW_STEP - (ROW_STEP - BOX_H)
    topics = list(catalogue.channels.values())
    topics_height = len(topics) * TOPIC_STEP - (TOPIC_STEP - TOPIC_H) if topics else 0
    height = max(graph_height, topics_height) + 2 * MARGIN
    middle = height / 2
    boxes = {
        name: Box(
            name,
            labels[name],
            kinds[name],
            MARGIN + level * X_STEP,
            middle + row_of[name] * ROW_STEP - BOX_H / 2,
        )
        for level, members in columns.items()
        for name in members
    }
    edges = [_call_edge(boxes[a], boxes[b]) for a, b in links]
    topic_x = MARGIN + max(columns) * X_STEP + BOX_W + TOPIC_GAP
    placed: list[TopicBox] = []
    if topics:

        def near(channel: Any) -> tuple[float, float, str]:
            """Beside its publisher (a service's topics together), then its consumers."""
            sent = [boxes[n].cy for n in channel.publishers if n in boxes]
            taken = [boxes[n].cy for n in channel.consumers if n in boxes]
            return (
                sum(sent) / len(sent) if sent else middle,
                sum(taken) / len(taken) if taken else middle,
                channel.topic,
            )

        topics.sort(key=near)
        top = middle - topics_height / 2
        for index, channel in enumerate(topics):
            box = TopicBox(channel.topic, topic_x, top + index * TOPIC_STEP)
            placed.append(box)
            for publisher in channel.publishers:
                if publisher in boxes:
                    edges.append(_event_edge("publish", boxes[publisher], box))
            for consumer in channel.consumers:
                if consumer in boxes:
                    edges.append(_event_edge("consume", boxes[consumer], box))
    topic_width = max((len(c.topic) for c in topics), default=0) * TOPIC_CHAR_W + 24
    width = (topic_x + topic_width if topics else MARGIN + max(columns) * X_STEP + BOX_W) + MARGIN
    return Layout(width, height, boxes, placed, edges, topic_width)


def _depths(names: list[str], links: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: one right of its deepest caller (the gateway's is 0, a service
    nothing calls is 1). Bounded, so a cycle in the calls still ends."""
    depth = {name: 0 if name == GATEWAY else 1 for name in names}
    for _ in range(len(names)):
        changed = False
        for a, b in links:
            if a in depth and b in depth and depth[b] < depth[a] + 1 <= len(names):
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    return depth


def _curve(x1: float, y1: float, x2: float, y2: float) -> tuple[str, tuple[float, float]]:
    bend = max(40.0, abs(x2 - x1) / 2)
    c1, c2 = (x1 + bend, y1), (x2 - bend, y2)
    path = f"M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}"
    # The point halfway along (t = 0.5), where the breaker is drawn.
    mid = ((x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8, (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8)
    return path, mid


def _call_edge(caller: Box, callee: Box) -> Edge:
    path, mid = _curve(caller.x + BOX_W, caller.cy, callee.x, callee.cy)
    return Edge("call", caller.name, callee.name, path, mid)


def _event_edge(kind: str, service: Box, topic: TopicBox) -> Edge:
    """Publishes leave a box high on its right side, deliveries arrive low on it."""
    if kind == "publish":
        path, mid = _curve(service.x + BOX_W, service.y + BOX_H * 0.3, topic.x, topic.cy)
        return Edge(kind, service.name, topic.topic, path, mid)
    start, end = (topic.x, topic.cy), (service.x + BOX_W, service.y + BOX_H * 0.75)
    bend = max(40.0, abs(start[0] - end[0]) / 2)
    path = (
        f"M{start[0]:.1f},{start[1]:.1f} C{start[0] - bend:.1f},{start[1]:.1f}"
        f" {end[0] + bend:.1f},{end[1]:.1f} {end[0]:.1f},{end[1]:.1f}"
    )
    return Edge(kind, topic.topic, service.name, path, ((start[0] + end[0]) / 2, end[1]))


# --- what is observed ------------------------------------------------------------------------


@dataclass
class Replica:
    url: str
    ready: bool | None
    detail: str = ""


@dataclass
class ServiceView:
    name: str
    ready: bool | None
    where: str
    replicas: list[Replica] = field(default_factory=list)
    red: Red | None = None

    @property
    def replica_text(self) -> str:
        if not self.replicas:
            return self.where
        ready = sum(1 for r in self.replicas if r.ready)
        count = len(self.replicas)
        noun = "replica" if count == 1 else "replicas"
        return f"{count} {noun}, {ready} ready" if count > 1 else f"1 {noun}"


@dataclass
class Snapshots:
    """The dependencies (breakers) of the process that makes each caller's calls."""

    here: list[dict[str, Any]]
    remote: dict[str, list[list[dict[str, Any]]]]
    """A service of another process → each of its replicas' snapshot that answered."""


async def probe_replicas(
    topology: Topology, services: Sequence[str], seconds: float
) -> tuple[dict[str, list[Replica]], dict[str, list[list[dict[str, Any]]]]]:
    """Every replica of each service reached over HTTP: its readiness and, for those of
    other processes, its dependencies (``/admin/dependencies``), all asked at once."""
    targets = [
        (name, url, not topology.placement(name).local)
        for name in services
        if topology.placement(name).binding == "http"
        for url in topology.placement(name).addresses
    ]
    replicas: dict[str, list[Replica]] = {}
    remote: dict[str, list[list[dict[str, Any]]]] = {}
    if not targets:
        return replicas, remote
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def ready(url: str) -> Replica:
            try:
                async with session.get(url.rstrip("/") + "/health/ready") as answer:
                    if answer.status == 200:
                        return Replica(url, True)
                    return Replica(url, False, f"answered {answer.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Replica(url, False, type(exc).__name__)

        async def dependencies(url: str) -> list[dict[str, Any]] | None:
            try:
                async with session.get(url.rstrip("/") + "/admin/dependencies") as answer:
                    if answer.status != 200:
                        return None
                    found = await answer.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None
            return found if isinstance(found, list) else None

        readiness = await asyncio.gather(*(ready(url) for _, url, _ in targets))
        remote_targets = [(name, url) for name, url, elsewhere in targets if elsewhere]
        snapshots = await asyncio.gather(*(dependencies(url) for _, url in remote_targets))
    for (name, _, _), replica in zip(targets, readiness, strict=True):
        replicas.setdefault(name, []).append(replica)
    for (name, _), snapshot in zip(remote_targets, snapshots, strict=True):
        if snapshot is not None:
            remote.setdefault(name, []).append(snapshot)
    return replicas, remote


def breaker_state(
    caller: str, dependency: str, callee_in_process: bool, topology: Topology, snapshots: Snapshots
) -> str:
    """The state of the breaker on ``caller``'s calls to ``dependency``: the worst of its
    endpoints' (one per replica), as the process making those calls sees it."""
    if caller == GATEWAY or topology.placement(caller).local:
        if callee_in_process:
            return "none"
        views = [snapshots.here]
    else:
        views = snapshots.remote.get(caller, [])
        if not views:
            return "unknown"
    states = [
        endpoint.get("state", "closed")
        for view in views
        for entry in view
        if entry.get("name") == dependency
        for endpoint in entry.get("endpoints", {}).values()
    ]
    if not states:
        return "idle"
    return next((state for state in _WORST if state in states), "closed")


# --- the page --------------------------------------------------------------------------------


def routes(console: Console) -> list[Route]:
    backends = console.backends
    catalogue = console.catalogue
    drawing = layout(catalogue)

    async def health() -> dict[str, bool]:
        try:
            return await backends.health()
        except (ColonyError, TimeoutError, OSError) as exc:
            _log.warning("console could not ask for health", error=repr(exc))
            return {}

    @console.page
    async def service_map(request: Request, actor: Actor) -> Response:
        topology = backends.topology
        names = list(catalogue.services)
        seconds = console.settings.ready_timeout_seconds
        checks, (replicas, remote) = await asyncio.gather(
            health(), probe_replicas(topology, names, seconds)
        )
        try:
            here = backends.dependencies()
        except Exception as exc:  # a figure is not worth the page
            _log.warning("console could not read the breakers", error=repr(exc))
            here = []
        snapshots = Snapshots(here, remote)
        observed = observe(backends.traces)
        views = {
            GATEWAY: ServiceView(GATEWAY, True, "this process", red=observed.red.get(GATEWAY)),
        }
        for name in names:
            placement = topology.placement(name)
            where = "in this process" if placement.binding == "inprocess" else "over HTTP"
            views[name] = ServiceView(
                name,
                checks.get(name),
                where,
                replicas.get(name, []),
                observed.red.get(name),
            )
        for external in EXTERNALS:
            views[external.name] = ServiceView(
                external.name, None, "third party", red=observed.red.get(external.name)
            )
        edges = _observed_edges(drawing, catalogue, observed, topology, snapshots)
        return await console.render(
            request,
            "console/map.html",
            {
                "layout": drawing,
                "edges": edges,
                "views": views,
                "observed": observed,
                "breaker_text": BREAKER_TEXT,
                "box_w": BOX_W,
                "box_h": BOX_H,
                "topic_h": TOPIC_H,
                "externals": EXTERNALS,
                "has_catalogue": bool(catalogue.channels),
                "deliveries": channel_flows(observed, catalogue),
            },
            live=LIVE_SECONDS,
        )

    return [Route("/console", service_map, methods=["GET"])]


def _observed_edges(
    drawing: Layout,
    catalogue: Catalogue,
    observed: Observed,
    topology: Topology,
    snapshots: Snapshots,
) -> list[Edge]:
    """The layout's arrows with what was seen on each: calls and deliveries counted, and
    each call's breaker."""
    dependency_of = {external.name: external.dependency for external in EXTERNALS}
    edges = []
    for edge in drawing.edges:
        fresh = Edge(edge.kind, edge.source, edge.target, edge.path, edge.mid)
        if edge.kind == "call":
            external = edge.target in dependency_of
            in_process = not external and topology.placement(edge.target).binding == "inprocess"
            fresh.state = breaker_state(
                edge.source,
                dependency_of.get(edge.target, edge.target),
                in_process,
                topology,
                snapshots,
            )
            flow = observed.calls.get((edge.source, edge.target))
            fresh.seen = flow.count if flow else 0
            fresh.title = f"{edge.source} calls {edge.target}: {BREAKER_TEXT[fresh.state]}"
        elif edge.kind == "publish":
            fresh.title = f"{edge.source} publishes {edge.target}"
        else:
            flow = observed.deliveries.get((edge.source, edge.target))
            fresh.seen = flow.count if flow else 0
            fresh.title = f"{edge.target} consumes {edge.source}"
        if fresh.seen:
            fresh.title += (
                f" ({fresh.seen} seen in the last {format_seconds(observed.window_seconds)})"
            )
        edges.append(fresh)
    return edges


def channel_flows(observed: Observed, catalogue: Catalogue) -> Mapping[str, int]:
    """Each topic's deliveries seen in the window, all its consumers together."""
    totals: dict[str, int] = {}
    for (topic, _), flow in observed.deliveries.items():
        if topic in catalogue.channels:
            totals[topic] = totals.get(topic, 0) + flow.count
    return totals
