"""OCR of documents: PDFs (text layer, scanned, mixed), Word .docx files and
Word 97-2003 .doc files, run through the real RapidOCR model on files built here."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from shared.filekinds import detect
from shared.inference.base import ItemInput, PermanentError, PostProcessorConfig
from shared.inference.document_text import DOC, DOCX, PDF, DocumentText
from shared.inference.files import doc as doc_text
from shared.inference.files import docx as docx_text
from shared.inference.files import pdf as pdf_text
from shared.settings import Settings, get_settings

CONFIG = PostProcessorConfig(id=uuid.uuid4(), name="ocr", model_type="ocr")
PAGE_SIZE = (432, 200)  # points; small pages keep rendering and OCR quick
SCANNED_WORDS = "INVOICE 4711 PAID"


@pytest.fixture(scope="module")
def model() -> DocumentText:
    return DocumentText()  # loads the ONNX models: once for the module


def run(model: DocumentText, media_type: str, content: bytes, tmp_path: Path) -> Any:
    file = tmp_path / "upload"
    file.write_bytes(content)
    item = ItemInput(
        id=uuid.uuid4(), name="", description="", text="", extension="", media_type=media_type
    )
    return model.run(item, file, CONFIG)


def uploaded_without_ocr(
    model: DocumentText, media_type: str, content: bytes, tmp_path: Path, monkeypatch: Any
) -> Any:
    """The output for a file that upload detects as `media_type`, read with
    OCR turned off: only text layers and documents' own text can come out."""
    assert detect(content[:8192]).media_type == media_type
    monkeypatch.setattr(model, "read_lines", no_ocr)
    return run(model, media_type, content, tmp_path)


def words_image(words: str) -> Image.Image:
    image = Image.new("RGB", (900, 200), "white")
    ImageDraw.Draw(image).text((20, 60), words, fill="black", font=ImageFont.load_default(size=64))
    return image


def pdf(*pages: str | Image.Image | None, **canvas_options: Any) -> bytes:
    """A PDF with one page per argument: text lines drawn as text (a text
    layer), an image drawn as a picture only (a scan), None a blank page."""
    out = io.BytesIO()
    document = canvas.Canvas(out, pagesize=PAGE_SIZE, **canvas_options)
    for page in pages:
        if isinstance(page, str):
            document.setFont("Helvetica", 14)
            for number, line in enumerate(page.splitlines()):
                document.drawString(36, 150 - 20 * number, line)
        elif isinstance(page, Image.Image):
            document.drawImage(ImageReader(page), 0, 0, *PAGE_SIZE)
        document.showPage()
    document.save()
    return out.getvalue()


def no_ocr(image: Any) -> list[dict[str, Any]]:
    raise AssertionError("a page was sent to OCR")


def without_spaces(text: str) -> str:
    # RapidOCR sometimes drops the space between two words.
    return "".join(text.split())


# --- PDF -------------------------------------------------------------------


def test_a_pdf_with_a_text_layer_is_read_from_it_without_ocr(model, tmp_path, monkeypatch):
    content = pdf("Invoice 4711 for Acme Corporation\nTotal due: 1,250.00 EUR")

    output = uploaded_without_ocr(model, PDF, content, tmp_path, monkeypatch)

    assert output.text == "Invoice 4711 for Acme Corporation\nTotal due: 1,250.00 EUR"
    assert output.raw == {
        "model": "rapidocr-onnxruntime",
        "pages": [{"page": 1, "source": "text-layer", "text": output.text}],
    }


def test_a_scanned_pdf_page_is_rendered_and_read_by_ocr(model, tmp_path):
    scan = io.BytesIO()
    # Pillow writes an image-only PDF, as a scanner does.
    words_image(SCANNED_WORDS).save(scan, "PDF", resolution=150)

    output = run(model, PDF, scan.getvalue(), tmp_path)

    assert without_spaces(output.text) == without_spaces(SCANNED_WORDS)
    [page] = output.raw["pages"]
    assert page["page"] == 1 and page["source"] == "ocr" and page["text"] == output.text
    [line] = page["lines"]
    assert line["text"] == output.text and 0.8 < line["score"] <= 1
    # Four corners, in pixels of the page as rendered: a 900x200 image at
    # 150 dpi, rendered at 200 dpi, is 1200x267 px; the words lie across it.
    xs, ys = zip(*line["box"], strict=True)
    assert len(xs) == 4
    assert 0 <= min(xs) < 100 and 500 < max(xs) <= 1200
    assert 50 < min(ys) < max(ys) < 267


