"""The `itemflow` command: run the parts of the system, or all of them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from shared.import_cli import add_import_command, run_import
from shared.jobs_cli import add_jobs_command, run_jobs_command
from shared.settings import get_settings

log = logging.getLogger("itemflow")


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
    worker_command.add_argument(
        "--queues",
        default="",
        help="model types to take jobs for, comma-separated, and 'external' for the jobs "
        "of models that call an external provider (default: all), e.g. ocr,stt",
    )
    worker_command.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        default="prefork",
        help="processes (one job each; for models that use the CPU) or threads (many "
        "jobs at once; for the external queue, whose jobs wait on the network)",
    )
    commands.add_parser("flower", help="run Flower, the Celery monitor")
    commands.add_parser("reaper", help="take back stranded jobs, periodically")
    user_commands = commands.add_parser("users", help="manage users").add_subparsers(
        dest="user_command", required=True
    )
    create = user_commands.add_parser("create", help="create a user and print its API key")
    create.add_argument("name")
    add_models_command(commands)
    storage_commands = commands.add_parser(
        "storage", help="the storage of uploaded files"
    ).add_subparsers(dest="storage_command", required=True)
    copy = storage_commands.add_parser(
        "copy",
        help="copy every stored file from STORAGE_URL to another storage, checking each "
        "one's sha256; run it again to resume",
    )
    copy.add_argument("--to", required=True, help="s3://bucket[/prefix] or file:///path")
    commands.add_parser(
        "secrets-key", help="print a new key for SECRETS_KEY (users' stored provider keys)"
    )
    add_jobs_command(commands)
    add_import_command(commands)
    args = parser.parse_args(argv)
    # Clients of the API: none of the server's settings.
    if args.command == "jobs":
        return run_jobs_command(args)
    if args.command == "import":
        return run_import(args)
    if args.command == "secrets-key":
        # Before the settings are read: making a key needs none of them.
        from cryptography.fernet import Fernet

        print(Fernet.generate_key().decode("ascii"))
        return 0

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command == "migrate":
        return migrate()
    if args.command == "users":
        return create_user(args.name)
    if args.command == "models":
        return manage_models(args)
    if args.command == "storage":
        return copy_storage(args.to)
    if args.command == "api":
        return run_api()
    if args.command == "worker":
        return run_worker(args.name, args.queues, args.pool)
    if args.command == "flower":
        return run_flower()
    if args.command == "reaper":
        return run_reaper()
    from shared.up import up

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


def add_models_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model_commands = commands.add_parser(
        "models", help="manage registered ONNX models"
    ).add_subparsers(dest="models_command", required=True)
    add = model_commands.add_parser(
        "add", help="register an ONNX model that post-processors can name in model_id"
    )
    add.add_argument("name", help="the name post-processors give as model_id")
    add.add_argument("--onnx", required=True, type=Path, help="the .onnx file")
    add.add_argument(
        "--labels", required=True, type=Path, help="label names, one a line or a JSON array"
    )
    add.add_argument("--kind", choices=["classification", "detection"], default="classification")
    add.add_argument(
        "--input-size",
        type=_input_size,
        metavar="WxH",
        help="the image size to feed, needed when the model's input size is not fixed",
    )
    add.add_argument(
        "--replace", action="store_true", help="replace the model registered under NAME"
    )
    model_commands.add_parser("list", help="list the registered models")
    remove = model_commands.add_parser("remove", help="unregister a model and delete its file")
    remove.add_argument("name")


def copy_storage(to: str) -> int:
    from pydantic import ValidationError
    from tqdm import tqdm

    from shared.db import session_scope
    from shared.errors import StorageUnavailable
    from shared.services.storage_copy import copy_files, same_place, stored_files
    from shared.settings import Settings
    from shared.storage import get_storage, open_storage

    try:
        target = open_storage(Settings(storage_url=to))
    except ValidationError as error:
        print(f"--to: {error.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    source = get_storage()
    if same_place(source, target):
        print(f"--to is where the files are already: {source.location}", file=sys.stderr)
        return 2
    with session_scope() as session:
        files = stored_files(session)
    print(f"{len(files)} files from {source.location} to {target.location}", file=sys.stderr)
    try:
        with tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True) as bar:
            report = copy_files(files, source, target, bar.update)
    except StorageUnavailable as error:
        print(f"stopped: {error.detail}; run it again to resume", file=sys.stderr)
        return 1
    print(
        f"copied {report.copied}, already there {report.skipped}, "
        f"missing from the source {len(report.missing)}, "
        f"not matching their sha256 {len(report.mismatched)}",
        file=sys.stderr,
    )
    for key in report.missing:
        print(f"missing: {key}", file=sys.stderr)
    for key in report.mismatched:
        print(f"sha256 or size differs from the database: {key}", file=sys.stderr)
    return 0 if report.ok else 1


def _input_size(text: str) -> tuple[int, int]:
    from shared.services.onnx_models import parse_input_size

    try:
        return parse_input_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def manage_models(args: argparse.Namespace) -> int:
    from shared.db import session_scope
    from shared.errors import AppError
    from shared.services import onnx_models

    try:
        with session_scope() as session:
            if args.models_command == "add":
                row = onnx_models.add_model(
                    session,
                    args.name,
                    args.onnx,
                    args.labels,
                    args.kind,
                    args.input_size,
                    args.replace,
                )
                labels = json.loads(row.labels)
                print(
                    f"registered {row.kind} model {row.name!r}: input "
                    f"{row.input_width}x{row.input_height}, {len(labels)} labels "
                    f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}), "
                    f"sha256 {row.sha256[:12]}, {row.file_size} bytes"
                )
            elif args.models_command == "list":
                rows = onnx_models.list_models(session)
                print(
                    f"{'NAME':<24} {'KIND':<15} {'INPUT':<10} {'LABELS':>6}  SHA256        CREATED"
                )
                for row in rows:
                    size = f"{row.input_width}x{row.input_height}"
                    print(
                        f"{row.name:<24} {row.kind:<15} {size:<10} "
                        f"{len(json.loads(row.labels)):>6}  {row.sha256[:12]}  "
                        f"{row.created_at:%Y-%m-%d %H:%M}"
                    )
            else:
                users = onnx_models.remove_model(session, args.name)
                print(f"removed model {args.name!r}")
                if users:
                    print(
                        f"warning: {users} post-processor(s) still name {args.name!r}; "
                        "their jobs will fail until a model of that name is registered again",
                        file=sys.stderr,
                    )
    except AppError as error:
        print(f"itemflow models {args.models_command}: {error.detail}", file=sys.stderr)
        return 2
    return 0


def run_api() -> int:
    import uvicorn

    from shared.metrics_files import count_in_files

    # Each API process (API_WORKERS) counts in a file of its own. (Its
    # database waits are bounded by the app itself: api/app.py.)
    count_in_files()
    settings = get_settings()
    uvicorn.run(
        "api.app:app",
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        # Processes of their own, to use every core: what each keeps in
        # memory (the key cache, the failed-auth limiter) is per process.
        workers=settings.api_workers,
    )
    return 0


def run_worker(name: str = "celery@%h", model_types: str = "", pool: str = "prefork") -> int:
    # Each worker process runs one job at a time; NumPy's BLAS threads would
    # only fight the other processes for the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from shared.db import bound_waits
    from shared.metrics_files import count_in_files

    # Before the tasks are imported: the pool processes count in files.
    count_in_files()
    settings = get_settings()
    bound_waits(settings.worker_statement_timeout_seconds, settings.worker_lock_timeout_seconds)
    from shared.inference.registry import get_registry
    from shared.storage import report_unavailable
    from worker.app import celery_app

    # Load the models' classes now, so that a broken or duplicate plugin
    # stops the worker at start-up instead of failing its first job.
    get_registry()
    report_unavailable(log)
    from shared.broker import EXTERNAL, QUEUES, queue_for

    wanted = [part.strip() for part in model_types.split(",") if part.strip()] or QUEUES
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown:
        print(f"unknown queues {unknown}; known: {', '.join(QUEUES)}", file=sys.stderr)
        return 2
    if "llm" in wanted and EXTERNAL not in wanted:
        log.warning(
            "the jobs of llm (and of ner with model_id llm) go to the %r queue: "
            "add it to --queues, or run `itemflow worker --queues %s --pool threads`",
            EXTERNAL,
            EXTERNAL,
        )
    queues = ",".join(queue_for(model_type) for model_type in wanted)
    settings = get_settings()
    options = [f"--pool={pool}"]
    if pool == "threads":
        options.append(f"--concurrency={settings.io_worker_concurrency}")
        # What each prefork process does as it starts (worker/tasks.py),
        # which no pool of threads signals: only the cleanup applies, since
        # its models load on first use.
        if settings.is_s3_storage:
            from shared.storage.s3 import remove_stale_downloads

            remove_stale_downloads(settings.longest_time_limit + 60)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        from shared.metrics import worker_registry

        # In the main process, before the pool forks: a thread that sums
        # what every process of this worker counted.
        start_http_server(
            settings.worker_metrics_port,
            settings.worker_metrics_host,
            registry=worker_registry(),
        )
    celery_app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            "--events",
            f"--hostname={name}",
            f"--queues={queues}",
            *options,
        ]
    )
    return 0


def run_flower() -> int:
    from worker.app import celery_app

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "flower",
        f"--address={settings.flower_host}",
        f"--port={settings.flower_port}",
        # Its tasks' history kept across its own restarts: saved on the way
        # out, and every minute should it be killed instead.
        "--persistent=True",
        f"--db={settings.var_dir.resolve() / 'flower'}",
        "--state_save_interval=60000",
    ]
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
    from dataclasses import astuple

    from shared.db import bound_waits, session_scope
    from shared.services.reaper import remove_left_over_files, sweep
    from shared.storage import report_unavailable

    settings = get_settings()
    bound_waits(settings.worker_statement_timeout_seconds, settings.worker_lock_timeout_seconds)
    report_unavailable(log)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    log.info("reaper sweeps every %ss", settings.reaper_interval_seconds)
    while not stopping.is_set():
        try:
            with session_scope() as session:
                swept = sweep(session)
            if any(astuple(swept)):
                log.info("reaper: %s", swept)
            if removed := remove_left_over_files():
                log.info("reaper: %d files removed", removed)
        except Exception:
            # The database or broker may be down; try again next round.
            log.exception("reaper sweep failed")
        stopping.wait(settings.reaper_interval_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
