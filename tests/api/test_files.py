"""Uploading an item's file and downloading it (or a thumbnail of it).
Bodies that are refused, or need care, are in test_upload_bodies.py."""

import hashlib
import io
import socket
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.builders import (
    item_path,
    ok,
    png_with_words,
    problem,
    stored_files,
    upload,
)


def image_bytes(format_name: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, format_name)
    return out.getvalue()


def wav_bytes() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


# --- upload -----------------------------------------------------------------


def test_upload_png_sets_extension_and_bumps_version(client, dataset, item):
    updated = ok(upload(client, dataset, item, png_with_words("hello"), "photo.png"))

    assert updated["id"] == item["id"]
    assert updated["extension"] == "png"
    assert updated["version"] == item["version"] + 1
    assert "job_status" not in updated


@pytest.mark.parametrize(
    ("content", "extension"),
    [
        (image_bytes("JPEG"), "jpg"),
        (image_bytes("GIF"), "gif"),
        (image_bytes("WEBP"), "webp"),
        (image_bytes("BMP"), "bmp"),
        (image_bytes("TIFF"), "tif"),
        (image_bytes("PDF"), "pdf"),
        (wav_bytes(), "wav"),
        ("plain text, café\n".encode(), "txt"),
    ],
    ids=["jpg", "gif", "webp", "bmp", "tif", "pdf", "wav", "txt"],
)
def test_the_kind_comes_from_the_bytes_not_the_name(client, dataset, item, content, extension):
    updated = ok(upload(client, dataset, item, content, "misleading.exe"))

    assert updated["extension"] == extension


def test_text_file_is_accepted_as_txt_and_served_as_text(client, dataset, item):
    content = b"line one\nline two\n"
    assert ok(upload(client, dataset, item, content, "notes.txt"))["extension"] == "txt"

    response = client.get(item_path(dataset, item) + "/download")

    assert response.content == content
    assert response.headers["content-type"].startswith("text/plain")


def test_a_new_upload_replaces_the_old_file(client, dataset, item):
    before = stored_files()
    ok(upload(client, dataset, item, png_with_words("first")))
    after_first = stored_files()
    second = b"second file, as text"

    updated = ok(upload(client, dataset, item, second, "second.txt"))

    assert updated["extension"] == "txt"
    assert updated["version"] == item["version"] + 2
    assert len(stored_files() - before) == 1
    assert stored_files() != after_first, "the first file was deleted"
    assert client.get(item_path(dataset, item) + "/download").content == second


def test_upload_with_a_stale_if_match_is_412_and_keeps_nothing(client, dataset, item):
    before = stored_files()

    response = client.post(
        item_path(dataset, item) + "/upload",
        files={"file": ("a.txt", b"text")},
        headers={"If-Match": '"5"'},
    )

    assert problem(response, 412)["current_version"] == item["version"]
    assert stored_files() == before


def test_upload_with_the_current_if_match_applies(client, dataset, item):
    response = client.post(
        item_path(dataset, item) + "/upload",
        files={"file": ("a.txt", b"text")},
        headers={"If-Match": f'"{item["version"]}"'},
    )

    assert ok(response)["version"] == item["version"] + 1


