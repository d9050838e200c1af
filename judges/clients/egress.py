"""Where a judge may send requests, and which key it may send: the egress policy.

A judge's base URL and key name are settings a researcher controls, so both are checked against
what the deployment allows (``STEPAUDIT_JUDGE_ALLOWED_HOSTS``, ``STEPAUDIT_JUDGE_KEY_ENVS``)
when the judge is saved *and* when a request is made: a judge saved under another policy, a row
edited in the database, or a name that resolves elsewhere by the time of the run (DNS
rebinding) is refused at connect time too. Django-free, like the rest of ``judges.clients``.

The rules, in order:

* only ``http`` and ``https``; no user name or password in the URL;
* an address that is never an LLM server is refused whatever the allow-list says: link-local
  (169.254.0.0/16, fe80::/10 — the cloud metadata services live there), the other metadata
  addresses (``fd00:ec2::254``, ``100.100.100.200``), unspecified, multicast and broadcast
  addresses, and the metadata host names;
* an IP address (or a name resolved to one) is allowed when an allowed network contains it;
* a name is allowed when it matches an allowed name (``host`` or ``*.suffix``), and then each
  address it resolves to must be a public one — a private, loopback or reserved address needs
  its network listed too (``localhost`` stands for the loopback networks).

Redirects are never followed (``allow_redirects=False`` in the client): an API endpoint that
answers 3xx is misconfigured, and following it would send the key to a host nobody checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# Never a judge, whatever an allow-list says (cloud metadata services, link-local, ...).
NEVER_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("255.255.255.255/32"),
)
NEVER_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


class EgressRefused(OSError):
    """The URL, the address it resolves to, or the key name is not allowed for a judge.

    An ``OSError`` so that aiohttp passes it up from the resolver as the connection error's
    cause (``ClientConnectorError.os_error``), where the client tells it from a network fault.
    """


def _address(text: str) -> IPAddress | None:
    """An IP address written in ``text`` (brackets allowed), IPv4-mapped IPv6 unwrapped."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _never(address: IPAddress) -> bool:
    return any(
        address in network for network in NEVER_NETWORKS if network.version == address.version
    )


@dataclass(frozen=True)
class EgressPolicy:
    """The hosts a judge may call and the key names it may send (see the module docstring).

    >>> policy = EgressPolicy.from_settings(["api.example.com", "10.0.0.0/8"], key_envs=["JK"])
    >>> policy.check_url("https://api.example.com/v1")
    'api.example.com'
    >>> policy.check_url("http://169.254.169.254/latest/meta-data/")
    Traceback (most recent call last):
    ...
    judges.clients.egress.EgressRefused: 169.254.169.254 is link-local or metadata: never a judge
    >>> policy.check_key_env("SECRET_KEY")
    Traceback (most recent call last):
    ...
    judges.clients.egress.EgressRefused: SECRET_KEY is not a judge key name (allowed: JK)
    """

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    key_envs: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, hosts: Iterable[str], *, key_envs: Iterable[str] = ()) -> EgressPolicy:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in hosts:
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            if entry == "localhost":
                names.add(entry)
                networks.extend(LOOPBACK_NETWORKS)
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    names.add(entry.rstrip("."))
        return cls(
            names=frozenset(names),
            suffixes=tuple(suffixes),
            networks=tuple(networks),
            key_envs=frozenset(k.strip() for k in key_envs if k.strip()),
        )

    # -- keys ----------------------------------------------------------------------------------

    def check_key_env(self, name: str | None) -> None:
        """Refuse a key name the deployment did not list (``None``: no key, always fine)."""
        if name is None or name == "":
            return
        if name not in self.key_envs:
            allowed = ", ".join(sorted(self.key_envs)) or "none are set"
            raise EgressRefused(f"{name} is not a judge key name (allowed: {allowed})")

    # -- hosts ---------------------------------------------------------------------------------

    def _name_allowed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def _network_allowed(self, address: IPAddress) -> bool:
        return any(address in n for n in self.networks if n.version == address.version)

    def check_address(self, address: IPAddress, *, host: str) -> None:
        """Refuse ``address`` as the place a request for ``host`` would connect to."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if _never(address):
            raise EgressRefused(f"{address} is link-local or metadata: never a judge")
        if self._network_allowed(address):
            return
        if _address(host) is None and self._name_allowed(host) and address.is_global:
            return
        if _address(host) is None and self._name_allowed(host):
            raise EgressRefused(
                f"{host} resolves to {address}, a private or reserved address; list its network "
                "in STEPAUDIT_JUDGE_ALLOWED_HOSTS to allow it"
            )
        raise EgressRefused(
            f"{address} is not an allowed judge host (STEPAUDIT_JUDGE_ALLOWED_HOSTS)"
        )

    def check_url(self, url: str) -> str:
        """Refuse a URL a judge may not call; return its (lower-case) host. No DNS look-up."""
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a malformed port
        except ValueError as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise EgressRefused("only http and https URLs")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise EgressRefused("no user name or password in the URL (a key goes in a key name)")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        del port
        if host in NEVER_HOSTS:
            raise EgressRefused(f"{host} is a metadata service; judges may never call it")
        address = _address(host)
        if address is not None:
            self.check_address(address, host=host)
        elif not self._name_allowed(host):
            raise EgressRefused(
                f"{host} is not an allowed judge host (STEPAUDIT_JUDGE_ALLOWED_HOSTS)"
            )
        return host

    def check_url_resolved(self, url: str) -> None:
        """``check_url`` and every address the host resolves to now (used when saving)."""
        host = self.check_url(url)
        if _address(host) is not None:
            return
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise EgressRefused(f"{host} does not resolve: {exc.strerror or exc}") from None
        for info in infos:
            self.check_address(ipaddress.ip_address(info[4][0].split("%")[0]), host=host)


class PolicyResolver:
    """An aiohttp resolver that checks every address a name resolves to before a connection.

    Wraps aiohttp's own resolver, so the checked address is the one connected to: a name that
    is allowed but resolves to a refused address at run time (DNS rebinding) fails the call
    instead of reaching it. (aiohttp does not consult a resolver for an IP address in the URL;
    ``check_url`` covers those before the first request.)
    """

    def __init__(self, policy: EgressPolicy, inner: Any | None = None) -> None:
        import aiohttp  # only the client needs it; keeps this module importable without it

        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        records = await self.inner.resolve(host, port, family)
        for record in records:
            self.policy.check_address(ipaddress.ip_address(record["host"]), host=host.lower())
        return records

    async def close(self) -> None:
        await self.inner.close()
