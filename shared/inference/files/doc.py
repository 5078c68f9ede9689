"""The text of a Word 97-2003 binary .doc file: the paragraphs of its main
document, table cells included, read with `olefile` (the file is an OLE2
compound file) and the format's piece table ([MS-DOC] 2.4.1).

The File Information Block (FIB) at the start of the WordDocument stream
says how many characters the main document has (ccpText) and where its piece
table (the CLX) lies in the table stream, 0Table or 1Table as its
fWhichTblStm bit says. Each piece is a run of characters stored either as
cp1252 bytes ("compressed") or as UTF-16LE in the WordDocument stream.

Headers, footers, footnotes, comments and text boxes come after the main
document in the same character sequence and are left out; field codes are
left out and their results kept, as Word shows them. Word 6 and 95 files,
whose FIB differs, and encrypted files are refused.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from shared.inference.base import PermanentError

# The streams are read whole: refuse one larger than this before reading it
# (an upload is capped, but a compound file's directory claims stream sizes).
MAX_STREAM_BYTES = 64 * 1024 * 1024

_WORD_IDENT = 0xA5EC
_NFIB_WORD97 = 0xC1  # Word 97 and later; Word 6 and 95 wrote 101 to 105
_F_ENCRYPTED = 0x0100
_F_WHICH_TBL_STM = 0x0200
_CCP_TEXT = 3  # index of ccpText in FibRgLw97
_CLX = 33  # index of the fcClx/lcbClx pair in FibRgFcLcb97
_CLXT_PRC = 0x01
_CLXT_PCDT = 0x02
_PCD_BYTES = 8
_FC_COMPRESSED = 0x40000000
_FC_MASK = 0x3FFFFFFF

# Word's special characters in the text ([MS-DOC] 2.8.25).
_PARAGRAPH_END = "\r"
_CELL_END = "\x07"  # ends a cell's last paragraph, and (again) a table row
_SECTION_END = "\x0c"  # a page break or section mark; it ends a paragraph too
_FIELD_BEGIN, _FIELD_SEPARATOR, _FIELD_END = "\x13", "\x14", "\x15"
_CHARACTERS = {"\t": "\t", "\x0b": "\n", "\x0e": "\n", "\x1e": "-"}  # tab, breaks, hyphen
# cp1252 leaves five bytes undefined; Word maps them to the same code point.
_CP1252 = {byte: bytes([byte]).decode("cp1252", "replace") for byte in range(0x80, 0xA0)}
_COMPRESSED = str.maketrans(
    {chr(byte): char if char != "\ufffd" else chr(byte) for byte, char in _CP1252.items()}
)


def read_doc(file: Path) -> list[str]:
    """The text of each paragraph of the main document, in order (a table
    cell's paragraphs are paragraphs; empty cells give none)."""
    import olefile

    try:
        # Opened here, not by olefile, so that it is closed when olefile
        # fails on a damaged file too.
        with open(file, "rb") as handle:
            if handle.read(len(olefile.MAGIC)) != olefile.MAGIC:
                raise PermanentError("The .doc file is not an OLE2 compound file.")
            handle.seek(0)
            with olefile.OleFileIO(handle) as ole:
                word = _stream(ole, "WordDocument")
                fib = _Fib(word)
                table = _stream(ole, "1Table" if fib.flags & _F_WHICH_TBL_STM else "0Table")
                return _paragraphs(_main_text(word, table, fib))
    except PermanentError:
        raise
    # olefile raises OSError (OleFileError) for damaged structures; struct,
    # slicing and decoding errors come from a FIB or piece table that lies.
    except (OSError, ValueError, IndexError, KeyError, EOFError, struct.error) as error:
        raise PermanentError(f"The .doc file cannot be read: {error}") from error


def _stream(ole: Any, name: str) -> bytes:
    if not ole.exists(name):
        what = "not a Word document" if name == "WordDocument" else "damaged"
        raise PermanentError(f"The .doc file has no {name} stream; it is {what}.")
    if ole.get_size(name) > MAX_STREAM_BYTES:
        raise PermanentError(
            f"The .doc file's {name} stream is larger than "
            f"{MAX_STREAM_BYTES // (1024 * 1024)} MiB; it is not read."
        )
    with ole.openstream(name) as stream:
        data: bytes = stream.read(MAX_STREAM_BYTES + 1)
    return data


class _Fib:
    """The fields of the File Information Block that the text needs."""

    def __init__(self, word: bytes) -> None:
        if len(word) < 34:
            raise PermanentError("The .doc file's WordDocument stream is too short for a FIB.")
        ident, nfib = struct.unpack_from("<HH", word, 0)
        if ident != _WORD_IDENT:
            raise PermanentError("The .doc file's WordDocument stream has no Word FIB.")
        if nfib < _NFIB_WORD97:
            raise PermanentError(
                "The .doc file is in the Word 6.0/95 format, which is not read; "
                "save it as Word 97-2003 or .docx."
            )
        self.flags: int = struct.unpack_from("<H", word, 0x0A)[0]
        if self.flags & _F_ENCRYPTED:
            raise PermanentError(
                "The .doc file is encrypted (password-protected); its text cannot be read."
            )
        # FibBase (32 bytes), then three arrays, each after its length.
        offset = 32
        (csw,) = struct.unpack_from("<H", word, offset)
        offset += 2 + 2 * csw
        (cslw,) = struct.unpack_from("<H", word, offset)
        lw = offset + 2
        offset = lw + 4 * cslw
        (cb_rg_fc_lcb,) = struct.unpack_from("<H", word, offset)
        fc_lcb = offset + 2
        if cslw <= _CCP_TEXT or cb_rg_fc_lcb <= _CLX:
            raise PermanentError("The .doc file's FIB is too short to locate the text.")
        self.ccp_text: int = struct.unpack_from("<i", word, lw + 4 * _CCP_TEXT)[0]
        self.fc_clx, self.lcb_clx = struct.unpack_from("<II", word, fc_lcb + 8 * _CLX)


def _main_text(word: bytes, table: bytes, fib: _Fib) -> str:
    """The first ccpText characters, piece by piece."""
    if fib.ccp_text < 0 or fib.ccp_text > len(word):
        raise PermanentError("The .doc file's FIB declares more text than the file holds.")
    if fib.lcb_clx == 0 or fib.fc_clx + fib.lcb_clx > len(table):
        raise PermanentError("The .doc file's piece table lies outside its table stream.")
    clx = table[fib.fc_clx : fib.fc_clx + fib.lcb_clx]
    offset = 0
    while offset < len(clx) and clx[offset] == _CLXT_PRC:  # property modifiers: skipped
        (size,) = struct.unpack_from("<h", clx, offset + 1)
        offset += 3 + max(size, 0)
    if offset >= len(clx) or clx[offset] != _CLXT_PCDT:
        raise PermanentError("The .doc file's piece table is malformed.")
    (lcb,) = struct.unpack_from("<I", clx, offset + 1)
    plc = clx[offset + 5 : offset + 5 + lcb]
    count = (len(plc) - 4) // (4 + _PCD_BYTES)
    if count < 1 or len(plc) != 4 + count * (4 + _PCD_BYTES):
        raise PermanentError("The .doc file's piece table is malformed.")
    cps = struct.unpack_from(f"<{count + 1}I", plc, 0)
    parts: list[str] = []
    wanted = fib.ccp_text
    for index in range(count):
        if wanted <= 0:
            break
        start, end = cps[index], cps[index + 1]
        if end < start:
            raise PermanentError("The .doc file's piece table is malformed.")
        length = min(end - start, wanted)
        (fc,) = struct.unpack_from("<I", plc, 4 * (count + 1) + _PCD_BYTES * index + 2)
        # Lengths count cp1252 bytes or UTF-16 code units, not characters:
        # a character outside the BMP (an emoji) is two units, one character.
        if fc & _FC_COMPRESSED:
            at = (fc & _FC_MASK) // 2
            data = word[at : at + length]
            text = data.decode("latin-1").translate(_COMPRESSED)
        else:
            at = fc & _FC_MASK
            data = word[at : at + 2 * length]
            text = data.decode("utf-16-le", "replace")
        if len(data) != (length if fc & _FC_COMPRESSED else 2 * length):
            raise PermanentError("The .doc file's text runs past the end of its stream.")
        parts.append(text)
        wanted -= length
    return "".join(parts)


def _paragraphs(text: str) -> list[str]:
    """Word's characters to plain paragraphs: a field's code is dropped and
    its result kept; anchors of pictures and drawings, footnote marks and
    other control characters are dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    # One entry per open field: True once its result (after the separator)
    # is being read. Text shows only when every open field is in its result.
    fields: list[bool] = []
    for char in text:
        if char == _FIELD_BEGIN:
            fields.append(False)
        elif char == _FIELD_SEPARATOR:
            if fields:
                fields[-1] = True
        elif char == _FIELD_END:
            if fields:
                fields.pop()
        elif not all(fields):
            continue  # inside a field's code
        elif char in (_PARAGRAPH_END, _SECTION_END):
            paragraphs.append("".join(current))
            current = []
        elif char == _CELL_END:
            # A cell's end, or a row's (which follows its last cell's):
            # nothing is kept for an empty cell or the row mark.
            if current:
                paragraphs.append("".join(current))
                current = []
        elif char in _CHARACTERS:
            current.append(_CHARACTERS[char])
        elif char >= " " and not "\x7f" <= char <= "\x9f":  # no C0 or C1 controls
            current.append(char)
    if current:  # a valid document ends with a paragraph mark
        paragraphs.append("".join(current))
    return paragraphs
