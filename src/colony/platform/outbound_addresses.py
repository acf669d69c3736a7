"""Which addresses a URL that a user gave may reach: the public internet, nothing inside.

A seller's webhook URL is a request we make on a stranger's behalf. Pointed at ``127.0.0.1``,
a private network or a cloud's metadata service, it would make the marketplace post into
places only it can reach, and its delivery log a port scanner. So a URL a user gives is
refused when its host is, or resolves to, a loopback, private, link-local, multicast,
unspecified, reserved or shared (carrier-grade NAT) address, or an IPv6 form of one (IPv4
mapped, NAT64, 6to4), written in any spelling that a resolver or an HTTP client would accept
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``, a trailing dot,
capitals, full-width IDNA characters).

The check is made twice. When the URL is given (:meth:`OutboundGuard.refusal`), on the name
alone, without DNS: a name may resolve anywhere later. And when it is used, on the addresses
the connection goes to: :class:`GuardedResolver` looks a name up once, refuses it if any of
its addresses is inside, and hands the checked addresses to aiohttp, which connects to those
and no others (so a name re-pointed between a check and the connection, DNS rebinding, gains
nothing). Third parties the operator configures (the payment provider, the SMTP server) are
not checked: an operator may run them on this host.

For development, :attr:`Settings.internal_hosts_allowed
<colony.platform.config.Settings.internal_hosts_allowed>` names hosts and networks that may be
reached anyway (a local test receiver).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from colony.platform.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForbiddenDestination(InvalidInput):
    """A URL a user gave would reach inside: refused before anything is sent."""

    slug = "forbidden-destination"
    title = "The address may not be reached"


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# The first that holds an address names why it is refused. Explicit rather than the stdlib's
# is_private / is_global, whose lists have changed between Python patch releases.
_CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_IPV4_KINDS: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("an unspecified address", _networks("0.0.0.0/8")),
    ("a loopback address", _networks("127.0.0.0/8")),
    ("a private address", _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("a shared (carrier-grade NAT) address", _networks("100.64.0.0/10")),
    ("a link-local address", _networks("169.254.0.0/16")),
    ("a multicast address", _networks("224.0.0.0/4")),
    ("a broadcast address", _networks("255.255.255.255/32")),
    (
        "a reserved address",
        _networks(
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",
        ),
    ),
)
_IPV6_KINDS: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("an unspecified address", _networks("::/128")),
    ("a loopback address", _networks("::1/128")),
    ("a private address", _networks("fc00::/7", "fec0::/10", "64:ff9b:1::/48")),
    ("a link-local address", _networks("fe80::/10")),
    ("a multicast address", _networks("ff00::/8")),
    (
        "a reserved address",
        # ::/96 holds the deprecated IPv4-compatible forms (::127.0.0.1); 2001::/32 is Teredo,
        # whose embedded client address is not ours to vet.
        _networks("::/8", "100::/64", "2001::/32", "2001:db8::/32", "2001:10::/28"),
    ),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_SUFFIXES = ("local", "internal", "home.arpa", "localdomain")
"""Names that resolve only inside a network (RFC 6761, 6762, 8375; ICANN's ``.internal``)."""
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def forbidden_kind(address: IPAddress) -> str | None:
    """Why ``address`` is inside ("a loopback address"), or None for the public internet.
    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that one."""
    if address in _CLOUD_METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind = forbidden_kind(embedded)
            return None if kind is None else f"{kind} (as IPv6)"
        kinds = _IPV6_KINDS
    else:
        kinds = _IPV4_KINDS
    for kind, networks in kinds:
        if any(address in network for network in networks):
            return kind
    if address.is_multicast:
        return "a multicast address"
    return None if address.is_global else "a reserved address"


def parse_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, however it spells it: IPv6 (bracketed or not), or IPv4 as
    ``inet_aton`` reads it (one to four parts, each decimal, octal with a leading 0 or hex with
    0x: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``), the trailing dot, capitals and
    full-width characters of IDNA forgiven. None for a name."""
    text = _normalized(host)
    if text is None:
        return None
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _legacy_ipv4(text)


@dataclass(frozen=True, slots=True)
class OutboundGuard:
    """Refuses destinations inside, except the hosts and networks it is told to allow."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, entries: str | Iterable[str]) -> OutboundGuard:
        """From a comma-separated list (or an iterable) of host names, addresses and CIDR
        networks: ``"localhost,127.0.0.1,10.8.0.0/16"``. An entry that is none of these
        raises ValueError."""
        items = entries.split(",") if isinstance(entries, str) else list(entries)
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in (item.strip() for item in items):
            if not raw:
                continue
            if "/" in raw or parse_address(raw) is not None:
                try:
                    address = parse_address(raw)
                    network = ipaddress.ip_network(address or raw, strict=False)
                    networks.append(network)
                except ValueError:
                    raise ValueError(f"not a host, an address or a network: {raw!r}") from None
                continue
            name = _normalized(raw)
            if name is None or not _is_name(name):
                raise ValueError(f"not a host, an address or a network: {raw!r}")
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be reached, as a phrase to follow its host ("points to
        127.0.0.1, a loopback address"), or None. Judged on the host as written, without
        DNS, as both Python's and aiohttp's parsers read it, so neither can be steered past
        the other."""
        hosts: list[str | None] = []
        try:
            hosts.append(urlsplit(url).hostname)
        except ValueError:
            return "is not a URL"
        try:
            hosts.append(yarl.URL(url).host)
        except ValueError:
            return "is not a URL that can be sent to"
        for host in dict.fromkeys(hosts):
            if not host:
                return "has no host"
            why = self.host_refusal(host)
            if why is not None:
                return why
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why ``host`` (a name or an address, as a URL holds it) may not be reached."""
        name = _normalized(host)
        if name is None:
            return f"names a host that is not valid ({host})"
        if name in self.allowed_names:
            return None
        address = parse_address(name)
        if address is not None:
            return self.address_refusal(address, host)
        if not _is_name(name) or _NUMERIC.match(name.rsplit(".", 1)[-1]):
            return f"names a host that is not valid ({host})"
        if name == "localhost" or name.endswith(".localhost"):
            return f"names this machine ({host}), a loopback address"
        for suffix in _LOCAL_SUFFIXES:
            if name == suffix or name.endswith("." + suffix):
                return f"names a host that only a local network resolves ({host})"
        if "." not in name:
            return f"names a host without a domain ({host}), which only a local network resolves"
        return None

    def address_refusal(self, address: IPAddress, written: str | None = None) -> str | None:
        """Why ``address`` may not be connected to, or None (public, or allowed)."""
        if self._allows(address):
            return None
        kind = forbidden_kind(address)
        if kind is None:
            return None
        if written is not None and _normalized(written) != str(address):
            return f"points to {address} ({written}), {kind}"
        return f"points to {address}, {kind}"

    def name_allowed(self, host: str) -> bool:
        return _normalized(host) in self.allowed_names

    def _allows(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate in network for candidate in candidates for network in self.allowed_networks
        )


class GuardedResolver(AbstractResolver):
    """Looks names up (with ``resolver``, by default the system's) and refuses a name any of
    whose addresses the guard refuses; aiohttp then connects only to the addresses returned,
    so what was checked is what is connected to. Names the guard allows are not checked."""

    def __init__(self, guard: OutboundGuard, resolver: AbstractResolver | None = None) -> None:
        self.guard = guard
        self._resolver = resolver if resolver is not None else DefaultResolver()
        self._owned = resolver is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if self.guard.name_allowed(host):
            return found
        for result in found:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            why = self.guard.address_refusal(address)
            if why is not None:
                raise ForbiddenDestination(f"{host} {why}")
        return found

    async def close(self) -> None:
        if self._owned:
            await self._resolver.close()


# Helpers


def _normalized(host: str) -> str | None:
    """``host`` as a resolver sees it: IDNA-mapped (full-width forms and capitals folded),
    brackets and trailing dots gone. None when it cannot be a host at all."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:  # IPv6: only a zone may follow a %
        address, _, zone = text.partition("%")
        return address.lower() + (f"%{zone}" if zone else "")
    text = unicodedata.normalize("NFKC", text).translate(_IDNA_DOTS).rstrip(".")
    if not text:
        return None
    try:
        return ".".join(
            label.encode("idna").decode("ascii").lower() if not label.isascii() else label.lower()
            for label in text.split(".")
        )
    except UnicodeError:
        return None


def _is_name(name: str) -> bool:
    return len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def _legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_aton_part(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _inet_aton_part(part: str) -> int | None:
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isascii() and part.isdigit() else None
    except ValueError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
