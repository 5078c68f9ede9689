"""The `itemflow` command: run the parts of the system, or all of them."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from shared.settings import get_settings

log = logging.getLogger("itemflow")
LOCAL_USER = "local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="itemflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_command = commands.add_parser("up", help="migrate, then run the API, workers and Flower")
    up_command.add_argument("--workers", type=int, default=1, help="worker processes to start")
    commands.add_parser("migrate", help="apply the database migrations")
    commands.add_parser("api", help="run the HTTP API")
    worker_command = commands.add_parser("worker", help="run a Celery worker")
    worker_command.add_argument(
        "--name", default="celery@%h", help="node name, unique per worker (default celery@%%h)"
    )
    commands.add_parser("flower", help="run Flower, the Celery monitor")
    commands.add_parser("reaper", help="take back stranded jobs, periodically")
    user_commands = commands.add_parser("users", help="manage users").add_subparsers(
        dest="user_command", required=True
    )
    create = user_commands.add_parser("create", help="create a user and print its API key")
    create.add_argument("name")
    args = parser.parse_args(argv)

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command == "migrate":
        return migrate()
    if args.command == "users":
        return create_user(args.name)
    if args.command == "api":
        return run_api()
    if args.command == "worker":
        return run_worker(args.name)
    if args.command == "flower":
        return run_flower()
    if args.command == "reaper":
        return run_reaper()
    return up(args.workers)


def migrate() -> int:
    from shared.migrate import upgrade_database

    upgrade_database()
    log.info("database is at the latest migration")
    return 0


def create_user(name: str) -> int:
    from shared.db import session_scope
    from shared.errors import Conflict
    from shared.services import users

    try:
        with session_scope() as session:
            _user, key = users.create_user(session, name)
    except Conflict as error:
        print(error.detail, file=sys.stderr)
        return 1
    print(key)
    return 0


def run_api() -> int:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:app",
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


def run_worker(name: str = "celery@%h") -> int:
    from shared.postprocessors.registry import get_registry
    from worker.app import celery_app

    # Load the models' classes now, so that a broken or duplicate plugin
    # stops the worker at start-up instead of failing its first job.
    get_registry()
    celery_app.worker_main(
        ["worker", f"--loglevel={get_settings().log_level}", "--events", f"--hostname={name}"]
    )
    return 0


def run_flower() -> int:
    from worker.app import celery_app

    settings = get_settings()
    argv = ["flower", f"--address={settings.flower_host}", f"--port={settings.flower_port}"]
    if settings.flower_basic_auth:
        argv.append(f"--basic_auth={settings.flower_basic_auth}")
    elif settings.flower_host in ("127.0.0.1", "localhost", "::1"):
        # Only this machine can reach it; let its REST API answer too.
        os.environ.setdefault("FLOWER_UNAUTHENTICATED_API", "true")
    else:
        print("FLOWER_BASIC_AUTH must be set when Flower listens beyond loopback.", file=sys.stderr)
        return 2
    celery_app.start(argv)
    return 0


def run_reaper() -> int:
    """Sweep for stranded jobs every REAPER_INTERVAL_SECONDS until stopped."""
    import threading

    from shared.db import session_scope
    from shared.services.reaper import sweep

    settings = get_settings()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    log.info("reaper sweeps every %ss", settings.reaper_interval_seconds)
    while not stopping.is_set():
        try:
            with session_scope() as session:
                swept = sweep(session)
            if swept.taken_back or swept.failed or swept.resent:
                log.info("reaper: %s", swept)
        except Exception:
            # The database or broker may be down; try again next round.
            log.exception("reaper sweep failed")
        stopping.wait(settings.reaper_interval_seconds)
    return 0


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
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    migrate()
    key = local_key()
    commands = {"api": ["api"], "flower": ["flower"], "reaper": ["reaper"]}
    for number in range(1, workers + 1):
        commands[f"worker {number}"] = ["worker", f"--name=worker{number}@%h"]
    # Each child in a session of its own: Ctrl-C reaches only this process,
    # which then stops the children once and in order, instead of every
    # child getting the terminal's SIGINT and then our SIGTERM on top.
    children = {
        name: subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *command],
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        for name, command in commands.items()
    }
    api_url = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    print(
        "\nitemflow is starting:\n"
        f"  API      {api_url}\n"
        f"  Flower   http://{settings.flower_host}:{settings.flower_port}\n"
        f"  database {_redact(settings.effective_database_url)}\n"
        f"  broker   {_redact(settings.effective_broker_url)}\n"
        f"  files    {settings.files_dir}\n"
        f"  API key  {key}   (user '{LOCAL_USER}')\n\n"
        f'  try: curl -H "Authorization: Bearer {key}" {api_url}/datasets\n'
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # A closed terminal (SIGHUP) stops everything just like Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                log.error("%s stopped with exit code %s; stopping the rest", name, child.returncode)
                stopping, exit_code = True, 1
        time.sleep(0.5)
    _stop_children(children)
    return exit_code


def _die_with_parent() -> None:
    """In a child, before it runs: ask Linux to send it SIGTERM when `up`
    dies, even by SIGKILL, so that no orphan keeps the ports or takes jobs."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_children(children: dict[str, subprocess.Popen[bytes]], grace: float = 30) -> None:
    # SIGTERM: uvicorn finishes its requests, Celery its running jobs
    # (a warm shutdown), Flower just exits.
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


if __name__ == "__main__":
    sys.exit(main())
