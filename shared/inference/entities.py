"""Named entities found by rules (`model_type` ner, the default model): the
common kinds by pattern (EMAIL, URL, PHONE, DATE, MONEY) and the names of the
version's labels as a gazetteer.

Spans are Python string indices into the item's text (end exclusive). When
the item has no text but its file is plain text, they index the file's text
as decoded here (UTF-8, invalid bytes each replaced by one U+FFFD); the job's
result says which under `source`.

Every pattern is anchored by a look-behind that stops a match starting in the
middle of a run of the characters it repeats, so that a long run of them (a
10 MB line of digits) is scanned once rather than once per character.
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
)
from shared.inference.files.text import item_text

# A text file is read up to this many bytes; entities past it are not found.

SPACE = r"[ \t\u00a0]"
MONTH = (
    r"(?i:january|february|march|april|may|june|july|august|september|october|november|"
    r"december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
)
ORDINAL = r"(?:st|nd|rd|th)?"
AMOUNT = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)"
CURRENCY_SYMBOL = r"[$€£¥₹]"
CURRENCY_CODE = r"(?:USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|CNY|INR|SEK|NOK|DKK|PLN|CZK)"
# Characters a URL may end with in running text but rarely does.
URL_TRAILING = ".,;:!?'\"*"
CLOSING = {")": "(", "]": "[", "}": "{"}

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
URL = re.compile(r"(?<![\w@/.:-])(https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,5}"  # +44 20 7946 0958, +1 (555) 123-4567
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r"|0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4}"  # 020 7946 0958 (a national trunk prefix)
    r")(?![\w-])"
)
ISO_DATE = re.compile(
    r"(?<![\w.-])(\d{4})-(\d{2})-(\d{2})"
    r"(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w-])"
)
NUMERIC_DATE = re.compile(r"(?<![\w./-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?![\w/-]|\.\d)")
DAY_MONTH_YEAR = re.compile(
    rf"(?<!\w)(\d{{1,2}}){ORDINAL}{SPACE}+({MONTH})\.?,?{SPACE}+(\d{{4}})(?!\w)"
)
MONTH_DAY_YEAR = re.compile(
    rf"(?<!\w)({MONTH})\.?{SPACE}+(\d{{1,2}}){ORDINAL},?{SPACE}+(\d{{4}})(?!\w)"
)
MONEY = re.compile(
    rf"(?<![\w$€£¥₹]){CURRENCY_SYMBOL}{SPACE}?{AMOUNT}"  # $12.50, € 99
    rf"|(?<![\w.,]){AMOUNT}{SPACE}?(?:{CURRENCY_SYMBOL}|{CURRENCY_CODE}(?!\w))"  # 99 EUR, 99€
    rf"|(?<!\w){CURRENCY_CODE}{SPACE}?{AMOUNT}"  # USD 1,234.56
)

MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}

Span = tuple[int, int, str]  # start, end, label


class RuleBasedNer(PostProcessorModel):
    model_type = "ner"
    name = "itemflow-rules"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        text, source = item_text(item, file)
        spans = find_entities(text, item.label_names)
        return ModelOutput(
            raw={
                "model": self.name,
                "source": source,
                "entities": [
                    {"label": label, "text": text[start:end], "start": start, "end": end}
                    for start, end, label in spans
                ],
            },
            # The spans index the text they were found in. Read from the file,
            # that text goes to the item too (with output_target text or
            # both), so that item text and spans agree.
            text=text if source == "file" else None,
            predictions=[
                Prediction(label, 1.0, {"start": start, "end": end}) for start, end, label in spans
            ],
        )


def find_entities(text: str, label_names: tuple[str, ...] = ()) -> list[Span]:
    """The entities of `text` in order, none overlapping another. Where
    candidates overlap the longer wins, then the earlier kind in
    `_candidates` (the patterns before the gazetteer), then the earlier
    start: the rule spaCy's filter_spans follows."""
    candidates = sorted(
        set(_candidates(text, label_names)),
        key=lambda ranked: (ranked[1][0] - ranked[1][1], ranked[0], ranked[1][0]),
    )
    kept: list[Span] = []  # in order of start, none overlapping another
    for _rank, span in candidates:
        index = bisect.bisect_left(kept, span)
        before_ends = index > 0 and kept[index - 1][1] > span[0]
        after_starts = index < len(kept) and kept[index][0] < span[1]
        if not (before_ends or after_starts):
            kept.insert(index, span)
    return kept


def _candidates(text: str, label_names: tuple[str, ...]) -> Iterator[tuple[int, Span]]:
    recognizers: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]]] = [
        ("EMAIL", EMAIL, _always),
        ("URL", URL, _always),
        ("DATE", ISO_DATE, lambda m: _is_date(m[1], m[2], m[3])),
        ("DATE", NUMERIC_DATE, lambda m: _is_date(m[4], m[3], m[1]) or _is_date(m[4], m[1], m[3])),
        ("DATE", DAY_MONTH_YEAR, lambda m: _is_date(m[3], _month(m[2]), m[1])),
        ("DATE", MONTH_DAY_YEAR, lambda m: _is_date(m[3], _month(m[1]), m[2])),
        ("MONEY", MONEY, _always),
        ("PHONE", PHONE, lambda m: 7 <= sum(c.isdigit() for c in m[0]) <= 15),
    ]
    for rank, (label, pattern, valid) in enumerate(recognizers):
        for match in pattern.finditer(text):
            if valid(match):
                start, end = match.span()
                if label == "URL":
                    end = _trim_url(text, start, end)
                    if end <= start + len(match[1]):
                        continue  # nothing left after "https://" or "www."
                yield rank, (start, end, label)
    yield from ((len(recognizers), span) for span in _gazetteer(text, label_names))


def _gazetteer(text: str, label_names: tuple[str, ...]) -> Iterator[Span]:
    """Whole-word, case-insensitive occurrences of each label name; the span
    is labelled with the name as the version spells it. Any run of
    whitespace matches the spaces inside a name."""
    seen: set[str] = set()
    for name in label_names:
        words = name.split()
        if not words or name.casefold() in seen:
            continue
        seen.add(name.casefold())
        body = r"\s+".join(re.escape(word) for word in words)
        for match in re.finditer(rf"(?<!\w){body}(?!\w)", text, re.IGNORECASE):
            yield match.start(), match.end(), name


def _always(match: re.Match[str]) -> bool:
    return True


def _month(name: str) -> int:
    # 0 (no date) for what matched a month name only under Unicode case
    # folding, like "ſept" with a long s.
    return MONTHS.get(name.lower(), 0)


def _is_date(year: str | int, month: str | int, day: str | int) -> bool:
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def _trim_url(text: str, start: int, end: int) -> int:
    """Leave out punctuation that ends the sentence rather than the URL, and
    a closing bracket the URL did not open ("(see https://x.org/a)")."""
    unopened = {
        closing: text.count(closing, start, end) - text.count(opening, start, end)
        for closing, opening in CLOSING.items()
    }
    while end > start:
        last = text[end - 1]
        if last in URL_TRAILING:
            end -= 1
        elif unopened.get(last, 0) > 0:
            unopened[last] -= 1
            end -= 1
        else:
            break
    return end