def test_concurrent_uploads_with_the_same_if_match_keep_one_file(client, dataset, item):
    before = stored_files()

    def send(number):
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30) as http:
            return http.post(
                item_path(dataset, item) + "/upload",
                files={"file": (f"{number}.txt", f"upload {number}".encode())},
                headers={"If-Match": f'"{item["version"]}"'},
            )

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(send, range(5)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 4, [response.text for response in responses]
    assert len(stored_files() - before) == 1, "the losers' files were not kept"
    [winner] = [n for n, response in enumerate(responses) if response.status_code == 200]
    download = client.get(item_path(dataset, item) + "/download")
    assert download.content == f"upload {winner}".encode()


def test_upload_to_an_unknown_item_is_404_and_keeps_nothing(client, dataset):
    path = f"{item_path(dataset, {'id': uuid.uuid4()})}/upload"
    before = stored_files()

    problem(client.post(path, files={"file": ("a.txt", b"text")}), 404)

    assert stored_files() == before


def test_a_large_upload_to_an_unknown_item_is_404_before_its_body_is_sent(client, dataset):
    """Only the headers go out: the answer comes without waiting for the
    5 MiB the request declares."""
    path = f"/api/v1{item_path(dataset, {'id': uuid.uuid4()})}/upload"
    url = httpx.URL(str(client.base_url))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Authorization: {client.headers['authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {5 * 2**20}\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port), timeout=10) as connection:
        connection.sendall(head.encode())
        answer = connection.recv(4096).decode()

    assert answer.startswith("HTTP/1.1 404"), answer


# --- download ---------------------------------------------------------------


def test_download_answers_the_same_bytes_with_headers(client, dataset, item):
    content = png_with_words("download me")
    ok(upload(client, dataset, item, content, "photo.png"))

    response = client.get(item_path(dataset, item) + "/download")

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(content))
    assert 'filename="photo.png"' in response.headers["content-disposition"]
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert etag.strip('"') == hashlib.sha256(content).hexdigest()


def test_if_none_match_with_the_etag_is_304(client, dataset, item):
    ok(upload(client, dataset, item, png_with_words("cached")))
    etag = client.get(item_path(dataset, item) + "/download").headers["etag"]

    response = client.get(item_path(dataset, item) + "/download", headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    other = client.get(item_path(dataset, item) + "/download", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


def test_the_etag_changes_with_the_file(client, dataset, item):
    ok(upload(client, dataset, item, b"one"))
    first = client.get(item_path(dataset, item) + "/download").headers["etag"]
    ok(upload(client, dataset, item, b"two"))

    response = client.get(item_path(dataset, item) + "/download", headers={"If-None-Match": first})

    assert response.status_code == 200
    assert response.content == b"two"


def test_thumbnail_is_a_jpeg_at_most_256_pixels(client, dataset, item):
    ok(upload(client, dataset, item, png_with_words("thumb", size=(900, 200))))

    response = client.get(item_path(dataset, item) + "/download", params={"thumbnail": "true"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert max(thumbnail.size) <= 256, thumbnail.size
        assert thumbnail.size[0] > thumbnail.size[1], "the aspect ratio is kept"


def test_thumbnail_of_a_small_image_is_not_enlarged(client, dataset, item):
    ok(upload(client, dataset, item, image_bytes("PNG", (40, 30))))

    response = client.get(item_path(dataset, item) + "/download", params={"thumbnail": "true"})

    with Image.open(io.BytesIO(response.content)) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (40, 30))


def test_thumbnail_of_a_photo_stored_on_its_side_is_upright(client, dataset, item):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    photo = io.BytesIO()
    Image.new("RGB", (80, 40), "red").save(photo, "JPEG", exif=exif)
    ok(upload(client, dataset, item, photo.getvalue()))

    response = client.get(item_path(dataset, item) + "/download", params={"thumbnail": "true"})

    with Image.open(io.BytesIO(response.content)) as thumbnail:
        assert thumbnail.size == (40, 80)


def test_thumbnail_honours_if_none_match(client, dataset, item):
    ok(upload(client, dataset, item, image_bytes("PNG")))
    path = item_path(dataset, item) + "/download?thumbnail=true"
    etag = client.get(path).headers["etag"]

    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304


def test_download_of_an_item_without_a_file_is_404(client, dataset, item):
    problem(client.get(item_path(dataset, item) + "/download"), 404)
    problem(client.get(item_path(dataset, item) + "/download?thumbnail=true"), 404)


def stored_path(item: dict) -> Path:
    """Where the API keeps the item's file on disk."""
    from shared.db import session_scope
    from shared.models import DatasetItem
    from shared.settings import get_settings

    with session_scope() as session:
        key = session.get_one(DatasetItem, uuid.UUID(item["id"])).file_key
    return get_settings().files_dir / key


def test_a_file_gone_from_storage_is_404_not_500(client, dataset, item):
    ok(upload(client, dataset, item, image_bytes("PNG"), "gone.png"))
    stored_path(item).unlink()

    for query in ("", "?thumbnail=true"):
        answer = problem(client.get(item_path(dataset, item) + "/download" + query), 404)
        assert answer["detail"] == "The item's file is missing from storage."


def test_a_thumbnail_refused_does_not_tell_where_the_file_is(client, dataset, item):
    ok(upload(client, dataset, item, image_bytes("PNG"), "broken.png"))
    path = stored_path(item)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest of a png" * 10)

    detail = problem(client.get(item_path(dataset, item) + "/download?thumbnail=true"), 415)[
        "detail"
    ]

    assert detail.startswith("No thumbnail can be made of this image")
    assert str(path.parent) not in detail and path.name not in detail
