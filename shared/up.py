"""`itemflow up`: the whole system on one machine, as child processes of
one command that stops them all together."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from shared.migrate import upgrade_database
from shared.settings import Settings, get_settings
from shared.storage import get_storage

log = logging.getLogger("itemflow")
LOCAL_USER = "local"


def local_key() -> str:
    """The API key of the local user, made on first start and kept in the
    var directory (readable by this user only) so that each start can print it."""
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import User
    from shared.services import users

    settings = get_settings()
    key_file = settings.var_dir / "api-key"
    with session_scope() as session:
        if key_file.exists():
            key = key_file.read_text().strip()
            if users.key_is_valid(session, key):
                return key
        user = session.scalar(select(User).where(User.name == LOCAL_USER))
        if user is None:
            user, key = users.create_user(session, LOCAL_USER)
        else:
            key = users.create_key(session, user.id)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    return key


def up(workers: int = 1) -> int:
    """Everything on one machine: migrate, then the API, workers and Flower
    as child processes, until Ctrl-C (or SIGTERM) stops them all."""
    settings = get_settings()
    for what, host, port in (
        ("API_PORT", settings.api_host, settings.api_port),
        ("FLOWER_PORT", settings.flower_host, settings.flower_port),
    ):
        if _port_taken(host, port):
            print(
                f"{host}:{port} is in use: is itemflow already running? "
                f"Stop it, or choose another port with {what}=...",
                file=sys.stderr,
            )
            return 1
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    # The counts the last run's processes left: every process here is new.
    for stale in settings.metrics_folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    upgrade_database()
    key = local_key()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # A closed terminal (SIGHUP) stops everything just like Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    children = _spawn_children(workers)
    health_url = f"http://{settings.api_host}:{settings.api_port}/healthz"
    announced = False
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                log.error("%s stopped with exit code %s; stopping the rest", name, child.returncode)
                stopping, exit_code = True, 1
        if not announced and not stopping and _answers(health_url):
            # Only now: a key printed before the API listens invites a
            # "connection refused" on the first try.
            print(_banner(settings, key), flush=True)
            announced = True
        time.sleep(0.5)
    # Workers interrupt their jobs after their grace period and then need a
    # moment to put them back.
    _stop_children(children, grace=settings.worker_shutdown_grace_seconds + 15)
    return exit_code


def _spawn_children(workers: int) -> dict[str, subprocess.Popen[bytes]]:
    from shared.broker import EXTERNAL, MODEL_TYPES

    cpu_queues = ",".join(name for name in MODEL_TYPES if name != "llm")
    commands = {"api": ["api"], "flower": ["flower"], "reaper": ["reaper"]}
    for number in range(1, workers + 1):
        commands[f"worker {number}"] = [
            "worker",
            f"--name=worker{number}@%h",
            f"--queues={cpu_queues}",
        ]
    # The jobs that wait on an external provider, many at once in threads,
    # not each in a process of its own (and what an older version left in
    # the llm queue).
    commands["io worker"] = [
        "worker",
        "--name=io@%h",
        f"--queues={EXTERNAL},llm",
        "--pool=threads",
    ]
    # Each child in a session of its own: Ctrl-C reaches only `up`, which
    # then stops the children once, instead of every child getting the
    # terminal's SIGINT and then our SIGTERM on top.
    # The API's /metrics has every worker's counts here: a worker port of
    # their own would only be taken by the first of them.
    env = {key: value for key, value in os.environ.items() if key != "WORKER_METRICS_PORT"}
    return {
        name: subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *command],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        for name, command in commands.items()
    }


def _banner(settings: Settings, key: str) -> str:
    api_url = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    return (
        "\nitemflow is ready:\n"
        f"  API      {api_url}\n"
        f"  Flower   http://{settings.flower_host}:{settings.flower_port}\n"
        f"  metrics  http://{settings.api_host}:{settings.api_port}/metrics\n"
        f"  database {_redact(settings.effective_database_url)}\n"
        f"  broker   {_redact(settings.effective_broker_url)}\n"
        f"  files    {get_storage().location}\n"
        f"  API key  {key}   (user '{LOCAL_USER}')\n\n"
        f'  try: curl -H "Authorization: Bearer {key}" {api_url}/datasets\n'
        "Press Ctrl-C to stop.\n"
    )


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def _port_taken(host: str, port: int) -> bool:
    """Whether something listens on the port. Bound as uvicorn binds, with
    SO_REUSEADDR: the connections a stopped server leaves in TIME-WAIT (a
    browser's keep-alive ones, for a minute) do not stop it serving again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """In a child, before it runs: ask Linux to send it SIGTERM when `up`
    dies, even by SIGKILL, so that no orphan keeps the ports or takes jobs."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_children(children: dict[str, subprocess.Popen[bytes]], grace: float = 30) -> None:
    # SIGTERM: uvicorn finishes its requests, Celery its running jobs (a warm
    # shutdown, which puts back those still running after its grace period),
    # Flower just exits.
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for name, child in children.items():
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %ss; killing it", name, grace)
            child.kill()
            child.wait()


def _redact(url: str) -> str:
    """The URL without its password, for printing."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"
