"""Secrets users store (their own provider keys), encrypted at rest with
Fernet from `cryptography`: AES-128-CBC with an HMAC-SHA256, so a token can
be neither read nor altered without the key.

The keys come from SECRETS_KEY, comma-separated: the first encrypts, all
decrypt, so a new key is put first and the old one dropped once every
secret has been stored again. Without SECRETS_KEY, the first process that
stores a secret generates a key into SECRETS_KEY_FILE (VAR_DIR/secrets.key),
which suits one machine; the API and every worker must read the same key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import AppError
from shared.settings import get_settings


class SecretKeyMissing(AppError):
    """This process has no key to encrypt or decrypt secrets with."""


class SecretUnreadable(AppError):
    """A stored secret was encrypted with a key this process does not have."""


def seal(text: str) -> str:
    """The text, encrypted; generates the key file when there is no key."""
    return _fernet(create=True).encrypt(text.encode("utf-8")).decode("ascii")


def unseal(token: str) -> str:
    try:
        return _fernet(create=False).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretUnreadable(
            "the secret was stored under a key this process does not have"
        ) from None


def _fernet(create: bool) -> MultiFernet:
    settings = get_settings()
    keys = settings.secrets_keys or [_key_from_file(settings.secrets_key_path, create)]
    return MultiFernet([Fernet(key) for key in keys])


def _key_from_file(path: Path, create: bool) -> str:
    try:
        key = _read_written_key(path)
    except FileNotFoundError:
        if not create:
            raise SecretKeyMissing("no SECRETS_KEY is set and no key file exists") from None
        key = _create_key_file(path)
    try:
        Fernet(key)
    except ValueError:
        raise SecretKeyMissing("the key file does not hold a Fernet key") from None
    return key


def _create_key_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a name of its own, then linked into place: of two
    # processes creating the file at once, both end up with the first one's.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(Fernet.generate_key().decode("ascii") + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        except OSError:
            # A filesystem without hard links: an exclusive create, which a
            # reader may find still empty for a moment (see below).
            with contextlib.suppress(FileExistsError):
                _write_exclusive(path, draft.read_text(encoding="ascii"))
    finally:
        draft.unlink(missing_ok=True)
    return _read_written_key(path)


def _write_exclusive(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _read_written_key(path: Path) -> str:
    # The file another process is creating may not hold its key yet.
    for _ in range(50):
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
        time.sleep(0.02)
    return key
