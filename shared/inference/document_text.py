"""The text of a document: model_type `ocr`, the contract's name for it.
Images are read by OCR with RapidOCR, whose wheel carries its ONNX models;
PDFs page by page (the page's text layer, or OCR of the rendered page when
it has none); Word .docx files and Word 97-2003 .doc files by their
paragraphs, with no OCR needed.

The item's text puts a form feed ("\\f") between the pages of a PDF, so that
page n is always `text.split("\\f")[n - 1]`, empty pages included; the lines
of an OCR-read page, and the paragraphs of a .docx or .doc, are separated by
"\\n".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
)
from shared.inference.files.doc import read_doc
from shared.inference.files.docx import read_docx
from shared.inference.files.images import open_upright
from shared.inference.files.pdf import read_pdf
from shared.settings import get_settings

PDF = "application/pdf"
DOC = "application/msword"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PAGE_SEPARATOR = "\f"


class DocumentText(PostProcessorModel):
    model_type = "ocr"
    name = "rapidocr-onnxruntime"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        if file is None:
            raise PermanentError("The item has no file to read text from.")
        # The kind detected from the bytes at upload, not the client-editable
        # extension.
        if item.media_type.startswith("image/"):
            return self._read_image(file)
        if item.media_type == PDF:
            return self._read_pdf(file)
        if item.media_type == DOCX:
            return self._read_docx(file)
        if item.media_type == DOC:
            return self._read_doc(file)
        raise PermanentError(
            "OCR reads images, PDFs and Word .docx and .doc files; "
            f"this item's file is {item.media_type or 'of an unknown kind'!r}."
        )

    def read_lines(self, image: Any) -> list[dict[str, Any]]:
        """The text lines found in an image (a BGR array), top to bottom."""
        found, _timings = self.engine(image)
        return [_line(box, text, score) for box, text, score in found or []]

    def _read_image(self, file: Path) -> ModelOutput:
        lines = self.read_lines(_load_image(file))
        return ModelOutput(
            raw={"model": self.name, "lines": lines},
            text="\n".join(line["text"] for line in lines),
        )

    def _read_pdf(self, file: Path) -> ModelOutput:
        pages = read_pdf(file, self.read_lines, get_settings().max_pdf_pages)
        return ModelOutput(
            raw={"model": self.name, "pages": pages},
            text=PAGE_SEPARATOR.join(page["text"] for page in pages),
        )

    def _read_docx(self, file: Path) -> ModelOutput:
        paragraphs = read_docx(file)
        return ModelOutput(
            raw={"model": self.name, "paragraphs": len(paragraphs)},
            text="\n".join(paragraphs),
        )

    def _read_doc(self, file: Path) -> ModelOutput:
        paragraphs = read_doc(file)
        return ModelOutput(
            raw={"model": self.name, "paragraphs": len(paragraphs)},
            text="\n".join(paragraphs),
        )


def _load_image(file: Path) -> Any:
    import numpy

    return numpy.asarray(open_upright(file, "RGB"))[:, :, ::-1]  # RapidOCR wants BGR


def _line(box: Any, text: str, score: float) -> dict[str, Any]:
    return {
        "text": text,
        "score": round(float(score), 4),
        "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
    }
