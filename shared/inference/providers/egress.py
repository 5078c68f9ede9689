"""An HTTP client for a user's own base_url that connects only to the
addresses the operator allows.

The check is made on the address actually connected to: the host is
resolved once, each address is checked, and the connection is opened to
that checked address, not to the name again. A name that resolves to a
private address, or that answers a public address to a first lookup and a
private one to the next (DNS rebinding), never reaches the private one.
Redirects are not followed, and proxies from the environment are not used
(a proxy would connect on our behalf, out of sight of the check).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from functools import cache

import httpcore
import httpx

from shared.errors import AppError
from shared.provider_config import AllowedHosts

# (host, port) -> the addresses to try, in order.
Resolver = Callable[[str, int], list[str]]


class AddressRefused(AppError):
    """The host of a user's base_url leads only to addresses that the
    operator does not allow."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        # As httpcore itself reports a failed lookup: a transient failure.
        raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
    addresses: list[str] = []
    for _family, _type, _proto, _name, address in found:
        text = str(address[0]).split("%", 1)[0]  # an IPv6 zone, fe80::1%eth0
        if text not in addresses:
            addresses.append(text)
    return addresses


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting only to allowed addresses."""

    def __init__(self, allowed: AllowedHosts, resolve: Resolver = system_resolver) -> None:
        self.allowed = allowed
        self.resolve = resolve
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if self.allowed.allows_name(host):
            return self._sockets.connect_tcp(host, port, timeout, local_address, socket_options)
        reasons: list[str] = []
        failure: httpcore.ConnectError | None = None
        for text in self.resolve(host, port):
            reason = self.allowed.reason(ipaddress.ip_address(text))
            if reason is not None:
                reasons.append(reason)
                continue
            try:
                # The checked address itself: the name is not looked up again.
                return self._sockets.connect_tcp(text, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                failure = error
        if failure is not None:
            raise failure
        raise AddressRefused(_refusal(host, reasons))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise AddressRefused("a user's base_url may not reach a unix socket")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


def _refusal(host: str, reasons: list[str]) -> str:
    advice = "the operator can allow hosts in PROVIDER_ALLOWED_HOSTS"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # What a name resolves to stays inside: only the kinds of address.
        kinds = ", ".join(sorted(set(reasons))) or "none found"
        return f"{host} resolves only to addresses a user's server may not have ({kinds}); {advice}"
    return f"{host} is {reasons[0] if reasons else 'not reachable'}; {advice}"


@cache
def tls_context() -> ssl.SSLContext:
    """One per process for every provider call: loading the certificate
    authorities takes some 35 ms, which a client per call would pay each
    time (twice for a guarded one). A context is safe to share between
    connections and threads."""
    return httpx.create_ssl_context()


def guarded_client(
    allowed: AllowedHosts, timeout: float, resolve: Resolver = system_resolver
) -> httpx.Client:
    """An httpx client for a user's base_url: checked connections, no
    redirects, no proxies from the environment."""
    transport = httpx.HTTPTransport(verify=tls_context(), trust_env=False)
    # httpx takes no network backend, but its connection pool (httpcore's,
    # whose `network_backend` is public) does: the transport's pool is
    # replaced by one that connects through the guard. tests/shared/
    # inference/test_egress.py fails if a new httpx stops using it.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=tls_context(), network_backend=GuardedBackend(allowed, resolve)
    )
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
