"""Users' secrets encrypted at rest: Fernet keys from SECRETS_KEY, or one
generated into a file that every process of one machine shares."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from shared.secret_box import SecretKeyMissing, SecretUnreadable, seal, unseal
from shared.settings import Settings, get_settings


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "secrets.key"
    monkeypatch.setattr(get_settings(), "secrets_key", SecretStr(""))
    monkeypatch.setattr(get_settings(), "secrets_key_file", path)
    return path


def use_keys(monkeypatch: pytest.MonkeyPatch, *keys: bytes) -> None:
    value = ",".join(key.decode() for key in keys)
    monkeypatch.setattr(get_settings(), "secrets_key", SecretStr(value))


def test_a_sealed_secret_reads_back_and_does_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, Fernet.generate_key())
    token = seal("sk-user-0123456789")
    assert "sk-user" not in token and "0123456789" not in token
    assert unseal(token) == "sk-user-0123456789"
    assert seal("sk-user-0123456789") != token, "each seal is fresh"


def test_a_new_key_first_still_opens_what_the_old_one_sealed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_keys(monkeypatch, old)
    token = seal("secret")
    use_keys(monkeypatch, new, old)
    assert unseal(token) == "secret"
    assert Fernet(new).decrypt(seal("again").encode()) == b"again"
    use_keys(monkeypatch, new)
    with pytest.raises(SecretUnreadable):
        unseal(token)


def test_a_tampered_token_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, Fernet.generate_key())
    token = seal("secret")
    with pytest.raises(SecretUnreadable):
        unseal(token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:])


def test_without_a_key_the_first_seal_makes_a_key_file_readable_only_by_its_owner(
    key_file: Path,
) -> None:
    with pytest.raises(SecretKeyMissing):
        unseal("anything")
    token = seal("secret")
    assert key_file.stat().st_mode & 0o777 == 0o600
    Fernet(key_file.read_text().strip())
    assert unseal(token) == "secret"
    assert list(key_file.parent.iterdir()) == [key_file], "no draft is left behind"


def test_processes_making_the_key_file_at_once_agree_on_one_key(key_file: Path) -> None:
    tokens: list[str] = []
    start = threading.Barrier(8)

    def store() -> None:
        start.wait()
        tokens.append(seal("same"))

    threads = [threading.Thread(target=store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [unseal(token) for token in tokens] == ["same"] * 8
    assert len(list(key_file.parent.iterdir())) == 1


def test_a_key_file_that_holds_no_key_is_reported(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not a key\n")
    with pytest.raises(SecretKeyMissing, match="does not hold a Fernet key"):
        seal("secret")


def test_the_command_prints_a_key_that_settings_take() -> None:
    from tests.fixtures import itemflow

    key = itemflow("secrets-key").strip()
    Fernet(key.encode())
    assert Settings(secrets_key=key).secrets_keys == [key]