def test_a_mixed_pdf_reads_each_page_its_own_way_and_keeps_page_breaks(model, tmp_path):
    content = pdf("Page one has a text layer.", words_image(SCANNED_WORDS), None)

    output = run(model, PDF, content, tmp_path)

    pages = output.raw["pages"]
    assert [(page["page"], page["source"]) for page in pages] == [
        (1, "text-layer"),
        (2, "ocr"),
        (3, "ocr"),
    ]
    # Pages are separated by a form feed, blank ones included, so page n is
    # always split("\f")[n - 1].
    first, second, third = output.text.split("\f")
    assert first == "Page one has a text layer."
    assert without_spaces(second) == without_spaces(SCANNED_WORDS)
    assert third == "" and pages[2]["lines"] == []
    assert "lines" not in pages[0]


def test_a_huge_page_is_rendered_within_the_pixel_cap(tmp_path):
    poster = tmp_path / "poster.pdf"
    # 900x200 px at 10 dpi: a 90x20 inch page, 18000x4000 px at 200 dpi.
    words_image(SCANNED_WORDS).save(poster, "PDF", resolution=10)
    shapes = []

    def record(image: Any) -> list[dict[str, Any]]:
        shapes.append(image.shape)
        return []

    pdf_text.read_pdf(poster, record, max_pages=1)

    [(height, width, channels)] = shapes
    assert width == pdf_text.MAX_RENDER_SIDE and 440 < height < 450 and channels == 3


def test_a_pdf_over_the_page_limit_fails_before_any_page_is_read(model, tmp_path, monkeypatch):
    monkeypatch.setattr(model, "read_lines", no_ocr)
    monkeypatch.setattr(get_settings(), "max_pdf_pages", 2)

    with pytest.raises(PermanentError, match=r"has 3 pages; at most 2 .*MAX_PDF_PAGES"):
        run(model, PDF, pdf(None, None, None), tmp_path)


def test_the_page_limit_defaults_to_200(model, tmp_path, monkeypatch):
    assert Settings().max_pdf_pages == 200
    monkeypatch.setattr(model, "read_lines", no_ocr)
    content = pdf(*["text"] * 201)

    with pytest.raises(PermanentError, match="has 201 pages; at most 200"):
        run(model, PDF, content, tmp_path)
    assert run(model, PDF, pdf(*["text"] * 200), tmp_path).text == "\f".join(["text"] * 200)


@pytest.mark.parametrize(
    "content",
    [b"%PDF-1.7\nthis is not a PDF body\n%%EOF\n", pdf("cut short")[:300]],
    ids=["garbage", "truncated"],
)
def test_a_corrupt_pdf_fails_permanently_with_the_reason(model, tmp_path, content):
    with pytest.raises(PermanentError, match="The PDF cannot be read: .*PDFium: "):
        run(model, PDF, content, tmp_path)


def test_a_password_protected_pdf_fails_permanently_saying_so(model, tmp_path):
    content = pdf("secret", encrypt="a password")

    with pytest.raises(PermanentError, match="encrypted and needs a password"):
        run(model, PDF, content, tmp_path)


# --- docx ------------------------------------------------------------------

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/{part}" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
RELATIONSHIPS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/{part}" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument"/>'
    "</Relationships>"
)
BODY = (
    "<w:p><w:r><w:t>Quarterly report</w:t></w:r></w:p>"
    # Runs join; deleted text of a tracked change is left out; a tab stays.
    '<w:p><w:r><w:t xml:space="preserve">Revenue grew </w:t></w:r>'
    "<w:r><w:rPr><w:b/></w:rPr><w:t>12%</w:t></w:r>"
    "<w:del><w:r><w:delText>15%</w:delText></w:r></w:del>"
    "<w:r><w:tab/><w:t>as planned.</w:t></w:r></w:p>"
    "<w:p/>"
    "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc>"
    "<w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
    "<w:p><w:r><w:t>Line one</w:t><w:br/><w:t>line two</w:t></w:r></w:p>"
    # A text box, stored twice by Word: read once.
    "<w:p><w:r><mc:AlternateContent>"
    "<mc:Choice Requires='wps'><w:drawing><w:txbxContent>"
    "<w:p><w:r><w:t>Boxed note</w:t></w:r></w:p></w:txbxContent></w:drawing></mc:Choice>"
    "<mc:Fallback><w:pict><w:txbxContent>"
    "<w:p><w:r><w:t>Boxed note</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>"
    "</mc:AlternateContent></w:r><w:r><w:t>After the box</w:t></w:r></w:p>"
    "<w:sectPr/>"
)


