"""Hostile and broken uploads, through the real API and a real Celery worker:
a zip bomb as a .docx, decompression-bomb images, files cut short and a PDF
of thousands of pages. Each is accepted at upload (the API only looks at the
first bytes), and its jobs end `failed` after one attempt with a reason that
names the problem, quickly and without the worker or the API decoding what
they refuse; the worker's processes live on and serve the next job.

Hostile file names in the multipart upload (`../`, NUL) are covered by
tests/api/test_upload_bodies.py; the models' refusals, one by one and with
lowered limits, by tests/shared/inference/.
"""

from __future__ import annotations

import io
import math
import os
import resource
import struct
import subprocess
import time
import warnings
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from reportlab.pdfgen import canvas

from shared.inference.files.docx import MAX_PART_BYTES
from shared.settings import get_settings
from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    png_with_words,
    problem,
    upload,
    wait_for_jobs,
)

MIB = 1024 * 1024
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
WORD_NAMESPACE = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
SPEECH = Path(__file__).parents[1] / "data" / "two_cities_16k.wav"
# Refusing a file must not cost a process memory in proportion to what the
# file would inflate to: every bomb here would take well over this to decode.
MEMORY_HEADROOM = 64 * MIB


# --- building the files ------------------------------------------------------


def _zip_of_one_deflated_entry(name: str, deflated: bytes, crc: int, size: int) -> bytes:
    """A zip archive of one entry whose deflate stream is given, so that an
    entry of a gigabyte need not be compressed here byte by byte."""
    encoded = name.encode()
    # version needed, flags, method (8: deflate), time, date (1980-01-01),
    # CRC-32, compressed size, uncompressed size, name length
    fields = struct.pack("<HHHHHIIIH", 20, 0, 8, 0, 0x21, crc, len(deflated), size, len(encoded))
    local = b"PK\x03\x04" + fields + b"\x00\x00" + encoded
    central = (
        b"PK\x01\x02"
        + struct.pack("<H", 20)  # made by
        + fields
        + struct.pack("<HHHHII", 0, 0, 0, 0, 0, 0)  # extra, comment, disk, attributes, offset
        + encoded
    )
    end = b"PK\x05\x06" + struct.pack(
        "<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(deflated), 0
    )
    return local + deflated + central + end


def docx_bomb(inflated: int = 1024 * MIB) -> bytes:
    """A .docx whose word/document.xml inflates to about `inflated` bytes: the
    start of a document, then spaces a parser would go on reading. An honest
    zip: its sizes and CRC are the real ones."""
    head = (
        f'<?xml version="1.0"?><w:document xmlns:w="{WORD_NAMESPACE}"><w:body><w:p><w:r><w:t>'
    ).encode()
    block = b" " * MIB
    count = (inflated - len(head)) // len(block)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor has forgotten what came before, so
    # every block of spaces deflates to the same bytes: deflate one, repeat it.
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflated = start + repeated * count + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    return _zip_of_one_deflated_entry(
        "word/document.xml", deflated, crc, len(head) + count * len(block)
    )


def docx(text: str) -> bytes:
    body = f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
    document = f'<w:document xmlns:w="{WORD_NAMESPACE}"><w:body>{body}</w:body></w:document>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", document)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int) -> bytes:
    """A valid black-and-white PNG of side x side pixels, all black: a few
    dozen KB that decode to side² bytes in Pillow (one a pixel in mode "1"),
    three times that as RGB."""
    row = b"\x00" * (1 + math.ceil(side / 8))  # filter byte, then 8 pixels a byte
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def blank_pdf(pages: int) -> bytes:
    """A PDF of `pages` blank Letter pages, written out directly (a few dozen
    bytes a page)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = b" ".join(b"%d 0 R" % (3 + index) for index in range(pages))
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages))
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pdf_with_text(text: str) -> bytes:
    out = io.BytesIO()
    document = canvas.Canvas(out)
    document.drawString(72, 720, text)
    document.showPage()
    document.save()
    return out.getvalue()


def first_half(content: bytes) -> bytes:
    return content[: len(content) // 2]


# --- watching the processes --------------------------------------------------


def _pool_processes(worker: subprocess.Popen[bytes]) -> dict[int, tuple[int, int]]:
    """Each pool process of the worker (Linux: read from /proc), by process
    id: its CPU time so far (clock ticks) and its peak resident memory
    (VmHWM, bytes)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ... utime stime ...": the command may
            # hold spaces.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            # A zombie (a process killed by an earlier test, not yet reaped)
            # is no longer part of the pool.
            if int(fields[1]) != worker.pid or fields[0] == "Z":
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError):
            continue
        peaks = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        if peaks:  # none once the process has exited
            found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12]), int(peaks[0]))
    assert found, "the worker has no pool processes"
    return {pid: (cpu, peak * 1024) for pid, (cpu, peak) in found.items()}


