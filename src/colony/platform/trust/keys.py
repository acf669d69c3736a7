"""Service identities' keys: each identity (a service, the gateway, an operator's tool) signs
with an Ed25519 key of its own, and every process trusts the public keys of one bundle.

Where keys come from:

- **one process**: :class:`InMemoryKeys`, made at start and never written anywhere (the only
  calls that cross a boundary there are to itself);
- **one process per service**: :class:`KeyDirectory`, the data dir's ``keys`` folder, which
  ``colony up --distributed`` (or ``colony keys init``) fills before any process starts;
- **Kubernetes**: the same layout from a Secret mounted read-only (``COLONY_KEYS_DIR``).

A keys directory holds ``trust.json`` (the bundle: every identity's public keys as JWKs, each
with its ``kid``, the identity it belongs to and, once retired, ``not_after``) and one
``<identity>.json`` per identity (its current key id and private key, mode 0600).

**Rotation without downtime** (:func:`rotate`): the new public keys join the bundle first,
while the old ones stay valid for an overlap; only once every process has had time to reload
the bundle do the private key files change, so no process signs with a key another does not
trust yet; the old keys expire from the bundle after the overlap (longer than a token lives).
Processes look at the files' modification times every few seconds and reload what changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from colony.platform.ids import new_id

BUNDLE = "trust.json"
RELOAD_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key and its id: what signs a service's calls here, and people's
    tokens in identity."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Self:
        return cls(new_id()[:16], Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, kid: str, pem: str) -> Self:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"key {kid} is not an Ed25519 key")
        return cls(kid, key)

    def public_jwk(self, identity: str | None = None) -> dict[str, Any]:
        """The public half as a JWK; ``identity`` names whose it is in a trust bundle."""
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private_key.public_key()))
        jwk |= {"kid": self.kid, "alg": "EdDSA", "use": "sig"}
        return jwk if identity is None else {**jwk, "colony_identity": identity}

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()


@dataclass(frozen=True, slots=True)
class TrustedKey:
    identity: str
    key: Ed25519PublicKey
    not_after: float | None = None
    """Wall-clock seconds after which the key is no longer trusted (a retired key)."""

    def valid(self, now: float) -> bool:
        return self.not_after is None or now < self.not_after


class KeyStore(Protocol):
    """What token signing and verification need: an identity's current signing key, and a
    public key by its id with the identity it belongs to."""

    def signing_key(self, identity: str) -> SigningKey: ...

    def trusted(self, kid: str) -> TrustedKey | None: ...

    @property
    def version(self) -> int:
        """Changes whenever the keys do, so caches built on them know to start again."""
        ...


class InMemoryKeys:
    """Keys made on first use, held by this process alone."""

    version = 0

    def __init__(self) -> None:
        self._signing: dict[str, SigningKey] = {}
        self._trusted: dict[str, TrustedKey] = {}

    def signing_key(self, identity: str) -> SigningKey:
        key = self._signing.get(identity)
        if key is None:
            key = self._signing[identity] = SigningKey.generate()
            self._trusted[key.kid] = TrustedKey(identity, key.private_key.public_key())
        return key

    def trusted(self, kid: str) -> TrustedKey | None:
        return self._trusted.get(kid)


class MissingKey(Exception):
    """This process has no key for the identity it must sign as."""


class KeyDirectory:
    """The keys of a directory (see the module's docstring), reloaded when its files change.
    With ``create_missing``, an identity that has no key yet gets one on first use (for a
    directory this process may write: a marketplace started by hand, its operator's
    commands); a read-only one (a mounted Secret) must hold every key it is asked for."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
        create_missing: bool = False,
    ) -> None:
        self.path = path
        self.create_missing = create_missing
        self._version = 0
        self._clock = clock
        self._next_look = 0.0
        self._last_forced = -1.0
        self._seen: dict[str, float] = {}
        self._signing: dict[str, SigningKey] = {}
        self._trusted: dict[str, TrustedKey] = {}

    @property
    def version(self) -> int:
        self._look()
        return self._version

    def signing_key(self, identity: str) -> SigningKey:
        self._look()
        key = self._signing.get(identity)
        if key is None:
            try:
                key = self._read_signing_key(identity)
            except MissingKey:
                if not self.create_missing:
                    raise
                try:
                    provision(self.path, [identity])
                except OSError as exc:
                    raise MissingKey(f"Cannot make a key for {identity!r}: {exc}") from exc
                self._next_look = 0.0
                self._look()
                key = self._read_signing_key(identity)
            self._signing[identity] = key
        return key

    def trusted(self, kid: str) -> TrustedKey | None:
        self._look()
        if not self._trusted:
            self._trusted = self._read_bundle()
        found = self._trusted.get(kid)
        now = self._clock()
        if found is None and now - self._last_forced > 0.2:
            # A key made a moment ago (a process that has just started) need not wait for
            # the next look; a flood of unknown ids costs one read per 0.2 s at most.
            self._last_forced = now
            self._next_look = 0.0
            self._look()
            self._trusted = self._read_bundle()
            found = self._trusted.get(kid)
        return found

    def _look(self) -> None:
        """At most every ``RELOAD_SECONDS``: drop what changed on disk, to be read again."""
        now = self._clock()
        if now < self._next_look:
            return
        self._next_look = now + RELOAD_SECONDS
        try:
            stamps = {p.name: p.stat().st_mtime for p in self.path.glob("*.json")}
        except OSError:
            return
        if stamps != self._seen:
            if self._seen:
                self._version += 1
            self._seen = stamps
            self._signing.clear()
            self._trusted.clear()

    def _read_signing_key(self, identity: str) -> SigningKey:
        file = self.path / f"{identity}.json"
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise MissingKey(
                f"No signing key for {identity!r} in {self.path} (run `colony keys init`)."
            ) from exc
        try:
            return SigningKey.from_pem(str(data["kid"]), data["private_pem"])
        except ValueError as exc:
            raise MissingKey(f"The key of {identity!r} in {self.path} is unusable: {exc}") from exc

    def _read_bundle(self) -> dict[str, TrustedKey]:
        try:
            document = json.loads((self.path / BUNDLE).read_text())
        except (OSError, ValueError):
            return {}
        return _parse_bundle(document)


