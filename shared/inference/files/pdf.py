"""The text of a PDF, page by page: the page's text layer where it has one,
OCR of the rendered page where it has not (a scan, a photo saved as PDF).

pypdfium2 reads and renders with the pdfium binary its wheel carries. The OCR
itself is passed in, so this module knows nothing of the OCR engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from shared.inference.base import PermanentError

# Good resolution for OCR of body text ...
RENDER_DPI = 200
# ... but no more pixels than RapidOCR uses: it shrinks any image whose longer
# side passes 2000 px (its max_side_len) before finding text, so more would
# only cost time. The cap also bounds memory for a page the size of a poster.
MAX_RENDER_SIDE = 2000
POINTS_PER_INCH = 72

# PDFium may not be called from two threads at once, not even on different
# documents. Worker processes run one job at a time, but a threaded pool
# would not, so every PDFium call is made holding this lock (OCR is not).
_pdfium_lock = threading.Lock()

# Takes a page rendered as a BGR array, gives its lines ({text, score, box}).
OcrLines = Callable[[Any], list[dict[str, Any]]]


class PageText(TypedDict):
    page: int  # from 1
    source: Literal["text-layer", "ocr"]
    text: str
    lines: NotRequired[list[dict[str, Any]]]  # OCR pages only


def read_pdf(file: Path, ocr: OcrLines, max_pages: int) -> list[PageText]:
    """Every page's text, in order. Refuses (PermanentError) a PDF that cannot
    be opened or has more than `max_pages` pages, before any page is read."""
    with _pdfium_lock:
        document = _open(file)
    try:
        with _pdfium_lock:
            page_count = len(document)
        if page_count > max_pages:
            raise PermanentError(
                f"The PDF has {page_count} pages; at most {max_pages} are read "
                "(the MAX_PDF_PAGES setting)."
            )
        pages: list[PageText] = []
        for index in range(page_count):
            with _pdfium_lock:
                text, image = _text_layer_or_image(document, index)
            if image is None:
                pages.append({"page": index + 1, "source": "text-layer", "text": text})
            else:
                lines = ocr(image)
                text = "\n".join(line["text"] for line in lines)
                pages.append({"page": index + 1, "source": "ocr", "text": text, "lines": lines})
        return pages
    finally:
        with _pdfium_lock:
            document.close()


def _open(file: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(file)
    except pdfium.PdfiumError as error:
        if error.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise PermanentError("The PDF is encrypted and needs a password to open.") from error
        raise PermanentError(f"The PDF cannot be read: {error}") from error


def _text_layer_or_image(document: pdfium.PdfDocument, index: int) -> tuple[str, Any]:
    """The page's text layer, or, if it has none, the page rendered for OCR
    (as a BGR array, what RapidOCR takes)."""
    try:
        page = document[index]
        try:
            text_page = page.get_textpage()
            try:
                text = _clean(text_page.get_text_range())
            finally:
                text_page.close()
            if text.strip():
                return text, None
            return "", _render(page)
        finally:
            page.close()
    except pdfium.PdfiumError as error:
        raise PermanentError(f"Page {index + 1} of the PDF cannot be read: {error}") from error


def _render(page: pdfium.PdfPage) -> Any:
    width, height = page.get_size()
    scale = min(RENDER_DPI / POINTS_PER_INCH, MAX_RENDER_SIDE / max(width, height, 1.0))
    bitmap = page.render(scale=scale)
    try:
        # A copy: the array is a view on the bitmap's buffer, freed on close.
        image = bitmap.to_numpy().copy()
    finally:
        bitmap.close()
    # Pages with transparency come as BGRA; the engine wants three channels.
    return image[:, :, :3] if image.ndim == 3 else image


def _clean(text: str) -> str:
    # PDFium ends lines with CRLF. A form feed would break the page
    # separator of the item's text (see ocr.py), so it becomes a line break.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").strip()