def docx(body: str = BODY, part: str = "document.xml") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES.format(part=part))
        archive.writestr("_rels/.rels", RELATIONSHIPS.format(part=part))
        archive.writestr(
            f"word/{part}",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<w:document xmlns:w="{W}" xmlns:mc="{MC}"><w:body>{body}</w:body></w:document>',
        )
    return out.getvalue()


def test_a_docx_gives_the_text_of_its_paragraphs_and_tables(model, tmp_path, monkeypatch):
    output = uploaded_without_ocr(model, DOCX, docx(), tmp_path, monkeypatch)

    assert output.text == (
        "Quarterly report\n"
        "Revenue grew 12%\tas planned.\n"
        "\n"
        "Region\n"
        "North\n"
        "Line one\nline two\n"
        "Boxed note\n"  # a paragraph inside another ends, and so comes, first
        "After the box"
    )
    assert output.raw == {"model": "rapidocr-onnxruntime", "paragraphs": 8}


def test_the_docx_document_part_is_found_through_the_package_relationships(model, tmp_path):
    content = docx("<w:p><w:r><w:t>Elsewhere</w:t></w:r></w:p>", part="main.xml")

    assert run(model, DOCX, content, tmp_path).text == "Elsewhere"


def corrupt_xml() -> bytes:
    return docx("<w:p><w:r><w:t>unclosed</w:r></w:p>")


def without_document_part() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES.format(part="document.xml"))
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"PK\x03\x04 not really a zip", "not a valid zip archive"),
        (without_document_part(), r"no document part \(word/document.xml\)"),
        (corrupt_xml(), "malformed XML"),
    ],
    ids=["not-a-zip", "no-document-part", "malformed-xml"],
)
def test_a_broken_docx_fails_permanently_with_the_reason(model, tmp_path, content, reason):
    with pytest.raises(PermanentError, match=reason):
        run(model, DOCX, content, tmp_path)


@pytest.mark.parametrize("part", ["document.xml", "_rels/.rels"])
def test_a_docx_part_inflating_past_the_cap_is_not_read(model, tmp_path, monkeypatch, part):
    # The document part's declared size is checked up front; the
    # relationships part is stopped by the capped stream while it is read.
    monkeypatch.setattr(docx_text, "MAX_PART_BYTES", 4096)
    padding = "<w:p/>" * 2000  # 12 kB inflated, a few hundred bytes compressed
    content = docx(padding) if part == "document.xml" else _padded_relationships(padding)

    with pytest.raises(PermanentError, match=f"{part} is larger than"):
        run(model, DOCX, content, tmp_path)


def _padded_relationships(padding: str) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            data = source.read(name)
            if name == "_rels/.rels":
                data = data.replace(
                    b"</Relationships>", f"<!--{padding}--></Relationships>".encode()
                )
            archive.writestr(name, data)
    return out.getvalue()


# --- doc ---------------------------------------------------------------------

DATA = Path(__file__).parents[2] / "data"
# Both made by real software (tests/data/README.md): LibreOffice 7.4 saving
# as "Word 97" (its text stored as UTF-16), and Microsoft Word (cp1252).
LIBREOFFICE_DOC = DATA / "quarterly_report.doc"
WORD_DOC = DATA / "olefile_test.doc"


def test_a_doc_gives_the_text_of_its_paragraphs_tables_and_field_results(
    model, tmp_path, monkeypatch
):
    content = LIBREOFFICE_DOC.read_bytes()

    output = uploaded_without_ocr(model, DOC, content, tmp_path, monkeypatch)

    assert output.text == (
        "Quarterly report\n"
        # The footnote's mark is dropped, and its text (after the main
        # document's) is not read; a line break stays one.
        "Revenue grew 12% as planned.\nSecond line of the paragraph.\n"
        # A 2x2 table: one paragraph per cell, nothing for the empty cell.
        "Region\n"
        "North\n"
        "Grüße\n"
        # HYPERLINK and PAGE fields: their results, not their codes.
        "See the full report online, page 1.\n"
        "Café, naïve, € 5, Ελληνικά, 日本語"
    )
    assert output.raw == {"model": "rapidocr-onnxruntime", "paragraphs": 7}
    assert "Audited" not in output.text and "HYPERLINK" not in output.text