def pool_peaks(worker: subprocess.Popen[bytes]) -> dict[int, int]:
    """The peak resident memory of each pool process of the worker, once
    they are idle: a pool process loads its models after the worker says it
    is ready, and its peak grows meanwhile."""
    deadline = time.monotonic() + 60
    last = _pool_processes(worker)
    while True:
        time.sleep(0.5)
        now = _pool_processes(worker)
        # Idle: at most 30 ms of CPU time in half a second.
        idle = 0.03 * os.sysconf("SC_CLK_TCK")
        if now.keys() == last.keys() and all(now[pid][0] - last[pid][0] <= idle for pid in now):
            return {pid: peak for pid, (_cpu, peak) in now.items()}
        assert time.monotonic() < deadline, "the pool processes did not settle"
        last = now


def assert_pool_unharmed(worker: subprocess.Popen[bytes], before: dict[int, int]) -> None:
    """The same pool processes as before (none died or was replaced), none
    of which needed much more memory at any moment since."""
    assert worker.poll() is None, "the worker exited"
    after = pool_peaks(worker)
    assert after.keys() == before.keys(), (before, after)
    grown = {pid: round((after[pid] - before[pid]) / MIB, 1) for pid in after}
    print(f"peak memory of the pool processes grew by {grown} MiB")
    assert all(peak < MEMORY_HEADROOM / MIB for peak in grown.values()), grown


