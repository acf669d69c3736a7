"""OWASP API7:2023, server-side request forgery: a seller's webhook URL cannot make the
marketplace post inside its own network.

A URL that points inside, in any spelling, is refused with a 422 when it is given; a name
that resolves inside when a delivery is made is refused then, on the addresses it resolves
to (names come from a stub resolver here, never from real DNS); no redirect is followed; the
seller reads that a delivery failed, never what could not be reached where. The allow-list
of development lets a receiver on this machine through, and the operator's own third parties
are reached on loopback without it.
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.http_client import HttpClient
from colony.platform.messaging import Event, Message
from colony.platform.messaging.consumer import list_dead_letters
from colony.platform.messaging.message import owner_of
from colony.platform.outbound_addresses import (
    ForbiddenDestination,
    GuardedResolver,
    OutboundGuard,
    forbidden_kind,
    parse_address,
)
from colony.platform.resilience import Resilience
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.security import Actor
from colony.platform.web.server import HttpServer, free_port
from colony.services.notifications import webhooks
from colony.services.notifications.api import NotificationsApi, WebhookDelivery
from colony.services.notifications.service import NotificationsService
from colony.services.orders.api import OrderCompleted, OrderLine
from conftest import sign_up
from trust_support import AllowedCaller
from waiting import eventually

MIGRATIONS = Path(inspect.getfile(NotificationsService)).parent / "migrations"

# Each URL points inside; the word its refusal must give as the reason.
INSIDE = [
    ("http://127.0.0.1/hooks", "loopback"),
    ("http://localhost:4222/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[::1]:8080/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://0.0.0.0:4222/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0X7F000001/", "loopback"),
    ("http://127.1:4222/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("https://127.000.000.001/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
    ("http://[2002:a00:1::]/", "private"),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "loopback"),  # full width
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "loopback"),
    ("http://127\u30020\u30020\u30021/", "loopback"),  # ideographic full stops
    ("http://user:pw@127.0.0.1/", "loopback"),
    ("http://example.com@127.0.0.1/", "loopback"),
    ("http://10.0.0.8/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://100.64.0.1/", "shared"),
    ("http://100.100.100.200/", "metadata"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://198.18.0.1/", "reserved"),
    ("http://[::127.0.0.1]/", "reserved"),
    ("http://metadata.google.internal/computeMetadata/v1/", "local network"),
    ("http://printer.local/", "local network"),
    ("http://nats:4222/", "local network"),
    ("http://%31%32%37.0.0.1/", "not valid"),
    ("http://1.2.3.999/", "not valid"),
    ("http://127.0.0.1:4222\\@example.com/", "not a URL"),
]
OUTSIDE = [
    "https://example.com/hooks",
    "https://hooks.example/colony",
    "http://93.184.216.34:8080/h",
    "http://[2606:4700::1111]/",
    "http://[::ffff:8.8.8.8]/",
    "https://b\u00fccher.example/",
    "http://172.32.0.1/",  # just past 172.16.0.0/12
    "http://100.128.0.1/",  # just past 100.64.0.0/10
]


# Refused when given: through the gateway, as a seller


async def test_a_webhook_url_pointing_inside_is_refused_in_every_spelling(
    client: httpx.AsyncClient,
) -> None:
    seller = await sign_up(client, "seller")
    kept = await client.put(
        "/api/v1/seller/webhook", json={"url": OUTSIDE[0]}, headers=seller.headers
    )
    assert kept.status_code == 200, kept.text

    wrong: list[tuple[str, int, str]] = []
    for url, reason in INSIDE:
        response = await client.put(
            "/api/v1/seller/webhook", json={"url": url}, headers=seller.headers
        )
        problem = response.json()
        if not (
            response.status_code == 422
            and response.headers["content-type"].startswith("application/problem+json")
            and reason in problem["detail"]
            and problem.get("field") == "url"
        ):
            wrong.append((url, response.status_code, problem.get("detail", "")))
    assert wrong == []

    # Nothing refused was written: the URL set before is still the one.
    current = await client.get("/api/v1/seller/webhook", headers=seller.headers)
    assert current.json()["url"] == OUTSIDE[0]


async def test_the_refusal_says_why(client: httpx.AsyncClient) -> None:
    seller = await sign_up(client, "seller")
    response = await client.put(
        "/api/v1/seller/webhook", json={"url": "http://2130706433:4222/"}, headers=seller.headers
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/forbidden-destination")
    assert "127.0.0.1" in problem["detail"] and "public internet" in problem["detail"]
    # Nothing was saved for a seller who had no webhook before.
    missing = await client.get("/api/v1/seller/webhook", headers=seller.headers)
    assert missing.status_code == 404


async def test_a_url_on_the_public_internet_is_accepted(client: httpx.AsyncClient) -> None:
    seller = await sign_up(client, "seller")
    for url in OUTSIDE:
        response = await client.put(
            "/api/v1/seller/webhook", json={"url": url}, headers=seller.headers
        )
        assert response.status_code == 200, (url, response.text)


# Refused when sent: names resolved by a stub, deliveries made by the dispatcher


class StubNames(AbstractResolver):
    """A hosts file: each name's addresses, and how often it was asked. An unknown name
    fails as a lookup does."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(socket.EAI_NONAME, f"{host}: no such name")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in self.names[host]
        ]

    async def close(self) -> None:
        return None


