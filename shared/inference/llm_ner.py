"""Named entities found by an external LLM (`model_type` ner, `model_id`
llm): the model is asked for a JSON array of {label, text, start, end} and
each entity becomes a character span of the item's text.

Models count characters badly, so the offsets they give are only a hint:
a span is kept when the text at those offsets is the entity's text, and
otherwise moved to the occurrence of that text nearest the hint (case and
runs of whitespace may differ). An entity whose text is not in the item at
all is dropped and listed under `dropped` in the job's result.

An answer without a JSON array is a TransientError: models answer
differently from one try to the next, and the retries are capped by the
job's max_attempts. An answer cut off by max_tokens is a PermanentError,
since the next try would be cut off the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
    TransientError,
)
from shared.inference.files.text import item_text
from shared.inference.llm import fill_prompt, raw_output
from shared.inference.providers import Completion, Provider, connect

FORMAT_INSTRUCTION = (
    "You find named entities in a text. Answer with only a JSON array and no other words. "
    'Each element is an object {"label": ..., "text": ..., "start": ..., "end": ...}: '
    "the entity's label, the entity exactly as written in the text, and its character "
    "offsets in the text (start counted from 0, end exclusive). "
    "Answer [] when there are none."
)
WITH_LABELS = "Find the entities of these kinds, and use these labels exactly: {labels}."
WITHOUT_LABELS = (
    "Find the people, organisations, places, dates, amounts and other named entities, "
    "labelled in capitals (PERSON, ORGANIZATION, LOCATION, DATE, MONEY, ...)."
)
# A list under one of these keys also counts, for models that wrap it.
WRAPPER_KEYS = ("entities", "result", "results", "data")


class LlmNer(PostProcessorModel):
    model_type = "ner"
    model_id = "llm"
    name = "external-llm-ner"
    kind = "external"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        provider = connect(config)
        text, source = item_text(item, file)
        if not text.strip():
            return ModelOutput(
                raw={"provider": provider.name, "model": provider.model, "entities": []}
            )
        completion = provider.complete(
            _prompt(config.prompt, item, text), system=FORMAT_INSTRUCTION
        )
        found = _json_array(completion.text)
        if found is None:
            raise _malformed(provider, completion)
        spans, dropped = locate_entities(found, text, item.label_names)
        return ModelOutput(
            raw=raw_output(provider, completion, entities=spans, dropped=dropped, source=source),
            # Spans found in the file's text bring that text to the item.
            text=text if source == "file" else None,
            predictions=[
                Prediction(span["label"], 1.0, {"start": span["start"], "end": span["end"]})
                for span in spans
            ],
        )


def _prompt(template: str, item: ItemInput, text: str) -> str:
    if not template.strip():
        template = WITH_LABELS if item.label_names else WITHOUT_LABELS
    # The model can only find entities in a text it is shown.
    if "{text}" not in template:
        template += "\n\nText:\n{text}"
    return fill_prompt(template, item, text)


def _json_array(answer: str) -> list[Any] | None:
    """The first JSON array in the answer, wherever it is: models wrap it
    in prose or code fences however often they are told not to."""
    decoder = json.JSONDecoder()
    for opening in re.finditer(r"[\[{]", answer):
        try:
            value, _end = decoder.raw_decode(answer, opening.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            for key in WRAPPER_KEYS:
                if isinstance(value.get(key), list):
                    return list(value[key])
    return None


def _malformed(provider: Provider, completion: Completion) -> PermanentError | TransientError:
    shown = provider.excerpt(completion.text)
    if completion.stop_reason in ("length", "max_tokens"):
        return PermanentError(
            f"{provider.where}: the entity list was cut off by max_tokens; raise it in "
            f"external_config. The answer began: {shown!r}"
        )
    return TransientError(
        f"{provider.where}: the answer holds no JSON array of entities: {shown!r}"
    )


def locate_entities(
    found: list[Any], text: str, label_names: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entities as verified spans of `text`, and those dropped with why."""
    canonical = {name.casefold(): name for name in label_names}
    spans: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    taken: set[tuple[str, int, int]] = set()
    for entity in found:
        if not isinstance(entity, dict):
            dropped.append({"entity": entity, "reason": "not an object"})
            continue
        label = entity.get("label") or entity.get("type")
        entity_text = entity.get("text")
        if not isinstance(label, str) or not label.strip():
            dropped.append({"entity": entity, "reason": "no label"})
            continue
        if not isinstance(entity_text, str) or not entity_text.strip():
            dropped.append({"entity": entity, "reason": "no text"})
            continue
        label = canonical.get(label.strip().casefold(), label.strip())
        span = _span(text, entity_text, entity.get("start"), entity.get("end"), label, taken)
        if span is None:
            dropped.append({"entity": entity, "reason": "text not found in the item"})
            continue
        if (label, *span) in taken:
            continue  # the same entity listed twice
        taken.add((label, *span))
        start, end = span
        spans.append({"label": label, "text": text[start:end], "start": start, "end": end})
    return spans, dropped


def _span(
    text: str, entity: str, start: Any, end: Any, label: str, taken: set[tuple[str, int, int]]
) -> tuple[int, int] | None:
    if _is_offset(start) and _is_offset(end) and text[start:end] == entity:
        return start, end
    pattern = r"\s+".join(re.escape(word) for word in entity.split())
    candidates = [m.span() for m in re.finditer(pattern, text)] or [
        m.span() for m in re.finditer(pattern, text, re.IGNORECASE)
    ]
    if not candidates:
        return None
    hint = start if _is_offset(start) else 0
    candidates.sort(key=lambda span: abs(span[0] - hint))
    # A name listed again without good offsets is most likely another
    # mention: prefer an occurrence outside the spans already found for
    # this label ("Babbage" after "Charles Babbage").
    free = [
        (start, end)
        for start, end in candidates
        if not any(
            taken_label == label and start < taken_end and taken_start < end
            for taken_label, taken_start, taken_end in taken
        )
    ]
    return (free or candidates)[0]


def _is_offset(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
