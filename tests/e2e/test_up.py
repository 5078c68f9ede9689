"""`itemflow up` on the embedded default, as `make run` starts it: it prints
the URLs and a working key, serves the API and Flower, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures import free_port, wait_for_http


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"


def alive(pid: int) -> bool:
    """Running: a zombie has exited, only no one has reaped it yet (its
    parent `up` is gone, and what adopts it may reap it late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    "stop_signal",
    [signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
    ids=["ctrl-c", "terminal-closed", "killed"],
)
def test_up_runs_everything_embedded_and_stopping_it_stops_all(tmp_path, stop_signal):
    api_port, flower_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "BROKER_URL", "QUEUE_NAME", "POST_PROCESSORS")
    }
    env.update(VAR_DIR=str(tmp_path / "var"), API_PORT=str(api_port), FLOWER_PORT=str(flower_port))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [str(Path(sys.executable).parent / "itemflow"), "up"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in (output := log.read_text()):
            assert up.poll() is None and time.monotonic() < deadline, output
            time.sleep(0.1)
        key = re.search(r"API key\s+(ifk_\S+)", output).group(1)
        assert f"http://127.0.0.1:{api_port}/api/v1" in output
        assert f"http://127.0.0.1:{flower_port}" in output
        assert "sqlite" in output and "filesystem://" in output

        wait_for_http(f"http://127.0.0.1:{api_port}/healthz")
        wait_for_http(f"http://127.0.0.1:{flower_port}/healthcheck")
        answer = httpx.get(
            f"http://127.0.0.1:{api_port}/api/v1/datasets",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert (answer.status_code, answer.json()) == (200, [])
        assert httpx.get(f"http://127.0.0.1:{api_port}/readyz").json()["status"] == "ok"
        children = children_of(up.pid)
        assert len(children) == 5  # api, worker, io worker, flower, reaper
        assert (tmp_path / "var" / "itemflow.db").exists()
    finally:
        up.send_signal(stop_signal)
        up.wait(timeout=60)
    # As long as `up` itself gives them before it kills: a worker's warm
    # shutdown joins its pool, which on a loaded machine takes more than
    # a few seconds even with no job running.
    started = time.monotonic()
    while any(alive(pid) for pid in children) and time.monotonic() < started + 35:
        time.sleep(0.2)
    left = [command_of(pid) for pid in children if alive(pid)]
    assert not left, f"still running after {time.monotonic() - started:.0f}s"
    assert up.returncode == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0)
