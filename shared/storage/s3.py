"""Files as objects in an S3 bucket (AWS, or an S3-compatible server such as
SeaweedFS, MinIO or R2), one object per key under an optional prefix.

Credentials come only from boto3's own chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, a profile, an instance role); nothing here keeps them.
boto3 calls block, so `stage` runs each of them in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import anyio
import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shared.errors import PayloadTooLarge, StorageUnavailable
from shared.storage import HEAD_BYTES, StagedFile

log = logging.getLogger(__name__)

# Uploads go up in parts of this size (S3 wants at least 5 MiB for all but
# the last), so that at most one part is held in memory; a smaller file is
# one put_object.
PART_BYTES = 8 * 1024 * 1024
# A job's file fetched for its model, in the temp dir while the job runs.
DOWNLOAD_PREFIX = "itemflow-download-"
Result = TypeVar("Result")


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        addressing_style: str = "auto",
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        self.endpoint_url = endpoint_url

        def client(**config: Any) -> Any:
            return session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                config=Config(
                    # S3-compatible servers refuse the CRC checksums boto3
                    # sends by default since 1.36 (boto/boto3#4392).
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": addressing_style},
                    **config,
                ),
            )

        # A session of our own: boto3's default session is not thread-safe,
        # its clients are. One for files, one with short timeouts for the
        # readiness check, so that /readyz answers quickly on an outage.
        session = boto3.session.Session()
        self._client = client(retries={"mode": "standard"}, connect_timeout=10)
        self._probe = client(
            retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5
        )

    def _object(self, key: str) -> str:
        # Keys are made here, never taken from a client; refuse any other.
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"invalid storage key {key!r}")
        return self.prefix + key

    async def stage(
        self, chunks: AsyncIterator[bytes], limit: int, key: str | None = None
    ) -> StagedFile:
        """Upload chunks as they arrive, a part at a time; past `limit`
        bytes, or on any error or cancellation, abort the upload so that
        nothing is left in the bucket, and raise. The object appears only
        once it is whole."""
        key = key or uuid.uuid4().hex
        name = self._object(key)
        digest = hashlib.sha256()
        size = 0
        head = b""
        part = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        written = False

        async def call(function: Callable[..., Result], **arguments: Any) -> Result:
            # Shielded: a cancelled request still learns what the call did
            # (an upload id, an object written), so that it can be undone.
            with anyio.CancelScope(shield=True):
                result = await anyio.to_thread.run_sync(lambda: function(**arguments))
            return result

        async def send_part() -> None:
            nonlocal upload_id
            if upload_id is None:
                started = await call(
                    self._client.create_multipart_upload, Bucket=self.bucket, Key=name
                )
                upload_id = cast(str, started["UploadId"])
            number = len(parts) + 1
            sent = await call(
                self._client.upload_part,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                digest.update(chunk)
                part += chunk
                if len(part) >= PART_BYTES:
                    await send_part()
                    part = bytearray()
            written = True
            if upload_id is None:
                await call(self._client.put_object, Bucket=self.bucket, Key=name, Body=part)
            else:
                if part:
                    await send_part()
                await call(
                    self._client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._undo, name, upload_id, written)
            if isinstance(error, BotoCoreError | ClientError):
                raise self._unavailable(error) from error
            raise
        return StagedFile(key=key, size=size, sha256=digest.hexdigest(), head=head)

    def _undo(self, name: str, upload_id: str | None, written: bool) -> None:
        """Leave nothing of a failed upload: no parts, no object."""
        try:
            if upload_id is not None:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            if written:
                # The put or the completion may have landed before it failed.
                self._client.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError) as error:
            # The original error is what the caller must see; the bucket's
            # lifecycle rule for incomplete uploads cleans up after this.
            log.error("event=storage.abort_failed key=%s error=%s", name, error)

    def size(self, key: str) -> int | None:
        try:
            answer = self._client.head_object(Bucket=self.bucket, Key=self._object(key))
        except (BotoCoreError, ClientError) as error:
            if self._is_missing(error):
                return None
            raise self._unavailable(error) from error
        return int(answer["ContentLength"])

    def open(self, key: str) -> BinaryIO:
        """The object's body as a stream: read(n) fetches as it goes."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._object(key))
        except (BotoCoreError, ClientError) as error:
            if self._is_missing(error):
                raise FileNotFoundError(f"no stored file {key}") from error
            raise self._unavailable(error) from error
        return cast(BinaryIO, answer["Body"])

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Download the object to a temporary file, removed after the block;
        a missing object gives a path that does not exist, as on disk."""
        with tempfile.NamedTemporaryFile(prefix=DOWNLOAD_PREFIX, delete=False) as out:
            path = Path(out.name)
            try:
                self._client.download_fileobj(self.bucket, self._object(key), out)
            except (BotoCoreError, ClientError) as error:
                out.close()
                path.unlink(missing_ok=True)
                if not self._is_missing(error):
                    raise self._unavailable(error) from error
            except BaseException:
                out.close()
                path.unlink(missing_ok=True)
                raise
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        # S3 answers a delete of a missing object with success.
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable(error) from error

    def check(self) -> None:
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            raise self._unavailable(error) from error

    def _is_missing(self, error: BotoCoreError | ClientError) -> bool:
        """Whether the object is missing (not the bucket, not the server)."""
        if not isinstance(error, ClientError):
            return False
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchKey":
            return True
        if code != "404":
            return False
        # A HEAD (download_fileobj starts with one) answers a bare 404 for a
        # missing bucket too: ask which.
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True

    def _unavailable(self, error: BotoCoreError | ClientError) -> StorageUnavailable:
        """The reason, in words an operator can act on."""
        if isinstance(error, NoCredentialsError):
            return StorageUnavailable(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE, or give the machine a role"
            )
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket", "404") or (status == 404 and code != "NoSuchKey"):
                return StorageUnavailable(f"the bucket {self.bucket!r} does not exist")
            if status == 403 or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StorageUnavailable(
                    f"the S3 credentials were refused for bucket {self.bucket!r} ({code})"
                )
            return StorageUnavailable(f"S3 answered {status} {code}")
        where = self.endpoint_url or "AWS"
        return StorageUnavailable(f"cannot reach S3 at {where}: {error}")


def remove_stale_downloads(older_than_seconds: float) -> int:
    """Remove job files left in the temp dir by processes that were killed
    (a hard time limit, SIGKILL) before they could: any older than a job can
    run. How many were removed."""
    removed = 0
    deadline = time.time() - older_than_seconds
    for path in Path(tempfile.gettempdir()).glob(DOWNLOAD_PREFIX + "*"):
        with contextlib.suppress(OSError):  # another process was first
            if path.stat().st_mtime < deadline:
                path.unlink()
                removed += 1
    return removed
