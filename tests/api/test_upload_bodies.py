"""Upload bodies that are refused or need care: kinds that are not accepted,
malformed multipart, hostile file names, and the size limit."""

import io
import zipfile
from collections.abc import Iterator

import pytest

from shared.settings import get_settings
from tests.builders import (
    error_locs,
    item_path,
    ok,
    png_with_words,
    problem,
    stored_files,
    upload,
)

BOUNDARY = "itemflow-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return out.getvalue()


def multipart_body(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart/form-data body built by hand, so that a test controls
    every byte: each part is (Content-Disposition parameters, content)."""
    body = b""
    for disposition, content in parts:
        body += f"--{BOUNDARY}\r\n".encode()
        body += b"Content-Disposition: form-data; " + disposition + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def in_chunks(data: bytes, size: int = 512) -> Iterator[bytes]:
    """A body httpx sends chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def small_upload_limit(monkeypatch):
    """MAX_UPLOAD_BYTES at 1000 for one test (the API runs in this process)."""
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1000)
    return 1000


# --- what is refused --------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 8,
        b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200,
        zip_bytes(),
        b"",
    ],
    ids=["binary", "elf", "zip", "empty"],
)
def test_unaccepted_bytes_are_415_and_nothing_is_kept(client, dataset, item, content):
    before = stored_files()

    problem(upload(client, dataset, item, content, "picture.png"), 415)

    assert stored_files() == before
    got = ok(client.get(item_path(dataset, item)))
    assert (got["extension"], got["version"]) == ("", item["version"])
    problem(client.get(item_path(dataset, item) + "/download"), 404)


def test_multipart_without_a_file_part_is_422(client, dataset, item):
    before = stored_files()

    response = client.post(
        item_path(dataset, item) + "/upload", data={"name": "x"}, files={"other": b"bytes"}
    )

    assert error_locs(problem(response, 422)) == [["body", "file"]]
    assert stored_files() == before


def test_two_file_parts_are_422(client, dataset, item):
    before = stored_files()
    body = multipart_body(
        (b'name="file"; filename="a.txt"', b"first"),
        (b'name="file"; filename="b.txt"', b"second"),
    )

    response = client.post(
        item_path(dataset, item) + "/upload", content=body, headers={"Content-Type": MULTIPART}
    )

    assert error_locs(problem(response, 422)) == [["body", "file"]]
    assert stored_files() == before
    assert ok(client.get(item_path(dataset, item)))["version"] == item["version"]


def test_a_body_cut_before_its_closing_boundary_is_400_and_nothing_is_kept(client, dataset, item):
    body = multipart_body((b'name="file"; filename="a.txt"', b"hello"))
    cut = body[: body.rindex(f"--{BOUNDARY}--".encode())]
    before = stored_files()

    response = client.post(
        item_path(dataset, item) + "/upload", content=cut, headers={"Content-Type": MULTIPART}
    )

    assert "closing boundary" in problem(response, 400)["detail"]
    assert stored_files() == before
    assert ok(client.get(item_path(dataset, item)))["version"] == item["version"]


def test_other_form_fields_beside_the_file_are_ignored(client, dataset, item):
    body = multipart_body(
        (b'name="comment"', b"not the file"),
        (b'name="file"; filename="a.txt"', b"the file"),
    )

    response = client.post(
        item_path(dataset, item) + "/upload", content=body, headers={"Content-Type": MULTIPART}
    )

    assert ok(response)["extension"] == "txt"
    assert client.get(item_path(dataset, item) + "/download").content == b"the file"


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "application/json"}, {"Content-Type": "image/png"}, {}],
    ids=["json", "png", "none"],
)
def test_a_body_that_is_not_multipart_is_415(client, dataset, item, headers):
    response = client.post(
        item_path(dataset, item) + "/upload", content=png_with_words("raw"), headers=headers
    )

    problem(response, 415)


def test_file_name_is_made_safe_in_content_disposition(client, dataset, item):
    body = multipart_body((b'name="file"; filename="../../etc/pass\x00wd\x01.txt"', b"text"))
    ok(
        client.post(
            item_path(dataset, item) + "/upload", content=body, headers={"Content-Type": MULTIPART}
        )
    )

    disposition = client.get(item_path(dataset, item) + "/download").headers["content-disposition"]

    assert disposition.startswith("attachment;")
    assert 'filename="passwd.txt"' in disposition
    for unsafe in ("/", "\\", "\x00", "\x01", ".."):
        assert unsafe not in disposition, disposition


def test_non_ascii_file_name_is_kept_in_filename_star(client, dataset, item):
    ok(upload(client, dataset, item, b"text", "café.txt"))

    disposition = client.get(item_path(dataset, item) + "/download").headers["content-disposition"]

    assert "filename*=UTF-8''caf%C3%A9.txt" in disposition


# --- size limit -------------------------------------------------------------


def test_upload_at_the_limit_is_accepted(client, dataset, item, small_upload_limit):
    content = b"x" * small_upload_limit

    assert ok(upload(client, dataset, item, content, "a.txt"))["extension"] == "txt"


def test_upload_over_the_limit_is_413_and_nothing_is_kept(
    client, dataset, item, small_upload_limit
):
    before = stored_files()

    problem(upload(client, dataset, item, b"x" * (small_upload_limit + 1), "a.txt"), 413)

    assert stored_files() == before
    assert ok(client.get(item_path(dataset, item)))["version"] == item["version"]
    problem(client.get(item_path(dataset, item) + "/download"), 404)


def test_upload_far_over_the_limit_is_413_from_its_content_length(
    client, dataset, item, small_upload_limit
):
    before = stored_files()

    problem(upload(client, dataset, item, b"x" * 200_000, "a.txt"), 413)

    assert stored_files() == before


def test_upload_over_the_limit_without_content_length_is_413(
    client, dataset, item, small_upload_limit
):
    before = stored_files()
    body = multipart_body((b'name="file"; filename="a.txt"', b"x" * 5000))

    response = client.post(
        item_path(dataset, item) + "/upload",
        content=in_chunks(body),
        headers={"Content-Type": MULTIPART},
    )

    assert "content-length" not in response.request.headers
    problem(response, 413)
    assert stored_files() == before


def test_chunked_upload_under_the_limit_is_accepted(client, dataset, item, small_upload_limit):
    body = multipart_body((b'name="file"; filename="a.txt"', b"y" * 900))

    response = client.post(
        item_path(dataset, item) + "/upload",
        content=in_chunks(body, 100),
        headers={"Content-Type": MULTIPART},
    )

    assert ok(response)["extension"] == "txt"
    assert client.get(item_path(dataset, item) + "/download").content == b"y" * 900
