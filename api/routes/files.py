"""Uploading an item's file (which starts its post-processors) and
downloading it, or a thumbnail of it."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api.http import (
    FILE,
    UPLOAD,
    Declaration,
    Query,
    authenticate,
    declare,
    disposition,
    if_match,
    json_response,
    path_ids,
    public,
)
from api.multipart import FilePart
from api.routes.items import ITEM
from shared.db import session_scope
from shared.errors import NotFound, PayloadTooLarge, UnsupportedMediaType
from shared.filekinds import FileKind
from shared.schemas import ItemPublic
from shared.services import files, items
from shared.services.scope import get_item
from shared.settings import get_settings
from shared.storage import StagedFile, get_storage, read_chunks

THUMBNAIL_SIZE = 256
# Decoding happens in the API process: refuse images whose pixels alone
# would take more than about 100 MB there.
THUMBNAIL_MAX_PIXELS = 32_000_000
# Room for the multipart boundaries and part headers around the file.
MULTIPART_OVERHEAD = 64 * 1024
CHUNK = 64 * 1024
CHECK_ITEM_FIRST_ABOVE = 1024 * 1024
MISSING = "The item's file is missing from storage."


THUMBNAIL = Query("thumbnail", bool)


@declare(Declaration(ItemPublic, body=UPLOAD, if_match=True, errors=(412,)))
async def upload(request: Request) -> Response:
    user_id = await authenticate(request)
    ids = path_ids(request)
    expected_version = if_match(request)

    def check_item() -> None:
        with session_scope() as session:
            get_item(session, user_id, **ids)

    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    # A large body (or one of unknown size) is not read for an item that is
    # not there: 404 before its first byte. A small one costs less to stage
    # and drop than that check's transaction costs every upload; the attach
    # below finds the item missing all the same.
    if size is None or size > CHECK_ITEM_FIRST_ABOVE:
        await run_in_threadpool(check_item)
    if size is not None and size > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"The file is larger than the limit of {limit} bytes.")

    part = FilePart(request.headers.get("content-type", ""), request.stream())

    def attach(staged: StagedFile, kind: FileKind) -> dict[str, object]:
        with session_scope() as session:
            item = items.attach_file(
                session,
                user_id,
                **ids,
                staged=staged,
                kind=kind,
                file_name=part.file_name or f"{ids['item_id']}.{kind.extension}",
                if_match=expected_version,
            )
            return public(ItemPublic, item)

    return json_response(await files.attach_staged(part.chunks(), limit, attach))


@declare(Declaration(FILE, query=(THUMBNAIL,), errors=(304, 415)))
async def download(request: Request) -> Response:
    user_id = await authenticate(request)
    ids = path_ids(request)

    def find() -> items.StoredFile:
        with session_scope() as session:
            return items.stored_file(session, user_id, **ids)

    stored = await run_in_threadpool(find)
    if THUMBNAIL.read(request) and stored.media_type.startswith("image/"):
        return await _thumbnail(request, stored)
    etag = f'"{stored.sha256}"'
    headers = {
        "ETag": etag,
        "Content-Length": str(stored.size),
        "Content-Disposition": disposition(stored.name),
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    # In a thread: on an object store, opening is a request.
    try:
        stream = await run_in_threadpool(get_storage().open, stored.key)
    except FileNotFoundError:
        raise NotFound(MISSING) from None
    return StreamingResponse(
        read_chunks(stream, CHUNK),
        media_type=stored.media_type,
        headers=headers,
        background=BackgroundTask(stream.close),
    )


async def _thumbnail(request: Request, stored: items.StoredFile) -> Response:
    etag = f'"{stored.sha256}-thumb{THUMBNAIL_SIZE}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})

    def render() -> bytes:
        with get_storage().local_path(stored.key) as path:
            if not path.exists():
                raise NotFound(MISSING)
            return _render_thumbnail(path)

    body = await run_in_threadpool(render)
    stem = stored.name.rsplit(".", 1)[0]
    return Response(
        body,
        media_type="image/jpeg",
        headers={"ETag": etag, "Content-Disposition": disposition(f"{stem}-thumbnail.jpg")},
    )


routes = [
    Route(ITEM + "/upload", upload, methods=["POST"]),
    Route(ITEM + "/download", download, methods=["GET"]),
]


def _render_thumbnail(path: Path) -> bytes:
    try:
        with Image.open(path) as image:
            if image.width * image.height > THUMBNAIL_MAX_PIXELS:
                raise UnsupportedMediaType(
                    f"The image is too large for a thumbnail ({image.width}x{image.height})."
                )
            # JPEG can decode straight at a fraction of its size.
            image.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            # Upright, as browsers show the original (and as the models'
            # boxes are given).
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            out = io.BytesIO()
            upright.convert("RGB").save(out, "JPEG", quality=85)
            return out.getvalue()
    # Pillow only warns about an image between MAX_IMAGE_PIXELS and twice
    # that; where warnings are errors (`python -W error`, the test suite) the
    # warning is raised from Image.open, before the check above, and must end
    # as a 415 like the error past twice the limit, not a 500.
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        # Pillow's messages may name the file's local path: not echoed.
        reason = str(error).replace(str(path), "the file")
        raise UnsupportedMediaType(f"No thumbnail can be made of this image: {reason}") from error