def test_a_doc_saved_by_word_with_cp1252_text_is_read(model, tmp_path):
    content = WORD_DOC.read_bytes()
    assert detect(content[:8192]).media_type == DOC

    output = run(model, DOC, content, tmp_path)

    assert output.text == "Test OLE file, saved as Word 97-2003 Document."
    assert output.raw == {"model": "rapidocr-onnxruntime", "paragraphs": 1}


def fib_at(content: bytes) -> int:
    """Where the WordDocument stream, and so its FIB, starts in the file: the
    sector starting with the FIB's magic number."""
    [offset] = [at for at in range(512, len(content), 512) if content[at : at + 2] == b"\xec\xa5"]
    return offset


def patched(content: bytes, at: int, value: bytes) -> bytes:
    return content[:at] + value + content[at + len(value) :]


def encrypted() -> bytes:
    content = LIBREOFFICE_DOC.read_bytes()
    flags_at = fib_at(content) + 0x0A
    flags = int.from_bytes(content[flags_at : flags_at + 2], "little") | 0x0100  # fEncrypted
    return patched(content, flags_at, flags.to_bytes(2, "little"))


def word_95() -> bytes:
    content = WORD_DOC.read_bytes()
    return patched(content, fib_at(content) + 2, (104).to_bytes(2, "little"))  # nFib


def piece_table_outside() -> bytes:
    content = WORD_DOC.read_bytes()
    return patched(content, fib_at(content) + 0x1A6, (10**6).to_bytes(4, "little"))  # lcbClx


def without_word_stream() -> bytes:
    # The directory entry's name (UTF-16) renamed: an OLE2 file, not Word's.
    name = "WordDocument".encode("utf-16-le")
    return WORD_DOC.read_bytes().replace(name, "WordDocumenX".encode("utf-16-le"))


def truncated() -> bytes:
    return LIBREOFFICE_DOC.read_bytes()[:3000]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (encrypted(), r"encrypted \(password-protected\)"),
        (word_95(), "Word 6.0/95 format"),
        (piece_table_outside(), "piece table lies outside its table stream"),
        (without_word_stream(), "no WordDocument stream; it is not a Word document"),
        (truncated(), "cannot be read"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8, "cannot be read"),
        (b"not an OLE2 file at all", "not an OLE2 compound file"),
    ],
    ids=[
        "encrypted",
        "word-95",
        "bad-piece-table",
        "no-word-stream",
        "truncated",
        "garbage",
        "text",
    ],
)
def test_a_doc_that_cannot_be_read_fails_permanently_with_the_reason(
    model, tmp_path, content, reason
):
    with pytest.raises(PermanentError, match=reason):
        run(model, DOC, content, tmp_path)


def test_a_doc_stream_over_the_cap_is_not_read(model, tmp_path, monkeypatch):
    monkeypatch.setattr(doc_text, "MAX_STREAM_BYTES", 2048)  # the WordDocument is 4 kB

    with pytest.raises(PermanentError, match="WordDocument stream is larger than"):
        run(model, DOC, WORD_DOC.read_bytes(), tmp_path)


