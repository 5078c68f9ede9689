"""Zero-shot text classification (`model_type` classification, the default
model): a text item is scored against the names of its version's labels by
the cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

Each label is embedded as "This is about {label}." rather than its bare name:
on 50 hand-written texts in two label sets the templates all gave the same
accuracy, but this one separated the right label from the runner-up by the
widest margin and had the lowest log-loss. Similarities become scores with
a softmax at temperature 0.03, the temperature of lowest log-loss on those
texts, so that `confidence_threshold` compares something like a probability.
A softmax always picks a label, even for a text that fits none; `similarities`
in the raw result keeps the cosines, which are lower then, though not by a
margin to rely on (at most 0.15 for a few off-topic texts tried, at least 0.16
for the best label of the 30 texts that fit).

The text is the item's text, or its file's when it has none and is plain
text. Only its first 256 tokens are read: the length the model was trained
on (sentence-transformers' max_seq_length for it).

The label is not returned as the item's text: with output_target "text" that
would replace the text just classified by a label name. It is in the raw
result, and in the predictions for the "annotations" target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
)
from shared.inference.files.text import item_text
from shared.inference.minilm import Array, MiniLmEncoder

LABEL_TEMPLATE = "This is about {label}."
TEMPERATURE = 0.03
# Far more characters than 256 tokens of any ordinary text take; cut before
# tokenising so that a 10 MB text file is not tokenised whole to keep 256.
MAX_TEXT_CHARACTERS = 50_000


class ZeroShotClassifier(PostProcessorModel):
    model_type = "classification"
    name = "all-MiniLM-L6-v2 (zero-shot)"

    def __init__(self) -> None:
        self.encoder = MiniLmEncoder()

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        text, source = item_text(item, file)
        if not text.strip():
            raise PermanentError(
                f"The item has no text to classify (media type {item.media_type or 'unknown'}). "
                "Zero-shot classification reads the item's text or a plain-text file; "
                "image classification needs a registered ONNX model named in the "
                "post-processor's model_id."
            )
        labels = list(dict.fromkeys(name for name in item.label_names if name.strip()))
        if not labels:
            raise PermanentError(
                "Zero-shot classification scores an item against its version's label names, "
                "and this version has none: add labels to the version."
            )

        similarities = self.similarities(text, labels)
        scores = _softmax(similarities / TEMPERATURE)
        ranked = sorted(zip(labels, scores.tolist(), strict=True), key=lambda pair: -pair[1])
        best = ranked[0][0]
        return ModelOutput(
            raw={
                "model": self.name,
                "source": source,
                "label": best,
                "scores": dict(ranked),
                "similarities": dict(zip(labels, similarities.tolist(), strict=True)),
            },
            text=None,
            predictions=[Prediction(label, score) for label, score in ranked],
        )

    def similarities(self, text: str, labels: list[str]) -> Array:
        """Cosine similarity of the text to each label's description."""
        [text_vector] = self.encoder.embed([text[:MAX_TEXT_CHARACTERS]])
        label_vectors = self.encoder.embed([LABEL_TEMPLATE.format(label=name) for name in labels])
        # Both are unit length, so the dot product is the cosine.
        cosines: Array = label_vectors @ text_vector
        return cosines


def _softmax(x: Array) -> Array:
    exp = np.exp(x - x.max())
    result: Array = exp / exp.sum()
    return result
