"""A worker on another machine needs only the database, the broker and the
object store: here it runs with a var dir, a temp dir and a home of its
own and none of the API's environment, and (when the tests run as root, as
on CI) in a mount namespace of its own where the test run's var dir, and
the API's files in it, are an empty tmpfs. It completes an OCR job on an
uploaded scan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import skimage

from shared.storage.s3 import DOWNLOAD_PREFIX
from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    upload,
    wait_for_jobs,
)
from tests.conftest import BACKEND, RUN_ID, VAR_DIR
from tests.faults.stack import own_broker, running_api
from tests.fixtures import ROOT, stop, wait_for_worker
from tests.s3 import S3Server

pytestmark = pytest.mark.skipif(
    BACKEND != "services",
    reason="a worker on another machine needs a database and a broker server; the embedded "
    "default keeps both in one machine's var dir",
)
SCAN = Path(skimage.__file__).parent / "data" / "page.png"
# Run the rest of the command line with the folder $1 hidden under a tmpfs.
HIDING = 'mount -t tmpfs -o size=1m hidden "$1" && shift && exec "$@"'


def can_hide_folders() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def test_a_worker_with_nothing_of_the_apis_disk_completes_an_ocr_job(s3_server: S3Server, tmp_path):
    prefix = f"remote-{os.urandom(4).hex()}/"
    shared_services = {
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "BROKER_URL": os.environ["BROKER_URL"],
        **own_broker("remote"),
        **s3_server.settings(prefix),
    }
    host = tmp_path / "worker-host"
    for folder in ("var", "tmp", "home"):
        (host / folder).mkdir(parents=True)
    # All a worker on another machine is given: the README's list.
    worker_env = {
        **shared_services,
        "VAR_DIR": str(host / "var"),
        "TMPDIR": str(host / "tmp"),
        "HOME": str(host / "home"),
        "PATH": "/usr/bin:/bin",
        "PRELOAD_MODELS": "false",
        "WORKER_CONCURRENCY": "1",
    }
    command = [sys.executable, "-m", "shared.cli", "worker", f"--name=remote-{RUN_ID}@%h"]
    if can_hide_folders():
        hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDING, "sh"]
        command = [*hide, str(VAR_DIR), *command]
    log_name = "remote-worker"
    with open(VAR_DIR / f"{log_name}.log", "ab") as log:
        worker = subprocess.Popen(
            command, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT
        )
    api_env = {**shared_services, "VAR_DIR": str(VAR_DIR / "remote-api"), "POST_PROCESSORS": ""}
    try:
        wait_for_worker(worker, log_name)
        with running_api(api_env, "remote-api") as client:
            if can_hide_folders():
                # The test run's var dir, as the worker's mount namespace shows it.
                worker_view = Path(f"/proc/{worker.pid}/root") / VAR_DIR.relative_to("/")
                assert (VAR_DIR / f"{log_name}.log").exists()
                assert list(worker_view.iterdir()) == []
            dataset = make_dataset(client, name="scans", content_type="documents")
            make_post_processor(client, dataset, name="page text", model_type="ocr")
            item = make_item(client, dataset, name="page")
            ok(upload(client, dataset, item, SCAN.read_bytes(), "page.png"))

            [job] = wait_for_jobs(client, dataset, item)
            text = ok(client.get(item_path(dataset, item)))["text"]

        assert job["status"] == "completed", job
        assert text.startswith("Region-based"), text
        # The scan came from the bucket into the worker's own temp dir, and
        # went again when the job was done.
        assert list((host / "tmp").glob(DOWNLOAD_PREFIX + "*")) == []
        assert not (VAR_DIR / "remote-api" / "files").exists()
    finally:
        stop(worker)