@dataclass
class Receiver:
    """A receiver on this machine: ``/hooks`` records posts, ``/moved`` redirects to it."""

    server: HttpServer
    posts: list[bytes] = field(default_factory=list)
    moved: int = 0

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, host: str = "127.0.0.1", path: str = "/hooks") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async def hook(request: Request) -> Response:
        recorder.posts.append(await request.body())
        return Response(status_code=204)

    async def moved(request: Request) -> Response:
        recorder.moved += 1
        return Response(status_code=307, headers={"location": recorder.url()})

    app = Starlette(
        routes=[Route("/hooks", hook, methods=["POST"]), Route("/moved", moved, methods=["POST"])]
    )
    recorder = Receiver(HttpServer(app, "127.0.0.1", free_port()))
    await recorder.server.start()
    try:
        yield recorder
    finally:
        await recorder.server.stop()


@dataclass
class Notifications:
    runtime: Runtime

    @property
    def api(self) -> NotificationsApi:
        return AllowedCaller(self.runtime, NotificationsApi)  # type: ignore[return-value]

    async def order_for(self, seller: Actor) -> None:
        """An order with one of the seller's listings completes: a webhook is queued."""
        line = OrderLine(
            listing_id="listing-1",
            seller_id=seller.id,
            title="Walnut desk lamp",
            quantity=1,
            unit_price_minor=2500,
            line_total_minor=2500,
        )
        event = OrderCompleted(
            order_id=f"order-{seller.id}",
            buyer_id="buyer-1",
            lines=[line],
            total_minor=2500,
            currency="EUR",
        )
        await self.runtime.consumers["notifications"].deliver(_message(event))

    async def delivery(self, seller: Actor, status: str) -> WebhookDelivery:
        async def ended() -> WebhookDelivery | None:
            found = await self.api.webhook_deliveries(seller)
            return found[0] if found and found[0].status == status else None

        return await eventually(ended)  # type: ignore[no-any-return]


def _message(event: Event) -> Message:
    return Message(
        id=f"message-{event.order_id}",  # type: ignore[attr-defined]
        topic=event.topic,
        key="test",
        payload=msgspec.Raw(msgspec.json.encode(event)),
        created_at=utc_now_iso(),
        source=owner_of(event.topic),
    )


@contextlib.asynccontextmanager
async def notifications(
    tmp_path: Path, names: StubNames, allowed: str = ""
) -> AsyncIterator[Notifications]:
    runtime = Runtime(
        Settings(
            data_dir=tmp_path,
            smtp_port=free_port(),
            webhook_attempts=2,
            internal_hosts_allowed=allowed,
        ),
        [ServiceDefinition("notifications", NotificationsApi, NotificationsService, MIGRATIONS)],
        Topology.one_process(),
    )
    runtime.http.resolver = names
    await runtime.start()
    dispatcher = runtime.services["notifications"].dispatcher
    dispatcher.backoff_base, dispatcher.backoff_cap = 0.02, 0.05
    try:
        yield Notifications(runtime)
    finally:
        await runtime.stop()