def streams(pieces: list[tuple[str, bool]], ccp_text: int) -> tuple[bytes, bytes]:
    """A WordDocument and a table stream holding `pieces` of text, each
    (text, compressed; a compressed piece's text gives its bytes): a Word 97
    FIB (FibBase, 14 words, 22 longs, 93 fc/lcb pairs) and, at the table's
    start, a CLX of one property modifier (skipped) and the piece table."""
    fib_size = 32 + 2 + 28 + 2 + 88 + 2 + 93 * 8
    text = bytearray()
    cps, fcs = [0], []
    for piece, compressed in pieces:
        at = fib_size + len(text)
        if compressed:
            fcs.append(0x40000000 | (2 * at))
            text += piece.encode("latin-1")
        else:
            fcs.append(at)
            text += piece.encode("utf-16-le")
        # Character positions count UTF-16 code units: an emoji is two.
        cps.append(cps[-1] + (len(piece) if compressed else len(piece.encode("utf-16-le")) // 2))
    plc = b"".join(cp.to_bytes(4, "little") for cp in cps) + b"".join(
        b"\0\0" + fc.to_bytes(4, "little") + b"\0\0" for fc in fcs
    )
    clx = b"\x01\x02\x00ab" + b"\x02" + len(plc).to_bytes(4, "little") + plc  # a Prc first
    fib = bytearray(fib_size)
    fib[0:4] = b"\xec\xa5\xc1\x00"
    fib[10:12] = (0x0200).to_bytes(2, "little")  # fWhichTblStm: 1Table
    fib[32:34] = (14).to_bytes(2, "little")
    fib[62:64] = (22).to_bytes(2, "little")
    fib[64 + 12 : 64 + 16] = ccp_text.to_bytes(4, "little")
    fib[152:154] = (93).to_bytes(2, "little")
    fib[154 + 33 * 8 : 154 + 34 * 8] = (0).to_bytes(4, "little") + len(clx).to_bytes(4, "little")
    return bytes(fib + text), clx


def test_pieces_are_joined_whether_compressed_or_utf16_up_to_the_main_documents_end():
    word, table = streams(
        [
            # cp1252 bytes: a euro sign, curly quotes, and 0x81, which cp1252
            # leaves undefined and Word reads as U+0081.
            ("Price: \x80 5 \x93quoted\x94\x81\r", True),
            ("Ελληνικά \u65e5\u672c\r", False),
            ("Tail\rFootnote text\r", True),  # the main document ends after "Tail\r"
        ],
        ccp_text=38,
    )
    fib = doc_text._Fib(word)
    assert fib.flags & 0x0200 and fib.ccp_text == 38

    text = doc_text._main_text(word, table, fib)

    assert text == "Price: € 5 “quoted”\x81\rΕλληνικά 日本\rTail\r"
    assert doc_text._paragraphs(text) == ["Price: € 5 “quoted”", "Ελληνικά 日本", "Tail"]


def test_a_character_outside_the_bmp_counts_as_two_positions():
    word, table = streams(
        [("Done \U0001f600 and \U00020000\r", False), ("Next\r", True)], ccp_text=20
    )

    text = doc_text._main_text(word, table, doc_text._Fib(word))

    assert doc_text._paragraphs(text) == ["Done \U0001f600 and \U00020000", "Next"]


def test_a_piece_running_past_its_stream_fails_permanently():
    word, table = streams([("Short\r", False)], ccp_text=6)

    with pytest.raises(PermanentError, match="runs past the end"):
        doc_text._main_text(word[:-4], table, doc_text._Fib(word))


def test_words_special_characters_become_plain_text():
    text = (
        "Intro\x01 with picture\x08 anchors\r"
        # A nested field in another's result shows its own result; a field
        # inside a field's code is dropped with it; one with no result
        # leaves nothing.
        '\x13 HYPERLINK "x" \x14see \x13 PAGE \x142\x15 here\x15.\x13 TC \x13 SEQ \x141\x15\x15\r'
        "One\x0btwo\x1ethree\x1ffour\tfive\x0c"
        "A1\x07\x07C1\rmore\x07\x07"  # an empty cell, a cell of two paragraphs, row marks
        "\r"  # an empty paragraph stays one
        "Last"  # no final mark
    )

    assert doc_text._paragraphs(text) == [
        "Intro with picture anchors",
        "see 2 here.",
        "One\ntwo-threefour\tfive",
        "A1",
        "C1",
        "more",
        "",
        "Last",
    ]


# --- dispatch --------------------------------------------------------------


def test_images_are_still_read_by_ocr(model, tmp_path):
    png = io.BytesIO()
    words_image(SCANNED_WORDS).save(png, "PNG")

    output = run(model, "image/png", png.getvalue(), tmp_path)

    assert without_spaces(output.text) == without_spaces(SCANNED_WORDS)
    assert [line["text"] for line in output.raw["lines"]] == [output.text]


@pytest.mark.parametrize("media_type", ["audio/wav", "text/plain", ""], ids=str)
def test_other_kinds_of_file_fail_permanently_naming_what_is_read(model, tmp_path, media_type):
    with pytest.raises(
        PermanentError, match=r"OCR reads images, PDFs and Word \.docx and \.doc files; "
    ):
        run(model, media_type, b"anything", tmp_path)