def _parse_bundle(document: dict[str, Any]) -> dict[str, TrustedKey]:
    trusted: dict[str, TrustedKey] = {}
    for jwk in document.get("keys", []):
        key = jwt.PyJWK.from_dict(jwk).key
        if isinstance(key, Ed25519PublicKey):
            trusted[jwk["kid"]] = TrustedKey(jwk["colony_identity"], key, jwk.get("not_after"))
    return trusted


# --- making and rotating a keys directory ------------------------------------------------------


def provision(path: Path, identities: Iterable[str]) -> list[str]:
    """Give every identity that has none a key, and trust it; returns the identities added.
    Keys already there are kept, so running it again (each ``colony up``) changes nothing."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    with _locked(path):
        bundle = _load_document(path)
        added = []
        for identity in identities:
            if identity == BUNDLE.removesuffix(".json") or "/" in identity:
                raise ValueError(f"{identity!r} cannot name an identity")
            if (path / f"{identity}.json").exists():
                continue
            key = SigningKey.generate()
            bundle["keys"].append(key.public_jwk(identity))
            # The public key first: a process that sees the private one may sign at once.
            _write_document(path, bundle)
            _write_private(path, identity, key)
            added.append(identity)
    return added


def rotate(
    path: Path,
    identities: Iterable[str],
    overlap_seconds: float,
    wait: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Replace each identity's key with a new one, without a moment when a process signs with
    a key that another does not trust: trust the new keys (retiring the old ones after
    ``overlap_seconds``), wait for every process to reload the bundle, then switch."""
    names = list(identities)
    with _locked(path):
        bundle = _trust_new_keys(path, names, overlap_seconds)
    wait(2 * RELOAD_SECONDS + 0.5)
    with _locked(path):
        for identity, key in bundle.items():
            _write_private(path, identity, key)
    return names


def _trust_new_keys(path: Path, names: list[str], overlap_seconds: float) -> dict[str, SigningKey]:
    bundle = _load_document(path)
    retire_at = time.time() + overlap_seconds
    fresh = {identity: SigningKey.generate() for identity in names}
    kept = []
    for jwk in bundle["keys"]:
        expired = jwk.get("not_after") is not None and jwk["not_after"] <= time.time()
        if expired:
            continue  # retired by an earlier rotation and past its overlap
        if jwk.get("colony_identity") in fresh and jwk.get("not_after") is None:
            jwk = {**jwk, "not_after": retire_at}
        kept.append(jwk)
    bundle["keys"] = kept + [key.public_jwk(identity) for identity, key in fresh.items()]
    _write_document(path, bundle)
    return fresh


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer of a keys directory at a time, across processes (each starting process may
    add its key): the bundle is read, changed and written whole."""
    with open(path / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads((path / BUNDLE).read_text())
    except FileNotFoundError:
        return {"keys": []}
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{path / BUNDLE} is not a trust bundle")
    return document


def _write_document(path: Path, document: dict[str, Any]) -> None:
    _write_atomically(path / BUNDLE, json.dumps(document, indent=2), 0o644)


def _write_private(path: Path, identity: str, key: SigningKey) -> None:
    body = json.dumps({"identity": identity, "kid": key.kid, "private_pem": key.private_pem()})
    _write_atomically(path / f"{identity}.json", body, 0o600)


def _write_atomically(file: Path, text: str, mode: int) -> None:
    """Readers see the old file or the new one, never half of one."""
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, file)
