import io
import zipfile

import pytest
from PIL import Image

from shared.errors import UnsupportedMediaType
from shared.filekinds import detect


def image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "extension"),
    [
        ("PNG", "png"),
        ("JPEG", "jpg"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tif"),
    ],
)
def test_images_are_known_by_their_bytes(fmt, extension):
    assert detect(image_bytes(fmt)).extension == extension


def test_pdf_and_text():
    assert detect(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n").extension == "pdf"
    assert detect("plain words, ünïcode too\n".encode()).extension == "txt"


def test_text_cut_inside_a_multibyte_character_is_still_text():
    assert detect("ab€".encode()[:-1]).extension == "txt"


@pytest.mark.parametrize(
    "head",
    [b"\x7fELF\x02\x01\x01" + b"\x00" * 100, b"\x00\x01\x02\x03binary", b""],
)
def test_other_bytes_are_refused(head):
    with pytest.raises(UnsupportedMediaType):
        detect(head)


def test_a_plain_zip_is_refused_even_named_docx():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(UnsupportedMediaType):
        detect(out.getvalue())
