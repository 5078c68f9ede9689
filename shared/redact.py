"""Text from outside (a provider's answer, an unexpected error) cut down
for a job's error and the logs: short, printable, and without credentials.
"""

from __future__ import annotations

import re
import unicodedata

# What looks like a credential wherever it appears: a bearer or basic
# token, or a key in the shape OpenAI and Anthropic give theirs (providers
# echo a key, masked or not, in their "invalid key" messages).
CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+\S+|\b(sk|pk|rk)-[\w*.-]{6,}")
# Masks a provider puts in the middle of a key it echoes: "abcd****wxyz".
MASK = re.compile(r"\*{2,}|…|\.{3,}")
# Any run of the text this long that also stands in the key is part of the
# key: a provider may echo a key's first and last characters.
KEY_PART = 6
EXCERPT = 200
REDACTED = "[redacted]"


def sanitise(text: str, key: str | None = None, limit: int = EXCERPT) -> str:
    """At most `limit` characters of `text`, without `key` in whole or in
    part, anything shaped like a credential, or control and invisible
    characters."""
    # Cut first, so that the work below is bounded; generously, so that a
    # key cut in two at the end is still caught by its parts.
    text = text[: limit * 4 + 2 * len(key or "")]
    # Invisible characters go entirely, so that "AB\\u200bCD" reads as "ABCD".
    text = "".join(
        " " if unicodedata.category(c) == "Cc" else c
        for c in text
        if unicodedata.category(c) != "Cf"
    )
    text = CREDENTIAL.sub(REDACTED, text)
    if key:
        text = _without_key_parts(text, key)
        text = re.sub(r"\S*(\*{2,}|…|\.{3,})\S*", lambda word: _masked(word.group(), key), text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _without_key_parts(text: str, key: str) -> str:
    """The text with every run of KEY_PART or more characters that also
    stands in the key replaced: a window slides along the text, and each
    window found in the key marks its characters."""
    if len(key) < KEY_PART:
        return text.replace(key, REDACTED)
    windows = {key[i : i + KEY_PART] for i in range(len(key) - KEY_PART + 1)}
    marked = [False] * len(text)
    for start in range(len(text) - KEY_PART + 1):
        if text[start : start + KEY_PART] in windows:
            marked[start : start + KEY_PART] = [True] * KEY_PART
    pieces: list[str] = []
    for index, character in enumerate(text):
        if not marked[index]:
            pieces.append(character)
        elif index == 0 or not marked[index - 1]:
            pieces.append(REDACTED)
    return "".join(pieces)


def _masked(word: str, key: str) -> str:
    """A masked echo of the key ("abcd****wxyz") is redacted whole when a
    piece of four characters or more on either side of its mask is the
    key's."""
    pieces = [piece.strip("'\"()[]{},;:") for piece in MASK.split(word)]
    return REDACTED if any(len(piece) >= 4 and piece in key for piece in pieces) else word