def api_peak() -> int:
    """The peak resident memory of this process, which serves the API."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# --- the API -------------------------------------------------------------------


def dataset_with(client: httpx.Client, *model_types: str) -> dict[str, Any]:
    dataset = make_dataset(client)
    for model_type in model_types:
        make_post_processor(client, dataset, name=model_type, model_type=model_type)
    return dataset


def uploaded(
    client: httpx.Client, dataset: dict[str, Any], content: bytes, name: str, extension: str
) -> dict[str, Any]:
    """A new item with `content` as its file; the upload is accepted."""
    item = make_item(client, dataset)
    assert ok(upload(client, dataset, item, content, name))["extension"] == extension
    return item


def jobs_by_model(
    client: httpx.Client, dataset: dict[str, Any], item: dict[str, Any], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    post_processors = ok(client.get(f"/datasets/{dataset['id']}/post-processors"))
    model_types = {pp["id"]: pp["model_type"] for pp in post_processors}
    jobs = wait_for_jobs(client, dataset, item, timeout=timeout)
    return {model_types[job["post_processor_id"]]: job for job in jobs}


def assert_failed_once(job: dict[str, Any]) -> str:
    """Failed for good by its first attempt (a permanent error: no retry),
    with nothing kept as a result; its error."""
    assert (job["status"], job["attempts"]) == ("failed", 1), job
    assert job["max_attempts"] > 1, "a transient error would have been retried"
    assert job["result"] is None and job["completed_at"], job
    error: str = job["error"]
    # The reason, not a trace or where the file is stored.
    assert "Traceback" not in error and str(get_settings().files_dir) not in error, error
    return error


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def thumbnail(client: httpx.Client, dataset: dict[str, Any], item: dict[str, Any]) -> Any:
    return client.get(item_path(dataset, item) + "/download", params={"thumbnail": "true"})


# --- the tests -----------------------------------------------------------------


def test_a_docx_zip_bomb_fails_naming_the_limit_and_the_worker_serves_on(client, worker):
    bomb = docx_bomb()
    inflated = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("word/document.xml").file_size
    assert len(bomb) < 2 * MIB and inflated > 15 * MAX_PART_BYTES
    dataset = dataset_with(client, "ocr")
    before = pool_peaks(worker)

    item = uploaded(client, dataset, bomb, "report.docx", "docx")
    [job] = jobs_by_model(client, dataset, item).values()

    print(f"\n.docx zip bomb: {len(bomb) / MIB:.1f} MiB sent, {inflated / MIB:.0f} MiB inflated")
    error = assert_failed_once(job)
    limit = MAX_PART_BYTES // MIB
    assert error == (
        f"The .docx file's word/document.xml is larger than {limit} MiB uncompressed; "
        "it is not read."
    )
    got = ok(client.get(item_path(dataset, item)))
    assert got["text"] == "" and got["job_status"]["failed"] == 1, got
    assert_pool_unharmed(worker, before)

    # The same worker serves the next .docx.
    other = uploaded(client, dataset, docx("after the bomb"), "fine.docx", "docx")
    [done] = jobs_by_model(client, dataset, other).values()
    assert (done["status"], done["attempts"]) == ("completed", 1), done
    assert ok(client.get(item_path(dataset, other)))["text"] == "after the bomb"
    assert_pool_unharmed(worker, before)


LIMIT = Image.MAX_IMAGE_PIXELS or 0
# Between the limit and twice it, Pillow only warns and the models' own
# check refuses; past twice the limit Pillow itself refuses to open the file.
OVER_THE_LIMIT = math.isqrt(int(LIMIT * 1.9))
OVER_TWICE_THE_LIMIT = math.isqrt(LIMIT * 3)


# The API runs in this process, where the suite turns warnings into errors;
# in a real API process, as in the worker, Pillow's warning is only logged.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("side", "model_error", "thumbnail_error"),
    [
        (
            OVER_THE_LIMIT,
            f"{OVER_THE_LIMIT}x{OVER_THE_LIMIT} pixels (at most {LIMIT}).",
            f"The image is too large for a thumbnail ({OVER_THE_LIMIT}x{OVER_THE_LIMIT}).",
        ),
        (
            OVER_TWICE_THE_LIMIT,
            f"Image size ({OVER_TWICE_THE_LIMIT**2} pixels) exceeds limit of {2 * LIMIT} pixels",
            f"No thumbnail can be made of this image: Image size ({OVER_TWICE_THE_LIMIT**2} "
            f"pixels) exceeds limit of {2 * LIMIT} pixels",
        ),
    ],
    ids=["over-the-limit", "over-twice-the-limit"],
)
def test_a_decompression_bomb_image_fails_its_jobs_and_gets_a_415_thumbnail(
    client, worker, side, model_error, thumbnail_error
):
    bomb = png_bomb(side)
    assert len(bomb) < 64 * 1024 and side * side > LIMIT > 0
    dataset = dataset_with(client, "ocr", "detection")
    before = pool_peaks(worker)

    item = uploaded(client, dataset, bomb, "poster.png", "png")
    peak = api_peak()
    started = time.monotonic()
    response = thumbnail(client, dataset, item)
    elapsed = time.monotonic() - started

    print(f"\n{side}x{side} PNG of {len(bomb) // 1024} KiB: thumbnail answered in {elapsed:.3f} s")
    # Refused from the header: not a 500, quick, and the pixels never
    # decoded in the API (side² bytes at least).
    assert problem(response, 415)["detail"].startswith(thumbnail_error), response.text
    assert elapsed < 2
    assert api_peak() - peak < MEMORY_HEADROOM
    # The file itself is still served as it was sent.
    assert client.get(item_path(dataset, item) + "/download").content == bomb

    jobs = jobs_by_model(client, dataset, item)
    assert jobs.keys() == {"ocr", "detection"}
    for job in jobs.values():
        error = assert_failed_once(job)
        assert error.startswith("The image is too large to process: "), error
        assert model_error in error, error
        assert seconds_between(job["started_at"], job["completed_at"]) < 2, job
    assert_pool_unharmed(worker, before)


def test_a_thumbnail_of_a_bomb_is_415_where_warnings_are_errors(client):
    """With warnings as errors, Pillow's warning about an image between the
    limit and twice it comes out of Image.open itself, before the route's
    own size check: still a 415, not a 500."""
    dataset = make_dataset(client)
    item = uploaded(client, dataset, png_bomb(OVER_THE_LIMIT), "poster.png", "png")

    # The filters are the process's, so they hold in the API's thread too.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        response = thumbnail(client, dataset, item)

    assert problem(response, 415)["detail"].startswith(
        f"No thumbnail can be made of this image: Image size ({OVER_THE_LIMIT**2} pixels) "
        f"exceeds limit of {LIMIT} pixels"
    ), response.text


def test_a_truncated_png_fails_its_job_and_gets_a_415_thumbnail(client, worker):
    dataset = dataset_with(client, "detection")
    item = uploaded(client, dataset, first_half(png_with_words("CUT SHORT")), "cut.png", "png")

    detail = problem(thumbnail(client, dataset, item), 415)["detail"]
    [job] = jobs_by_model(client, dataset, item).values()

    assert detail.startswith("No thumbnail can be made of this image: image file is truncated")
    assert assert_failed_once(job).startswith("The image cannot be read: image file is truncated")


def test_a_truncated_pdf_fails_its_job(client, worker):
    dataset = dataset_with(client, "ocr")
    content = first_half(pdf_with_text("This page was cut in half on its way."))
    item = uploaded(client, dataset, content, "cut.pdf", "pdf")

    [job] = jobs_by_model(client, dataset, item).values()

    error = assert_failed_once(job)
    assert error.startswith("The PDF cannot be read: Failed to load document (PDFium: "), error


def test_a_wav_cut_short_in_its_header_fails_its_job(client, worker):
    dataset = dataset_with(client, "stt")
    # The RIFF and fmt chunks, then the end before the data chunk.
    item = uploaded(client, dataset, SPEECH.read_bytes()[:40], "cut.wav", "wav")

    [job] = jobs_by_model(client, dataset, item).values()

    error = assert_failed_once(job)
    assert error == "The audio file cannot be decoded: Error in WAV file. No 'data' chunk marker."


def test_a_wav_cut_short_in_its_samples_fails_its_job(client, worker):
    """libsndfile would read a WAV whose samples end before its header says
    as far as they go: the speech model refuses it instead of writing a
    transcript of the part that arrived as if it were the whole."""
    dataset = dataset_with(client, "stt")
    whole = SPEECH.read_bytes()
    seconds = 3
    content = whole[: 44 + seconds * 16_000 * 2]  # 16 kHz, 16-bit mono after a 44-byte header
    item = uploaded(client, dataset, content, "cut.wav", "wav")

    [job] = jobs_by_model(client, dataset, item).values()

    error = assert_failed_once(job)
    assert error == (
        f"The audio file is cut short: its header declares {len(whole) - 44} bytes of sound"
        f" and it holds {seconds * 16_000 * 2}."
    )
    assert ok(client.get(item_path(dataset, item)))["text"] == ""


def test_a_pdf_of_thousands_of_pages_fails_on_the_page_limit_without_reading_them(client, worker):
    pages = 3000
    content = blank_pdf(pages)
    max_pages = get_settings().max_pdf_pages
    assert pages > max_pages
    dataset = dataset_with(client, "ocr")
    before = pool_peaks(worker)

    started = time.monotonic()
    item = uploaded(client, dataset, content, "long.pdf", "pdf")
    [job] = jobs_by_model(client, dataset, item).values()
    elapsed = time.monotonic() - started

    run = seconds_between(job["started_at"], job["completed_at"])
    print(
        f"\n{pages}-page PDF of {len(content) // 1024} KiB: the job ran {run * 1000:.0f} ms, "
        f"{elapsed:.2f} s from upload to failed"
    )
    error = assert_failed_once(job)
    assert error == (
        f"The PDF has {pages} pages; at most {max_pages} are read (the MAX_PDF_PAGES setting)."
    )
    # Rendering and reading 3,000 pages would take minutes.
    assert run < 2 and elapsed < 10
    assert_pool_unharmed(worker, before)
