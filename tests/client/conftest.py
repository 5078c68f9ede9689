"""The official SeeMe.ai Python client, unchanged, against itemflow: it
lives in a virtualenv of its own (make install builds it), since it pins
an urllib3 older than the one itemflow runs on. Each test runs a snippet of
client code in that interpreter and reads what it printed as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import new_user_key

CLIENT_PYTHON = Path(sys.prefix) / "seeme" / "bin" / "python"
PRELUDE = """
import json, sys
from seeme.seeme_client import Client, PreconditionFailed
from seeme.types import *
args = json.loads(sys.argv[1])
client = Client(username="itemflow", apikey=args.pop("key"), backend=args.pop("url"))
def dump(value):
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value.model_dump() if hasattr(value, "model_dump") else value
"""

Seeme = Callable[..., Any]


@pytest.fixture
def seeme(api_url: str, tmp_path: Path) -> Seeme:
    """run(code, **args): `code` sees the client as `client` and `args`,
    and sets `out` to what the test gets back."""
    if not CLIENT_PYTHON.exists():
        pytest.fail(f"the SeeMe.ai client's virtualenv is missing ({CLIENT_PYTHON}): make install")
    key = new_user_key()

    def run(code: str, **args: Any) -> Any:
        script = PRELUDE + code + "\nprint(json.dumps(dump(out), default=str))\n"
        given = json.dumps({"key": key, "url": api_url + "/api/v1/", **args})
        done = subprocess.run(
            [str(CLIENT_PYTHON), "-c", script, given],
            cwd=tmp_path,  # the client reads a .env from where it runs
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run
