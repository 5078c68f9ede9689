"""The LLM providers an installation may call, as its operator declares
them, and where a user's own `base_url` may lead.

Which credentials are sent, and to which hosts, is the operator's decision
alone. The operator names each provider: its protocol, its endpoint, the
environment variable that holds its key, how many calls may be in flight
and, if they like, the models it may be asked for. A post-processor picks a
provider by name and a model; it cannot name a variable, and a `base_url`
of its own (a user's vLLM or Ollama server) is allowed only where the
operator allows it, never gets the operator's key, and never reaches a
loopback, private or link-local address unless PROVIDER_ALLOWED_HOSTS lists
it.

This module only reads and checks the declarations; it sits beside the
settings, below everything that calls a provider.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# A provider's name, as the declarations, the request schemas and the
# OpenAPI document spell it; stored in post_processors.external_provider, a
# column of 20 characters.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,19}$"
NAME = re.compile(NAME_PATTERN)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9])?)*")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed "[" of an IPv6 address, a bad port
        return False


class ProviderConnection(BaseModel):
    """One provider, as the operator declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["openai", "anthropic"]
    base_url: str
    # The variable that holds the operator's key, read by the workers; ""
    # for an endpoint that needs none, or one where every user brings their
    # own key.
    api_key_env: str = ""
    # Calls in flight to this provider from one worker machine, at most
    # (all the processes that share a VAR_DIR); None: no limit.
    max_concurrency: int | None = Field(default=None, ge=1)
    # The models a post-processor may ask for; empty: any.
    models: tuple[str, ...] = ()
    # Whether a post-processor may send this protocol to a base_url of its
    # own (without the operator's key, and only to public addresses or
    # those in PROVIDER_ALLOWED_HOSTS).
    user_base_url: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not is_http_url(value):
            # Not echoed: an operator may have pasted a URL with a password.
            raise ValueError("must be an http(s) URL with a host")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if value and not ENV_NAME.fullmatch(value):
            # Not echoed: an operator may have pasted the key itself.
            raise ValueError("must be the name of an environment variable (letters, digits, _)")
        return value


# Without a declaration: today's simple case, each public API with the
# operator's key from its usual variable, and users' own servers allowed.
BUILT_IN: dict[str, ProviderConnection] = {
    "openai": ProviderConnection(
        protocol="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_API_KEY",
        user_base_url=True,
    ),
    "anthropic": ProviderConnection(
        protocol="anthropic",
        base_url="https://api.anthropic.com",
        api_key_env="ANTHROPIC_API_KEY",
        user_base_url=True,
    ),
}


def load_connections(text: str, file: Path | None) -> dict[str, ProviderConnection]:
    """The declared providers: JSON in `text` (PROVIDERS), or a TOML or JSON
    file (PROVIDERS_FILE), each an object of name -> connection. A
    declaration replaces the built-in ones: what it lists is all there is."""
    if text.strip() and file is not None:
        raise ValueError("set PROVIDERS or PROVIDERS_FILE, not both")
    if file is not None:
        source = f"PROVIDERS_FILE ({file})"
        try:
            raw = file.read_text(encoding="utf-8")
            data: Any = json.loads(raw) if file.suffix == ".json" else tomllib.loads(raw)
        except (OSError, ValueError) as error:  # JSONDecodeError and TOMLDecodeError
            raise ValueError(f"{source} cannot be read: {error}") from error
    elif text.strip():
        source = "PROVIDERS"
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"PROVIDERS is not valid JSON: {error}") from error
    else:
        return dict(BUILT_IN)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source} must be an object of provider name -> connection")
    connections = {}
    for name, declared in data.items():
        if not NAME.fullmatch(name):
            raise ValueError(
                f"{source}: provider name {name!r} must be 1-20 lower-case letters, "
                "digits, '.', '_' or '-'"
            )
        try:
            connections[name] = ProviderConnection.model_validate(declared)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'connection'}: {item['msg']}"
                for item in error.errors()
            )
            raise ValueError(f"{source}: provider {name!r}: {problems}") from None
    return connections


# --- where a user's base_url may lead -------------------------------------

# Cloud metadata and control endpoints that sit on addresses Python counts
# as global: Azure's wire server. (AWS, GCP and Azure's IMDS at
# 169.254.169.254 and AWS's fd00:ec2::254 are link-local and private.)
METADATA = frozenset({ipaddress.ip_address("168.63.129.16")})
# The well-known NAT64 prefix: the IPv4 address it translates to is checked.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Every public IPv6 unicast address lies in 2000::/3; anything else (the
# IPv4-compatible ::/96, SIIT's ::ffff:0:0:0/96, site-local fec0::/10, the
# local-use NAT64 64:ff9b:1::/48, ...) is refused whatever Python's tables
# of special ranges say in the version that runs.
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
# Names that always mean this machine (RFC 6761).
LOOPBACK_NAMES = ("localhost", ".localhost")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if any: mapped
    (::ffff:a.b.c.d), 6to4, Teredo's client, or the well-known NAT64."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_not_public(address: IPAddress) -> str | None:
    """Why a connection to this address would reach something other than
    the public internet; None for a public unicast address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = why_not_public(inner)
        return f"{reason} (inside an IPv6 address)" if reason else None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address, where cloud metadata services live"
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address, which reaches this machine"
    if address.is_private:
        return "a private address"
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST:
        return "not a public unicast address"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "not a public unicast address"
    return None


@dataclass(frozen=True)
class AllowedHosts:
    """PROVIDER_ALLOWED_HOSTS: the hosts a user's base_url may reach although
    they are not public. A name allows that name, whatever it resolves to;
    an address or CIDR range allows the addresses actually connected to."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowedHosts:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if not HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"PROVIDER_ALLOWED_HOSTS: {entry!r} is not a host name, an address "
                    "or a CIDR range"
                )
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def allows_address(self, address: IPAddress) -> bool:
        candidates = [address, *filter(None, [embedded_ipv4(address)])]
        return any(
            candidate in network
            for candidate in candidates
            for network in self.networks
            if candidate.version == network.version
        )

    def reason(self, address: IPAddress) -> str | None:
        """Why a user's base_url may not connect to this address, as a kind
        of address ("a private address"); None when it may."""
        return None if self.allows_address(address) else why_not_public(address)

    def refusal(self, address: IPAddress) -> str | None:
        reason = self.reason(address)
        return None if reason is None else f"{address} is {reason}"


def literal_host_refusal(url: str, allowed: AllowedHosts) -> str | None:
    """Why a user's base_url is refused before anything is resolved: its
    host is an address, or a name that always means this machine, that
    `allowed` does not list. Other names are checked when a worker connects,
    against the addresses they resolve to then."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if allowed.allows_name(host):
        return None
    if host == LOOPBACK_NAMES[0] or host.endswith(LOOPBACK_NAMES[1]):
        loopback = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        if any(allowed.allows_address(address) for address in loopback):
            return None
        return f"{host} is a loopback name"
    address = _literal_address(host)
    return None if address is None else allowed.refusal(address)


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # What the system resolver reads as IPv4 without asking DNS: 2130706433,
    # 0x7f000001, 0177.0.0.1, 127.1.
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
