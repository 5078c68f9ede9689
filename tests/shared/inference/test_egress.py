"""A user's base_url connects only where the operator allows: checked on
the address actually connected to, against real local servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.inference.providers.egress import AddressRefused, guarded_client
from shared.provider_config import AllowedHosts
from tests.shared.inference.fake_llm_server import FakeProvider, Reply

LOOPBACK = AllowedHosts.parse("127.0.0.1")


@pytest.fixture
def server() -> Iterator[FakeProvider]:
    with FakeProvider(Reply(body={"ok": True})) as fake:
        yield fake


class Resolver:
    """A DNS of our own: each lookup answers the next list of addresses."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def post(url: str, allowed: AllowedHosts, resolve: Resolver | None = None) -> httpx.Response:
    kwargs = {"resolve": resolve} if resolve is not None else {}
    with guarded_client(allowed, timeout=5, **kwargs) as client:
        return client.post(url, json={})


def test_loopback_is_refused_unless_allowed_and_nothing_is_sent(server: FakeProvider) -> None:
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 is a loopback address"):
        post(server.url + "/v1", AllowedHosts())
    assert server.requests == []
    assert post(server.url + "/v1", LOOPBACK).json() == {"ok": True}
    assert len(server.requests) == 1


def test_a_name_is_checked_by_what_it_resolves_to(server: FakeProvider) -> None:
    port = server.url.rsplit(":", 1)[1]
    # localhost, through the system's resolver.
    with pytest.raises(AddressRefused, match="localhost resolves only to addresses .*loopback"):
        post(f"http://localhost:{port}/v1", AllowedHosts())
    # A public-looking name that resolves to the metadata service.
    metadata = Resolver(["169.254.169.254"])
    with pytest.raises(AddressRefused, match="link-local") as raised:
        post(f"http://innocent.example:{port}/v1", LOOPBACK, metadata)
    # What an internal name resolves to is not told to the user.
    assert "169.254" not in str(raised.value)
    # One that resolves to a private address and to an allowed one: only
    # the allowed one is connected to.
    mixed = Resolver(["10.0.0.5", "127.0.0.1"])
    assert post(f"http://mixed.example:{port}/v1", LOOPBACK, mixed).status_code == 200
    assert server.requests[-1].headers["host"] == f"mixed.example:{port}"
    assert len(server.requests) == 1


def test_the_connection_goes_to_the_address_that_was_checked(server: FakeProvider) -> None:
    """DNS rebinding: a name that answers an allowed address to the check
    and a forbidden one to any later lookup. The name does not resolve on
    this machine at all, so the request can only arrive if the connection
    went to the checked address rather than to the name looked up again."""
    port = server.url.rsplit(":", 1)[1]
    rebinding = Resolver(["127.0.0.1"], ["169.254.169.254"])
    assert post(f"http://rebind.invalid:{port}/v1", LOOPBACK, rebinding).status_code == 200
    assert rebinding.asked == ["rebind.invalid"]
    assert len(server.requests) == 1


def test_an_allowed_name_is_connected_to_by_name(server: FakeProvider) -> None:
    port = server.url.rsplit(":", 1)[1]
    never = Resolver(["169.254.169.254"])
    allowed = AllowedHosts.parse("localhost")
    assert post(f"http://localhost:{port}/v1", allowed, never).status_code == 200
    assert never.asked == []


def test_a_redirect_is_not_followed(server: FakeProvider) -> None:
    with FakeProvider(Reply(body={"inside": True})) as inside:
        server.replies.append(Reply(307, {}, {"location": inside.url + "/latest/meta-data"}))
        response = post(server.url + "/v1", LOOPBACK)
    assert response.status_code == 307
    assert inside.requests == []


def test_proxies_from_the_environment_are_not_used(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would connect for us, to a host the guard never saw.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with pytest.raises(AddressRefused):
        post(server.url + "/v1", AllowedHosts())
    assert post(server.url + "/v1", LOOPBACK).status_code == 200
