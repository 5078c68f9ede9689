"""A version exported as a zip in a training format, and such a zip
imported into a version."""

from __future__ import annotations

import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from typing import IO, Any

import anyio
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.http import (
    UPLOAD,
    ZIP,
    Declaration,
    Query,
    authenticate,
    declare,
    disposition,
    json_response,
    path_ids,
    public,
)
from api.multipart import FilePart
from api.routes.datasets import VERSION
from shared.db import session_scope
from shared.errors import PayloadTooLarge, ValidationFailed
from shared.exchange import Format, default_format
from shared.exchange.export import Plan, export, safe_part
from shared.exchange.imports import Archive, invalid, read
from shared.exchange.records import has_boxes, version_labels
from shared.models import DatasetSplit
from shared.schemas import VersionImported, VersionPublic
from shared.services import imports
from shared.services.datasets import load_version
from shared.services.scope import get_child, get_version
from shared.settings import get_settings

FORMAT = Query("format", Format)


@declare(Declaration(ZIP, query=(FORMAT,)))
async def download(request: Request) -> Response:
    """The version's items (or the split's), their files and labels as a
    zip in `format` (by default the one the dataset's content type is
    most often trained from: folders for images, spacy-ner for ner, else
    csv). The zip is made as it is sent."""
    user_id = await authenticate(request)
    ids = path_ids(request)
    chosen = FORMAT.read(request)

    def plan() -> tuple[Format, Plan, str]:
        with session_scope() as session:
            version = get_version(session, user_id, ids["dataset_id"], ids["version_id"])
            split_id: uuid.UUID | None = ids.get("split_id")
            split_name = ""
            if split_id is not None:
                split_name = get_child(session, DatasetSplit, user_id, version.id, split_id).name
            fmt = chosen or default_format(version.dataset.content_type)
            name = "-".join(
                safe_part(part, "_")
                for part in (version.dataset.name, version.name, split_name, fmt.value)
                if part
            )
            return (
                fmt,
                Plan(
                    version_id=version.id,
                    split_id=split_id,
                    split_name=split_name,
                    labels=version_labels(session, version.id),
                    boxes=has_boxes(session, version.id),
                ),
                f"{name}.zip",
            )

    fmt, planned, file_name = await run_in_threadpool(plan)
    return StreamingResponse(
        _closed_at_end(export(fmt, planned)),
        media_type="application/zip",
        headers={"Content-Disposition": disposition(file_name)},
    )


async def _closed_at_end(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The export's chunks, each made in a thread; closed when the answer
    ends for any reason (Starlette leaves a sync iterator it was given to
    be collected, which for a client gone mid-zip is too late)."""
    try:
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(getattr(chunks, "close", lambda: None))


@declare(Declaration(VersionImported, body=UPLOAD, errors=(413, 415)))
async def upload(request: Request) -> Response:
    """Import a zip in the format the path names (multipart part `file`)
    into the version: each entry an item, made as an upload makes one (its
    file starts the dataset's post-processors), with its split, labels and
    annotations. Entries that cannot be imported are refused, each with
    its reason, and leave nothing behind; the others are imported."""
    user_id = await authenticate(request)
    ids = path_ids(request)
    fmt = _format(request.path_params["format"])
    target = imports.Target(user_id, ids["dataset_id"], ids["version_id"])

    def check_version() -> None:
        with session_scope() as session:
            get_version(session, user_id, target.dataset_id, target.version_id)

    await run_in_threadpool(check_version)
    settings = get_settings()
    part = FilePart(request.headers.get("content-type", ""), request.stream())
    with tempfile.TemporaryFile() as spool:
        await _receive(part, spool, settings.max_import_bytes)
        archive = await run_in_threadpool(
            _open, spool, settings.max_upload_bytes, settings.max_import_entries
        )
        with archive.zip:
            entries = await run_in_threadpool(lambda: list(read(fmt, archive)))
            if len(entries) > settings.max_import_entries:
                raise PayloadTooLarge(
                    f"The zip holds {len(entries)} entries; at most "
                    f"{settings.max_import_entries} are imported at once."
                )
            target.declared = archive.declared
            report = imports.Report()
            for entry in [*entries, *archive.stray]:
                await imports.import_entry(target, archive, entry, report)

    def answer() -> dict[str, Any]:
        with session_scope() as session:
            version = load_version(session, user_id, target.dataset_id, target.version_id)
            return public(
                VersionPublic,
                version,
                imported=report.imported,
                refused=[asdict(refusal) for refusal in report.refused],
            )

    return json_response(await run_in_threadpool(answer))


def _format(value: str) -> Format:
    try:
        return Format(value)
    except ValueError:
        raise ValidationFailed(
            [
                {
                    "loc": ["path", "format"],
                    "msg": "must be one of " + ", ".join(f.value for f in Format),
                }
            ]
        ) from None


async def _receive(part: FilePart, spool: IO[bytes], limit: int) -> None:
    size = 0
    async for chunk in part.chunks():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The zip is larger than the limit of {limit} bytes.")
        await anyio.to_thread.run_sync(spool.write, chunk)


def _open(spool: IO[bytes], limit: int, most: int) -> Archive:
    # The count of entries the zip's end declares, read before ZipFile
    # reads its whole central directory into memory (some 500 bytes an
    # entry). The standard library's own reader of that record; a zip it
    # cannot find the record of is no zip to ZipFile either.
    end = zipfile._EndRecData(spool)  # type: ignore[attr-defined]
    if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > most:  # type: ignore[attr-defined]
        raise PayloadTooLarge(
            f"The zip holds {end[zipfile._ECD_ENTRIES_TOTAL]} entries; "  # type: ignore[attr-defined]
            f"at most {most} are imported at once."
        )
    spool.seek(0)
    try:
        return Archive(zip=zipfile.ZipFile(spool), limit=limit)  # noqa: SIM115 - closed by caller
    except zipfile.BadZipFile as error:
        raise invalid(f"not a zip: {error}") from None


routes = [
    Route(VERSION + "/download", download, methods=["GET"]),
    Route(VERSION + "/download/{split_id:uuid}", download, methods=["GET"]),
    Route(VERSION + "/upload/{format}", upload, methods=["POST"]),
]
