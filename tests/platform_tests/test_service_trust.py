"""Zero trust between services: every call over HTTP carries a signed token naming caller,
callee and actor; the callee verifies it and checks the method's list of allowed callers, and
the in-process binding checks the same list."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colony.platform.clock import utc_now_iso
from colony.platform.errors import Forbidden
from colony.platform.ids import new_id
from colony.platform.messaging import Consumer, Message, Outbox
from colony.platform.messaging.consumer import RetryPolicy, list_dead_letters
from colony.platform.runtime.http_binding import HttpClientFactory, rpc_app
from colony.platform.runtime.inprocess_binding import guarded
from colony.platform.runtime.interface import callers
from colony.platform.security import Actor
from colony.platform.trust import (
    InMemoryKeys,
    KeyDirectory,
    TokenIssuer,
    TokenVerifier,
    provision,
    rotate,
    spiffe_id,
)
from colony.platform.web.server import HttpServer, free_port
from messaging_support import Deposited, open_db

BUYER = Actor(id="buyer-1", role="buyer")


class Vault(Protocol):
    service_name: ClassVar[str] = "vault"

    @callers("orders")
    async def capture(self, actor: Actor, order_id: str) -> str: ...

    @callers("gateway", "orders", for_users=("gateway", "orders"))
    async def balance(self, actor: Actor) -> str: ...

    @callers("gateway", "orders")
    async def open_hours(self) -> str: ...


class VaultService:
    async def capture(self, actor: Actor, order_id: str) -> str:
        return f"{order_id} captured for {actor.role}:{actor.id}"

    async def balance(self, actor: Actor) -> str:
        return f"balance of {actor.role}:{actor.id}"

    async def open_hours(self) -> str:
        return "9-5"


KEYS = InMemoryKeys()


def app() -> Any:
    return rpc_app(Vault, VaultService(), TokenVerifier("vault", KEYS))


async def post(method: str, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://vault") as client:
        return await client.post(f"/rpc/{method}", json=body, headers=headers)


def claims(identity: str, audience: str = "vault", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": spiffe_id(identity),
        "sub": spiffe_id(identity),
        "aud": spiffe_id(audience),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "colony_actor": {"id": identity, "role": "system"},
        **extra,
    }


def signed(payload: dict[str, Any], identity: str = "orders") -> str:
    key = KEYS.signing_key(identity)
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the token ---------------------------------------------------------------------------------


async def test_a_valid_token_is_served_and_the_actor_comes_from_it() -> None:
    token = TokenIssuer("orders", KEYS).token("vault", Actor.system("orders"))
    answer = await post("capture", {"order_id": "o-1"}, token)
    assert answer.status_code == 200, answer.text
    assert answer.json() == "o-1 captured for system:orders"


def bad_tokens() -> dict[str, str | None]:
    now = int(time.time())
    public_pem = (
        KEYS.signing_key("orders")
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    good = signed(claims("orders"))
    header, payload, signature = good.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_claims["colony_actor"] = {"id": "admin-1", "role": "admin"}
    stranger = Ed25519PrivateKey.generate()
    identity_user_token = jwt.encode(  # what the gateway accepts from a person
        {"iss": "colony-identity", "aud": "colony", "sub": "buyer-1", "role": "buyer"}
        | {"iat": now, "exp": now + 300},
        stranger,
        algorithm="EdDSA",
        headers={"kid": "identity-key"},
    )
    return {
        "missing": None,
        "empty": "",
        "not a JWT": "not-a-token",
        "expired": signed(claims("orders", iat=now - 900, nbf=now - 900, exp=now - 600)),
        "not yet valid": signed(claims("orders", nbf=now + 600, exp=now + 900)),
        "wrong audience": signed(claims("orders", audience="payments")),
        "wrong issuer": signed(
            claims("orders", iss=spiffe_id("gateway"), sub=spiffe_id("gateway"))
        ),
        "subject is not the issuer": signed(claims("orders", sub=spiffe_id("gateway"))),
        "alg none": jwt.encode(claims("orders"), None, algorithm="none"),
        "HS256 with the public key": (
            b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            + "."
            + b64(json.dumps(claims("orders")).encode())
            + "."
            + b64(__import__("hmac").new(public_pem, digestmod="sha256").digest())
        ),
        "unknown kid": jwt.encode(
            claims("orders"), stranger, algorithm="EdDSA", headers={"kid": "no-such-key"}
        ),
        "tampered payload": f"{header}.{b64(json.dumps(forged_claims).encode())}.{signature}",
        "a person's token from identity": identity_user_token,
        "no lifetime": signed({k: v for k, v in claims("orders").items() if k != "exp"}),
        "an invalid actor claim": signed(claims("orders", colony_actor={"id": 1, "role": "root"})),
    }


@pytest.mark.parametrize("kind", list(bad_tokens()))
async def test_every_bad_token_is_refused_with_401(kind: str) -> None:
    answer = await post("capture", {"order_id": "o-1"}, bad_tokens()[kind])
    assert answer.status_code == 401, (kind, answer.text)
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_token_for_one_service_replayed_to_another_is_refused() -> None:
    for_payments = TokenIssuer("orders", KEYS).token("payments", Actor.system("orders"))
    answer = await post("capture", {"order_id": "o-1"}, for_payments)
    assert answer.status_code == 401
    assert "another service" in answer.json()["detail"]


async def test_nothing_about_the_methods_is_told_without_a_token() -> None:
    assert (await post("no_such_method", {}, None)).status_code == 401


# --- who may call what -------------------------------------------------------------------------


async def test_a_caller_not_on_the_list_is_refused_with_403() -> None:
    token = TokenIssuer("cart", KEYS).token("vault", Actor.system("cart"))
    answer = await post("capture", {"order_id": "o-1"}, token)
    assert answer.status_code == 403, answer.text


async def test_only_callers_named_for_people_may_act_for_a_person() -> None:
    assert (await post("capture", {"order_id": "o-1"}, _token("orders", BUYER))).status_code == 403
    assert (
        await post("balance", {}, _token("gateway", BUYER))
    ).json() == "balance of buyer:buyer-1"
    assert (await post("balance", {}, _token("orders", BUYER))).status_code == 200


async def test_a_service_acts_as_the_system_only_as_itself() -> None:
    answer = await post("capture", {"order_id": "o-1"}, _token("orders", Actor.system("payments")))
    assert answer.status_code == 403
    assert "only as itself" in answer.json()["detail"]


async def test_a_method_that_acts_for_someone_needs_the_token_to_say_whom() -> None:
    answer = await post("capture", {"order_id": "o-1"}, _token("orders", None))
    assert answer.status_code == 403


async def test_the_actor_cannot_be_written_into_the_parameters() -> None:
    admin = {"id": "admin-1", "role": "admin"}
    answer = await post("balance", {"actor": admin}, _token("gateway", BUYER))
    assert answer.status_code in (400, 422), answer.text


async def test_a_method_without_an_actor_still_checks_the_caller() -> None:
    assert (await post("open_hours", {}, _token("orders", None))).json() == "9-5"
    assert (await post("open_hours", {}, _token("cart", None))).status_code == 403


def _token(identity: str, actor: Actor | None) -> str:
    return TokenIssuer(identity, KEYS).token("vault", actor)


async def test_the_http_client_signs_and_the_callee_sees_the_actor_it_signed() -> None:
    server = HttpServer(app(), "127.0.0.1", free_port())
    await server.start()
    factory = HttpClientFactory()
    try:
        as_orders = factory.client(Vault, [server.url], TokenIssuer("orders", KEYS))
        assert await as_orders.capture(Actor.system("orders"), "o-2") == (
            "o-2 captured for system:orders"
        )
        as_gateway = factory.client(Vault, [server.url], TokenIssuer("gateway", KEYS), "v2")
        with pytest.raises(Forbidden):
            await as_gateway.capture(Actor.system("gateway"), "o-3")
    finally:
        await factory.close()
        await server.stop()


# --- the same list in-process ----------------------------------------------------------------


async def test_the_in_process_binding_refuses_what_http_refuses() -> None:
    service = VaultService()
    orders = guarded(Vault, service, "orders")
    assert await orders.capture(Actor.system("orders"), "o-1") == "o-1 captured for system:orders"
    with pytest.raises(Forbidden):
        await guarded(Vault, service, "cart").capture(Actor.system("cart"), "o-1")
    with pytest.raises(Forbidden):
        await orders.capture(BUYER, "o-1")
    with pytest.raises(Forbidden):
        await orders.capture(actor=Actor.system("payments"), order_id="o-1")
    assert await guarded(Vault, service, "gateway").balance(BUYER) == "balance of buyer:buyer-1"


def test_every_interface_method_says_who_may_call_it() -> None:
    class Undeclared(Protocol):
        service_name: ClassVar[str] = "undeclared"

        async def anything(self) -> None: ...

    with pytest.raises(TypeError, match="does not say who may call it"):
        guarded(Undeclared, object(), "orders")


# --- keys on disk, and rotating them -------------------------------------------------------


def test_provisioned_keys_are_private_and_provisioning_again_keeps_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert provision(keys, ["orders", "payments"]) == ["orders", "payments"]
    assert stat.S_IMODE(os.stat(keys / "orders.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    before = (keys / "orders.json").read_text()
    assert provision(keys, ["orders", "payments", "gateway"]) == ["gateway"]
    assert (keys / "orders.json").read_text() == before


def test_a_process_without_its_key_says_so(tmp_path: Path) -> None:
    provision(tmp_path, ["orders"])
    with pytest.raises(Exception, match="No signing key for 'cart'"):
        TokenIssuer("cart", KeyDirectory(tmp_path)).token("vault")


def test_keys_rotate_without_a_refused_call(tmp_path: Path) -> None:
    provision(tmp_path, ["orders", "vault"])
    now = [0.0]
    caller_keys = KeyDirectory(tmp_path, clock=lambda: now[0])
    callee_keys = KeyDirectory(tmp_path, clock=lambda: now[0])
    issuer = TokenIssuer("orders", caller_keys)
    verifier = TokenVerifier("vault", callee_keys)
    old = issuer.token("vault", Actor.system("orders"))
    assert verifier.verify(old).identity == "orders"

    def meanwhile(seconds: float) -> None:
        # While the new public keys are trusted and before the private keys change, both
        # processes look again and calls go on with the old key.
        now[0] += seconds
        assert verifier.verify(issuer.token("vault", Actor.system("orders"))).identity == "orders"

    rotate(tmp_path, ["orders"], overlap_seconds=600, wait=meanwhile)
    now[0] += 10  # every process has looked at the files again
    new = issuer.token("vault", Actor.system("orders"))
    assert new != old
    assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
    assert verifier.verify(new).identity == "orders"
    assert verifier.verify(old).identity == "orders"  # the overlap: tokens already out still work

    # Past the overlap the old key is no longer trusted, whatever a cache remembered.
    bundle = json.loads((tmp_path / "trust.json").read_text())
    for key in bundle["keys"]:
        if "not_after" in key:
            key["not_after"] = time.time() - 1
    (tmp_path / "trust.json").write_text(json.dumps(bundle))
    os.utime(tmp_path / "trust.json", (time.time() + 5, time.time() + 5))
    now[0] += 10
    with pytest.raises(Exception, match="not trusted"):
        verifier.verify(old)
    assert verifier.verify(new).identity == "orders"


# --- events come only from the service that owns their type --------------------------------


async def test_an_event_from_a_service_that_does_not_own_it_is_never_applied(
    tmp_path: Path,
) -> None:
    sink = await open_db(tmp_path, "sink")
    applied: list[Deposited] = []

    async def on_deposited(event: Deposited) -> None:
        applied.append(event)

    consumer = Consumer("sink", sink, {Deposited: on_deposited}, RetryPolicy(attempts=3))

    def sent_by(source: str) -> Message:
        return Message(
            id=new_id(),
            topic=Deposited.topic,
            key="a",
            payload=msgspec.Raw(msgspec.json.encode(Deposited(account="a", amount=5))),
            created_at=utc_now_iso(),
            source=source,
        )

    try:
        await consumer.deliver_all([sent_by("mallory")])
        assert applied == []
        [letter] = await list_dead_letters(sink)
        assert letter.attempts == 1  # refused at once: asking again changes nothing
        assert "only test publishes it" in letter.error
        await consumer.deliver_all([sent_by("test")])
        assert [event.amount for event in applied] == [5]
    finally:
        await sink.close()


async def test_an_outbox_refuses_an_event_its_service_does_not_own(tmp_path: Path) -> None:
    db = await open_db(tmp_path, "shop")
    try:
        async with db.transaction():
            with pytest.raises(ValueError, match="not its event"):
                await Outbox(db, "shop").add(Deposited(account="a", amount=1), key="a")
    finally:
        await db.close()


def test_a_process_starting_later_makes_its_key_and_is_trusted_at_once(tmp_path: Path) -> None:
    provision(tmp_path, ["vault"])
    verifier = TokenVerifier("vault", KeyDirectory(tmp_path))
    verifier.verify(TokenIssuer("vault", KeyDirectory(tmp_path)).token("vault"))  # bundle read
    newcomer = TokenIssuer("cart", KeyDirectory(tmp_path, create_missing=True))
    assert verifier.verify(newcomer.token("vault")).identity == "cart"  # no 2 s wait
    assert stat.S_IMODE(os.stat(tmp_path / "cart.json").st_mode) == 0o600
    read_only = TokenIssuer("orders", KeyDirectory(tmp_path))
    with pytest.raises(Exception, match="No signing key for 'orders'"):
        read_only.token("vault")


# --- parameters as declared ------------------------------------------------------------------


class Till(Protocol):
    service_name: ClassVar[str] = "vault"

    @callers("orders")
    async def deposit(
        self, actor: Actor, amount: Annotated[int, msgspec.Meta(ge=1, le=100)]
    ) -> int: ...


class TillService:
    async def deposit(self, actor: Actor, amount: int) -> int:
        return amount


@pytest.mark.parametrize(
    ("amount", "status"),
    # 29.0 is an integer to JSON Schema; 2.5 is not, nor is "3".
    [(1, 200), (100, 200), (0, 422), (101, 422), (29.0, 200), (2.5, 422), ("3", 422)],
)
async def test_a_parameter_is_held_to_its_declared_constraints(amount: Any, status: int) -> None:
    app = rpc_app(Till, TillService(), TokenVerifier("vault", KEYS))
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {signed(claims('orders'))}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://vault") as client:
        answer = await client.post("/rpc/deposit", json={"amount": amount}, headers=headers)
    assert answer.status_code == status, answer.text
