import time
import uuid

import pytest

from shared.inference.base import PostProcessorConfig
from shared.inference.entities import RuleBasedNer, find_entities
from shared.inference.files import text as text_input
from tests.shared.factories import item_input

CONFIG = PostProcessorConfig(id=uuid.uuid4(), name="entities", model_type="ner")

PARAGRAPH = (
    "Hi team, the invoice for Acme Corp is attached. Questions go to "
    "billing@acme-corp.com or https://acme-corp.com/billing?ref=42 (see "
    "www.example.org/help). Call +1 (555) 123-4567 before 2026-11-27: the total is "
    "$12.50 plus €99, or 1,234.56 USD in all, due 27 November 2026."
)


def text_item(text="", label_names=(), media_type="text/plain"):
    return item_input(
        name="note", text=text, extension="txt", media_type=media_type, label_names=label_names
    )


def found(text, label_names=()):
    return [(label, text[start:end]) for start, end, label in find_entities(text, label_names)]


def test_finds_each_kind_as_an_exact_character_span():
    output = RuleBasedNer().run(text_item(PARAGRAPH, ("Acme Corp",)), None, CONFIG)

    assert [(e["label"], e["text"]) for e in output.raw["entities"]] == [
        ("Acme Corp", "Acme Corp"),
        ("EMAIL", "billing@acme-corp.com"),
        ("URL", "https://acme-corp.com/billing?ref=42"),
        ("URL", "www.example.org/help"),
        ("PHONE", "+1 (555) 123-4567"),
        ("DATE", "2026-11-27"),
        ("MONEY", "$12.50"),
        ("MONEY", "€99"),
        ("MONEY", "1,234.56 USD"),
        ("DATE", "27 November 2026"),
    ]
    for entity, prediction in zip(output.raw["entities"], output.predictions, strict=True):
        assert PARAGRAPH[entity["start"] : entity["end"]] == entity["text"]
        assert prediction.label == entity["label"]
        assert prediction.coordinates == {"start": entity["start"], "end": entity["end"]}
        assert prediction.score == 1.0
    assert output.raw["model"] == "itemflow-rules"
    assert output.raw["source"] == "text"
    # The spans index the item's text, which NER leaves as it is.
    assert output.text is None


@pytest.mark.parametrize(
    "date",
    [
        "2026-11-27",
        "2026-11-26T23:58:47Z",
        "27/11/2026",
        "11/27/2026",
        "27.11.2026",
        "27 November 2026",
        "27th Nov 2026",
        "Nov 27, 2026",
        "November 27 2026",
        "Sept. 3, 2026",
    ],
)
def test_dates_in_common_formats(date):
    assert found(f"Due on {date}.") == [("DATE", date)]


@pytest.mark.parametrize("text", ["2026-13-45", "31/31/2026", "30 February 2026", "Nov 31, 2026"])
def test_impossible_dates_are_not_dates(text):
    assert [label for label, _ in found(text)] == []


@pytest.mark.parametrize(
    ("text", "money"),
    [
        ("It costs $12.50.", "$12.50"),
        ("It costs €99 now", "€99"),
        ("It costs 99 EUR now", "99 EUR"),
        ("It costs 1,234.56 USD", "1,234.56 USD"),
        ("It costs USD 1,234.56", "USD 1,234.56"),
        ("It costs 45 € now", "45 €"),
    ],
)
def test_amounts_of_money(text, money):
    assert found(text) == [("MONEY", money)]


@pytest.mark.parametrize(
    "phone", ["+1 (555) 123-4567", "+44 20 7946 0958", "555-123-4567", "(555) 123-4567"]
)
def test_phone_numbers(phone):
    assert found(f"Ring {phone} today") == [("PHONE", phone)]


def test_plain_numbers_are_not_phone_numbers_or_money():
    assert found("Order 12345678 has 4711 parts and weighs 12.5 kg.") == []


def test_a_url_leaves_out_the_punctuation_around_it():
    text = "Read it (https://en.wikipedia.org/wiki/Foo_(bar)), then https://x.org/a."

    assert found(text) == [
        ("URL", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("URL", "https://x.org/a"),
    ]


def test_label_names_are_found_as_whole_words_in_any_case():
    text = "ACME shipped to Acmeville, then acme paid; New\nYork and C++ too."

    assert found(text, ("Acme", "New York", "C++", "acme")) == [
        ("Acme", "ACME"),
        ("Acme", "acme"),
        ("New York", "New\nYork"),
        ("C++", "C++"),
    ]


def test_overlapping_candidates_keep_the_longer_span_once():
    text = "Write to sales@acme.com, visit https://acme.com/?to=a@b.com or Acme Corp HQ."

    assert found(text, ("acme", "Acme Corp", "Corp HQ")) == [
        ("EMAIL", "sales@acme.com"),
        ("URL", "https://acme.com/?to=a@b.com"),
        ("Acme Corp", "Acme Corp"),
    ]


def test_empty_text_has_no_entities():
    output = RuleBasedNer().run(text_item("", ("Acme",)), None, CONFIG)

    assert output.predictions == []
    assert output.raw["entities"] == []


def test_a_text_file_is_read_when_the_item_has_no_text(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("Café bill: mail ana@example.com", encoding="utf-8")

    output = RuleBasedNer().run(text_item(), path, CONFIG)

    assert output.raw["source"] == "file"
    assert [(e["label"], e["text"], e["start"]) for e in output.raw["entities"]] == [
        ("EMAIL", "ana@example.com", 16)
    ]
    # The text the spans index goes to the item with them.
    assert output.text[16:31] == "ana@example.com"


def test_the_items_text_wins_over_its_file(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("mail ana@example.com")

    output = RuleBasedNer().run(text_item("no entities here"), path, CONFIG)

    assert output.raw["source"] == "text"
    assert output.predictions == []


def test_a_file_that_is_not_text_is_not_read(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG mail ana@example.com")

    assert RuleBasedNer().run(text_item(media_type="image/png"), path, CONFIG).predictions == []


def test_a_text_file_is_read_up_to_the_cap_without_a_broken_character(tmp_path, monkeypatch):
    path = tmp_path / "long.txt"
    path.write_text("abcé" + "x" * 100, encoding="utf-8")
    monkeypatch.setattr(text_input, "MAX_FILE_BYTES", 4)  # cuts "é" in two

    assert text_input.read_text_file(path) == "abc"


def test_long_runs_of_pattern_characters_take_linear_time():
    # Each would take minutes if a pattern could restart inside the run.
    size = 100_000
    runs = ["1" * size, "a" * size, "a@" * size, "+1 " * size, "1-" * size, "(" * size]
    started = time.monotonic()
    for run in runs:
        find_entities(run + " http://x" + ")" * size, ("a",))
    assert time.monotonic() - started < 10
