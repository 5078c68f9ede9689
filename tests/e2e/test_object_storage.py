"""Files in an S3 bucket (SeaweedFS) end to end: `itemflow api`, `worker`
and `reaper` as processes with STORAGE_URL=s3://..., an upload run by a
job that reads the file, downloaded byte-exact, deleted; an upload over the
limit refused, leaving nothing in the bucket; and a missing bucket named by
/readyz and, once, in each process's log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.builders import (
    first_version,
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    png_with_words,
    problem,
    upload,
    version_path,
    wait_for_jobs,
)
from tests.conftest import RUN_ID, VAR_DIR
from tests.faults.stack import own_broker, running_api
from tests.fixtures import spawn, stop, wait_for_worker, wait_until
from tests.s3 import S3Server

MIB = 1024 * 1024
LIMIT = 12 * MIB
BOUNDARY = "itemflow-test-boundary"


@pytest.fixture(scope="module")
def stack(s3_server: S3Server) -> Iterator[dict[str, Any]]:
    """The API, the reaper and a worker, keeping files under a prefix of
    their own in the bucket."""
    prefix = f"e2e-{os.urandom(4).hex()}/"
    env = {
        **own_broker("object-storage"),
        # A var dir of their own on either backend, to show that no file
        # lands on the API's disk.
        "VAR_DIR": str(VAR_DIR / "object-storage"),
        **s3_server.settings(prefix),
        "MAX_UPLOAD_BYTES": str(LIMIT),
        "PRELOAD_MODELS": "false",
        "WORKER_CONCURRENCY": "1",
        "POST_PROCESSORS": "",
        "REAPER_INTERVAL_SECONDS": "0.5",
    }
    worker = spawn("worker", f"--name=s3-{RUN_ID}@%h", log_name="object-storage-worker", **env)
    try:
        with running_api(env, "object-storage") as client:
            wait_for_worker(worker, "object-storage-worker")
            yield {"client": client, "prefix": prefix}
    finally:
        stop(worker)


def local_files() -> list[str]:
    """Anything the API kept on its own disk instead."""
    files = VAR_DIR / "object-storage" / "files"
    return sorted(path.name for path in files.iterdir()) if files.exists() else []


def multipart_body(size: int) -> Iterator[bytes]:
    """A streamed upload without Content-Length, so that the API reads up to
    its limit rather than refusing the declared size at once."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    block = b"z" * MIB
    for _ in range(size // MIB):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_upload_job_download_delete_on_s3(stack, s3_server):
    client, prefix = stack["client"], stack["prefix"]
    assert ok(client.get(client.base_url.join("/readyz")))["storage"] == "ok"
    dataset = make_dataset(client, name="on s3", default_splits=True)
    # A model that reads the file: the worker must fetch it from the bucket.
    make_post_processor(client, dataset, name="faces", model_type="detection")
    item = make_item(client, dataset, name="page")
    image = png_with_words("stored in a bucket")
    ok(upload(client, dataset, item, image, "page.png"))

    [job] = wait_for_jobs(client, dataset, item, timeout=30)
    assert job["status"] == "completed", job

    downloaded = client.get(item_path(dataset, item) + "/download")
    assert downloaded.status_code == 200
    assert downloaded.content == image
    assert int(downloaded.headers["content-length"]) == len(image)
    # The thumbnail is made from a copy fetched to the API's disk.
    thumbnail = client.get(item_path(dataset, item) + "/download", params={"thumbnail": "true"})
    assert (thumbnail.status_code, thumbnail.headers["content-type"]) == (200, "image/jpeg")
    [key] = s3_server.objects(prefix)
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == image
    assert local_files() == []

    # More than one part, through the API both ways.
    large = make_item(client, dataset, name="large")
    content = os.urandom(5 * MIB + 17).hex().encode()
    ok(upload(client, dataset, large, content, "large.txt"))
    assert client.get(item_path(dataset, large) + "/download").content == content
    assert len(s3_server.objects(prefix)) == 2

    split = first_version(dataset)["default_split"]
    for doomed in (item, large):
        ok(client.delete(f"{version_path(dataset)}/splits/{split}/items/{doomed['id']}"))
    wait_until(lambda: s3_server.objects(prefix) == set(), 10, "the objects deleted")
    assert local_files() == []


def test_an_upload_over_the_limit_leaves_nothing_in_the_bucket(stack, s3_server):
    client, prefix = stack["client"], stack["prefix"]
    dataset = make_dataset(client, name="too large")
    item = make_item(client, dataset)
    before = s3_server.objects(prefix)

    answer = client.post(
        item_path(dataset, item) + "/upload",
        content=multipart_body(LIMIT + 4 * MIB),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )

    problem(answer, 413)
    assert s3_server.objects(prefix) == before
    assert ok(client.get(item_path(dataset, item)))["extension"] in ("", None)


def test_a_missing_bucket_is_named_by_readyz_and_once_in_the_logs(s3_server):
    env = {
        **own_broker("missing-bucket"),
        **s3_server.settings(),
        "STORAGE_URL": "s3://itemflow-no-such-bucket",
    }
    with running_api(env, "missing-bucket") as client:
        ready = httpx.get(client.base_url.join("/readyz"), timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["storage"] == "unreachable" and body["database"] == "ok"
        assert "storage" in body["detail"]
        # The API serves on all the same; what needs the bucket is a 503.
        dataset = make_dataset(client)
        item = make_item(client, dataset)
        refused = upload(client, dataset, item, b"no bucket for me", "note.txt")
        assert problem(refused, 503)["detail"].startswith("A service this request needs")
        assert refused.headers["retry-after"] == "5"

        def line(name: str) -> list[str]:
            log = (VAR_DIR / f"missing-bucket-{name}.log").read_text()
            return [row for row in log.splitlines() if "event=storage.unavailable" in row]

        for name in ("api", "reaper"):
            [row] = wait_until(lambda name=name: line(name), 10, f"the {name}'s line")
            assert "bucket 'itemflow-no-such-bucket' does not exist" in row
