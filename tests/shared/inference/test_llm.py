"""The `llm` model and LLM-based NER end to end against a local server
speaking each provider's protocol."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from shared.inference.base import (
    ItemInput,
    PermanentError,
    PostProcessorConfig,
    Prediction,
    TransientError,
)
from shared.inference.llm import LlmModel, fill_prompt
from shared.inference.llm_ner import FORMAT_INSTRUCTION, LlmNer, locate_entities
from shared.inference.registry import load_registry
from tests.shared.inference.fake_llm_server import (
    BASE_PATHS,
    FakeProvider,
    Reply,
    anthropic_answer,
    openai_answer,
)

ANSWERS = {"openai": openai_answer, "anthropic": anthropic_answer}
TEXT = "Ada Lovelace met Charles Babbage in London. Later, Ada wrote to Babbage."


def item(**fields: Any) -> ItemInput:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "note.txt",
        "description": "a note",
        "text": TEXT,
        "extension": "txt",
        "media_type": "text/plain",
    }
    return ItemInput(**(values | fields))


def config(
    fake: FakeProvider | None, protocol: str = "openai", **fields: Any
) -> PostProcessorConfig:
    external = {"base_url": fake.url + BASE_PATHS[protocol]} if fake else {}
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "p",
        "model_type": "llm",
        "external_provider": protocol,
        "external_model": "test-model",
        "external_config": json.dumps(external),
    }
    return PostProcessorConfig(**(values | fields))


def user_text(protocol: str, body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_the_prompt_is_filled_and_the_answer_becomes_the_text(protocol: str) -> None:
    prompt = 'File {name} ({extension}), {description}: {text} {unknown} {"keep": [1]} {0}'
    with FakeProvider(Reply(body=ANSWERS[protocol]("A short summary."))) as fake:
        output = LlmModel().run(item(), None, config(fake, protocol, prompt=prompt))
    assert user_text(protocol, fake.last.body) == (
        f'File note.txt (txt), a note: {TEXT} {{unknown}} {{"keep": [1]}} {{0}}'
    )
    assert output.text == "A short summary."
    assert output.predictions == []
    assert output.raw["provider"] == protocol
    assert output.raw["answer"] == "A short summary."
    assert output.raw["model"] in ("gpt-test-2024", "claude-test")
    assert output.raw["usage"]


def test_placeholders_inside_the_items_own_text_are_not_filled_again() -> None:
    filled = fill_prompt("{text} / {labels}", item(text="{name}", label_names=("A", "B")))
    assert filled == "{name} / A, B"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_an_image_item_sends_its_picture(protocol: str, tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    Image.new("RGB", (4, 4), "red").save(picture)
    image_item = item(name="cat.png", extension="png", media_type="image/png", text="")
    with FakeProvider(Reply(body=ANSWERS[protocol]("A red square."))) as fake:
        output = LlmModel().run(image_item, picture, config(fake, protocol, prompt="Describe."))
    content = fake.last.body["messages"][-1]["content"]
    data = base64.b64encode(picture.read_bytes()).decode()
    if protocol == "openai":
        assert {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{data}"},
        } in content
    else:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        assert {"type": "image", "source": source} in content
    assert output.text == "A red square."


def test_an_image_kind_the_providers_refuse_is_sent_as_jpeg(tmp_path: Path) -> None:
    picture = tmp_path / "scan.bmp"
    Image.new("RGB", (8, 8), "blue").save(picture)
    bmp_item = item(name="scan.bmp", extension="bmp", media_type="image/bmp")
    with FakeProvider(Reply(body=openai_answer("Blue."))) as fake:
        LlmModel().run(bmp_item, picture, config(fake, prompt="Describe."))
    url = fake.last.body["messages"][-1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG"
    assert sent.size == (8, 8)


def test_the_llm_model_needs_a_provider_and_a_prompt() -> None:
    with pytest.raises(PermanentError, match="needs external_provider"):
        LlmModel().run(item(), None, config(None, external_provider=None, prompt="Hi"))
    with FakeProvider(Reply(body=openai_answer("x"))) as fake:
        with pytest.raises(PermanentError, match="needs a prompt"):
            LlmModel().run(item(), None, config(fake, prompt=" "))
        assert fake.requests == []


def test_a_provider_error_reaches_the_job_with_its_message() -> None:
    error = {"error": {"message": "This model does not support images"}}
    with (
        FakeProvider(Reply(400, error)) as fake,
        pytest.raises(PermanentError, match="This model does not support images"),
    ):
        LlmModel().run(item(), None, config(fake, prompt="{text}"))


def test_an_empty_answer_is_transient_unless_max_tokens_cut_it() -> None:
    with FakeProvider(Reply(body=openai_answer(""))) as fake:
        with pytest.raises(TransientError, match="empty answer"):
            LlmModel().run(item(), None, config(fake, prompt="{text}"))
        fake.default = Reply(body=openai_answer("", finish_reason="length"))
        with pytest.raises(PermanentError, match="raise max_tokens"):
            LlmModel().run(item(), None, config(fake, prompt="{text}"))


# --- LLM-based NER ----------------------------------------------------------

NER_ANSWER = """Here are the entities:
```json
[
  {"label": "person", "text": "Ada Lovelace", "start": 0, "end": 12},
  {"label": "PERSON", "text": "Charles Babbage", "start": 15, "end": 30},
  {"label": "PLACE", "text": "london", "start": 99, "end": 105},
  {"label": "PERSON", "text": "Babbage"},
  {"label": "PERSON", "text": "Ada Lovelace", "start": 0, "end": 12},
  {"label": "PERSON", "text": "Grace Hopper", "start": 50, "end": 62},
  {"text": "nobody"}
]
```"""


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_llm_ner_turns_the_answer_into_verified_spans(protocol: str) -> None:
    ner_item = item(label_names=("PERSON", "PLACE"))
    with FakeProvider(Reply(body=ANSWERS[protocol](NER_ANSWER))) as fake:
        ner_config = config(fake, protocol, model_type="ner", model_id="llm")
        output = LlmNer().run(ner_item, None, ner_config)
    body = fake.last.body
    system = body["messages"][0]["content"] if protocol == "openai" else body["system"]
    assert system == FORMAT_INSTRUCTION
    prompt = user_text(protocol, body)
    assert "use these labels exactly: PERSON, PLACE" in prompt
    assert prompt.endswith(TEXT)
    assert output.text is None
    assert output.predictions == [
        Prediction("PERSON", 1.0, {"start": 0, "end": 12}),  # label case from the version
        Prediction("PERSON", 1.0, {"start": 17, "end": 32}),  # offsets moved onto the text
        Prediction("PLACE", 1.0, {"start": 36, "end": 42}),  # case differs
        Prediction("PERSON", 1.0, {"start": 64, "end": 71}),  # not the one inside the 2nd
    ]
    assert [entity["text"] for entity in output.raw["entities"]] == [
        "Ada Lovelace",
        "Charles Babbage",
        "London",
        "Babbage",
    ]
    assert [entity["reason"] for entity in output.raw["dropped"]] == [
        "text not found in the item",
        "no label",
    ]


def test_llm_ner_appends_the_text_to_a_prompt_that_does_not_name_it() -> None:
    with FakeProvider(Reply(body=openai_answer('{"entities": []}'))) as fake:
        ner_config = config(fake, model_type="ner", model_id="llm", prompt="Find ships.")
        output = LlmNer().run(item(), None, ner_config)
    assert user_text("openai", fake.last.body) == f"Find ships.\n\nText:\n{TEXT}"
    assert output.predictions == []


def test_llm_ner_skips_the_call_for_an_item_without_text() -> None:
    with FakeProvider(Reply(body=openai_answer("[]"))) as fake:
        output = LlmNer().run(item(text="  "), None, config(fake, model_type="ner", model_id="llm"))
    assert fake.requests == []
    assert output.predictions == []


def test_llm_ner_without_a_json_array_is_transient_and_cut_off_is_permanent() -> None:
    ner = {"model_type": "ner", "model_id": "llm"}
    with FakeProvider(Reply(body=openai_answer("I found Ada and Babbage."))) as fake:
        with pytest.raises(TransientError, match="no JSON array of entities: 'I found Ada"):
            LlmNer().run(item(), None, config(fake, **ner))
        fake.default = Reply(body=openai_answer('[{"label": "PERSON", "te', "length"))
        with pytest.raises(PermanentError, match="cut off by max_tokens"):
            LlmNer().run(item(), None, config(fake, **ner))


def test_spans_match_across_changed_whitespace() -> None:
    spans, dropped = locate_entities(
        [{"label": "ORG", "text": "Analytical  Engine"}], "the Analytical\nEngine works", ()
    )
    assert spans == [{"label": "ORG", "text": "Analytical\nEngine", "start": 4, "end": 21}]
    assert dropped == []


def test_the_registry_serves_both_models_by_type_and_id() -> None:
    registry = load_registry("shared.inference.llm:LlmModel,shared.inference.llm_ner:LlmNer")
    assert registry.model_class("llm") is LlmModel
    assert registry.model_class("ner", "llm") is LlmNer
    assert LlmModel.kind == LlmNer.kind == "external"
