"""The operator's provider declarations, and which hosts a user's own
base_url may reach."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from shared.provider_config import (
    BUILT_IN,
    AllowedHosts,
    literal_host_refusal,
    load_connections,
    why_not_public,
)


def test_without_a_declaration_the_built_in_providers_use_the_public_endpoints() -> None:
    connections = load_connections("", None)
    assert set(connections) == {"openai", "anthropic"}
    assert connections["openai"].base_url == "https://api.openai.com/v1"
    assert connections["openai"].api_key_env == "OPENAI_API_KEY"
    assert connections["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert all(connection.user_base_url for connection in connections.values())


def test_a_declaration_in_json_replaces_the_built_in_ones() -> None:
    declared = {
        "gpu-box": {
            "protocol": "openai",
            "base_url": "http://10.0.0.7:8000/v1/",
            "max_concurrency": 4,
            "models": ["llama-3.1-8b"],
        }
    }
    connections = load_connections(json.dumps(declared), None)
    assert list(connections) == ["gpu-box"]
    gpu = connections["gpu-box"]
    assert (gpu.protocol, gpu.base_url, gpu.api_key_env) == (
        "openai",
        "http://10.0.0.7:8000/v1",
        "",
    )
    assert (gpu.max_concurrency, gpu.models, gpu.user_base_url) == (4, ("llama-3.1-8b",), False)


def test_a_declaration_in_a_toml_file(tmp_path: Path) -> None:
    file = tmp_path / "providers.toml"
    file.write_text(
        '[openai]\nprotocol = "openai"\nbase_url = "https://api.openai.com/v1"\n'
        'api_key_env = "OPENAI_API_KEY"\nuser_base_url = true\n\n'
        '[claude]\nprotocol = "anthropic"\nbase_url = "https://api.anthropic.com"\n'
        'api_key_env = "TEAM_ANTHROPIC_KEY"\nmax_concurrency = 2\n'
    )
    connections = load_connections("", file)
    assert connections["openai"] == BUILT_IN["openai"]
    assert connections["claude"].api_key_env == "TEAM_ANTHROPIC_KEY"
    assert connections["claude"].max_concurrency == 2


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),
        ("168.63.129.16", "metadata"),
        ("100.100.100.200", "not a public"),
        ("100.64.0.1", "not a public"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "not a public"),
        ("::ffff:127.0.0.1", "loopback.*inside an IPv6"),
        ("::ffff:169.254.169.254", "link-local.*inside an IPv6"),
        ("64:ff9b::a00:1", "private.*inside an IPv6"),
        ("2002:a9fe:a9fe::", "link-local.*inside an IPv6"),
        # Outside 2000::/3, whatever this Python's tables say of them.
        ("::7f00:1", "not a public"),
        ("::a9fe:a9fe", "not a public"),
        ("::ffff:0:7f00:1", "not a public"),
        ("64:ff9b:1:a9fe:a9:fe00:808:808", "not a public"),
        ("fec0::1", "not a public"),
        ("5f00::1", "not a public"),
    ],
)
def test_addresses_that_are_not_public(address: str, reason: str) -> None:
    found = why_not_public(ipaddress.ip_address(address))
    assert found is not None
    assert re.search(reason, found), found


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert why_not_public(ipaddress.ip_address(address)) is None


def test_allowed_hosts_take_names_addresses_and_ranges() -> None:
    allowed = AllowedHosts.parse(" 127.0.0.1, 10.0.0.0/8 ,Ollama.LAN., [::1], ")
    assert allowed.allows_name("ollama.lan")
    assert not allowed.allows_name("other.lan")
    for address in ("127.0.0.1", "10.200.3.4", "::1", "::ffff:10.0.0.1"):
        assert allowed.refusal(ipaddress.ip_address(address)) is None, address
    for address in ("127.0.0.2", "192.168.0.1", "169.254.169.254"):
        assert allowed.refusal(ipaddress.ip_address(address)) is not None, address
    assert AllowedHosts.parse("") == AllowedHosts()
    with pytest.raises(ValueError, match="'http://x' is not a host name"):
        AllowedHosts.parse("http://x")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434/v1",
        "http://10.0.0.5/v1",
        "http://169.254.169.254/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://[::1]:8000",
        "http://0.0.0.0:8000",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://localhost:8000/v1",
        "http://LOCALHOST./v1",
        "http://api.localhost/v1",
    ],
)
def test_a_base_url_on_an_address_that_is_not_public_is_refused_as_written(url: str) -> None:
    assert literal_host_refusal(url, AllowedHosts()) is not None


def test_allowed_hosts_let_those_base_urls_through() -> None:
    allowed = AllowedHosts.parse("127.0.0.1,gpu.internal")
    assert literal_host_refusal("http://127.0.0.1:11434/v1", allowed) is None
    assert literal_host_refusal("http://localhost:11434/v1", allowed) is None
    assert literal_host_refusal("http://gpu.internal/v1", allowed) is None
    assert literal_host_refusal("http://127.0.0.2/v1", allowed) is not None
    # A name is checked when a worker connects, against what it resolves to.
    assert literal_host_refusal("http://ollama.example.org/v1", AllowedHosts()) is None