async def test_a_name_that_resolves_inside_is_refused_when_the_webhook_is_sent(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The name passes when given (it is judged as written); at delivery it resolves to this
    # machine, where the receiver listens: nothing may be posted there.
    names = StubNames({"hooks.shop.example": ["127.0.0.1"]})
    async with notifications(tmp_path, names) as world:
        seller = Actor(id="seller-1", role="seller")
        await world.api.set_webhook(seller, receiver.url("hooks.shop.example"))
        await world.order_for(seller)
        dead = await world.delivery(seller, "dead")
        letters = await list_dead_letters(world.runtime.databases["notifications"])

    assert receiver.posts == []
    assert "hooks.shop.example" in names.asked
    # The seller reads that it failed; the operator's dead letter says why.
    assert (dead.attempts, dead.last_error) == (2, "failed")
    (letter,) = letters
    assert "127.0.0.1, a loopback address" in letter.error


async def test_a_name_with_any_address_inside_is_refused() -> None:
    names = StubNames(
        {"mixed.example": ["93.184.216.34", "10.0.0.7"], "public.example": ["93.184.216.34"]}
    )
    resolver = GuardedResolver(OutboundGuard(), names)
    with pytest.raises(ForbiddenDestination, match=r"10\.0\.0\.7, a private address"):
        await resolver.resolve("mixed.example", 443)
    (found,) = await resolver.resolve("public.example", 443)
    assert found["host"] == "93.184.216.34"


async def test_the_allow_list_lets_a_local_receiver_through(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The name is known to the stub alone, so the post reaching the receiver went to the
    # address that was looked up and checked, not to one found some other way.
    names = StubNames({"hooks.shop.example": ["127.0.0.1"]})
    async with notifications(tmp_path, names, allowed="127.0.0.0/8") as world:
        seller = Actor(id="seller-1", role="seller")
        await world.api.set_webhook(seller, receiver.url("hooks.shop.example"))
        await world.order_for(seller)
        delivered = await world.delivery(seller, "delivered")

        other = Actor(id="seller-2", role="seller")
        await world.api.set_webhook(other, receiver.url())  # an address, as written
        await world.order_for(other)
        await world.delivery(other, "delivered")
        # What the list does not name stays refused.
        with pytest.raises(ForbiddenDestination):
            await world.api.set_webhook(other, "http://10.0.0.8/")
    assert delivered.last_error is None
    assert len(receiver.posts) == 2


async def test_a_redirect_is_not_followed(tmp_path: Path, receiver: Receiver) -> None:
    async with notifications(tmp_path, StubNames({}), allowed="127.0.0.1") as world:
        seller = Actor(id="seller-1", role="seller")
        await world.api.set_webhook(seller, receiver.url(path="/moved"))
        await world.order_for(seller)
        dead = await world.delivery(seller, "dead")
    assert receiver.moved == 2 and receiver.posts == []
    assert dead.last_error == "failed (HTTP 307)"


async def test_a_seller_reads_failed_not_what_could_not_be_reached(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    async with notifications(tmp_path, StubNames({}), allowed="127.0.0.1") as world:
        seller = Actor(id="seller-1", role="seller")
        await world.api.set_webhook(seller, f"http://127.0.0.1:{closed}/hooks")
        await world.order_for(seller)
        dead = await world.delivery(seller, "dead")
        # A row an older version recorded with the reason in it is shown the same way.
        db = world.runtime.databases["notifications"]
        await db.execute(
            "UPDATE deliveries SET last_error = ? WHERE id = ?",
            (
                f"Cannot connect to host 127.0.0.1:{closed} ssl:default [Connect call failed]",
                dead.id,
            ),
        )
        (shown,) = await world.api.webhook_deliveries(seller)
    assert dead.last_error == "failed"
    assert shown.last_error == "failed"


@pytest.mark.parametrize(
    ("recorded", "shown"),
    [
        (None, None),
        ("HTTP 500", "failed (HTTP 500)"),
        ("failed (HTTP 404)", "failed (HTTP 404)"),
        ("failed", "failed"),
        ("webhooks:http://127.0.0.1:4222: cannot connect to 127.0.0.1:4222", "failed"),
        ("no answer within 2.5 s", "failed"),
    ],
)
def test_what_a_seller_may_read_of_a_failure(recorded: str | None, shown: str | None) -> None:
    assert webhooks.shown_error(recorded) == shown


async def test_the_operators_own_third_parties_are_reached_on_loopback(
    receiver: Receiver,
) -> None:
    # The payment provider and the mail server are the operator's, configured, not given by
    # a user: no guard, so an operator may run them on this host.
    http = HttpClient(Resilience())
    try:
        answer = await http.request("payment-provider", receiver.url(path=""), "POST", "/hooks")
        with pytest.raises(ForbiddenDestination):
            await http.request(
                "webhooks:x", receiver.url(path=""), "POST", "/hooks", guard=OutboundGuard()
            )
    finally:
        await http.close()
    assert answer.status == 204 and len(receiver.posts) == 1


# The address checker


@pytest.mark.parametrize(
    ("written", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.65535", "10.0.255.255"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::FFFF:127.0.0.1", "::ffff:7f00:1"),
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_every_spelling_of_an_address_is_read_as_the_resolver_reads_it(
    written: str, address: str
) -> None:
    assert parse_address(written) == ipaddress.ip_address(address)
    # The standard library's own reader agrees, where it reads the spelling at all.
    if written.isascii() and ":" not in written and not written.endswith("."):
        assert socket.inet_aton(written) == ipaddress.IPv4Address(address).packed


@pytest.mark.parametrize(
    "written", ["example.com", "1.2.3.4.5", "256.0.0.1", "0x1.0x2.0x3.0x100", "09.0.0.1", ""]
)
def test_a_name_is_not_an_address(written: str) -> None:
    assert parse_address(written) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("100.127.255.255", "shared"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.3.4", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.1.2.3", "unspecified"),
        ("192.0.2.10", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00::1", "private"),
        ("fe80::abcd", "link-local"),
        ("ff05::2", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_addresses_inside_are_named_for_what_they_are(address: str, kind: str) -> None:
    why = forbidden_kind(ipaddress.ip_address(address))
    assert why is not None and kind in why


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:1.1.1.1"]
)
def test_public_addresses_are_not_refused(address: str) -> None:
    assert forbidden_kind(ipaddress.ip_address(address)) is None


def test_the_allow_list_names_hosts_addresses_and_networks() -> None:
    guard = OutboundGuard.allowing(" Receiver.Test. , 127.0.0.1, 10.8.0.0/16 ,::1,")
    assert guard.refusal("http://receiver.test:9000/") is None
    assert guard.refusal("http://127.0.0.1:9000/") is None
    assert guard.refusal("http://2130706433:9000/") is None  # the same address, however written
    assert guard.refusal("http://[::ffff:127.0.0.1]/") is None
    assert guard.refusal("http://10.8.200.1/") is None
    assert guard.refusal("http://[::1]/") is None
    assert "loopback" in (guard.refusal("http://127.0.0.2/") or "")
    assert "private" in (guard.refusal("http://10.9.0.1/") or "")
    assert "loopback" in (guard.refusal("http://localhost/") or "")
    assert OutboundGuard.allowing("") == OutboundGuard()


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "http://localhost", "::1/200"])
def test_an_allow_list_entry_that_is_no_host_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host"):
        OutboundGuard.allowing(entry)


def test_settings_carry_the_allow_list_from_the_environment() -> None:
    settings = Settings.from_env({"COLONY_INTERNAL_HOSTS_ALLOWED": "127.0.0.1,localhost"})
    guard = OutboundGuard.allowing(settings.internal_hosts_allowed)
    assert guard.refusal("http://localhost:8000/") is None
    assert Settings().internal_hosts_allowed == ""
