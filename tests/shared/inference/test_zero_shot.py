import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.inference.base import PermanentError, PostProcessorConfig
from shared.inference.zero_shot import ZeroShotClassifier
from tests.shared.factories import item_input

CONFIG = PostProcessorConfig(id=uuid.uuid4(), name="topics", model_type="classification")
LABELS = ("sports", "cooking", "finance")

# Whole embeddings that sentence-transformers 6.2.0 (torch 2.13.0, CPU) made
# from the same model folder (tests/data/README.md says how). The long text
# is cut at 256 tokens, so they also check that truncation matches.
REFERENCE: dict[str, list[float]] = json.loads(
    (Path(__file__).parents[2] / "data" / "minilm_reference.json").read_text(encoding="utf-8")
)["embeddings"]

# 30 short texts, 10 per label; all 30 were classified right when written.
TEXTS = {
    "sports": [
        "The striker curled the ball into the top corner in stoppage time.",
        "She shaved two seconds off her personal best in the 400 metres.",
        "Our pitcher threw a no-hitter through seven innings last night.",
        "The referee showed him a second yellow card and he was sent off.",
        "After the third set the tennis match was delayed by rain.",
        "He finished the marathon in just under three hours.",
        "The home team's defence collapsed in the final quarter.",
        "Tickets for the championship final sold out within an hour.",
        "The coach benched two starters after they missed practice.",
        "She won gold on the balance beam at the national gymnastics meet.",
    ],
    "cooking": [
        "Simmer the onions slowly in butter until they turn golden.",
        "Knead the dough for ten minutes, then let it rise until doubled.",
        "Add a pinch of salt to the water before the pasta goes in.",
        "Sear the steak in a very hot cast-iron pan for two minutes a side.",
        "This risotto needs constant stirring and warm stock.",
        "Marinate the chicken overnight in yoghurt, garlic and cumin.",
        "Preheat the oven to 180 degrees and grease a round cake tin.",
        "Fold the egg whites gently into the chocolate so they keep their air.",
        "My grandmother's soup recipe uses lentils, carrots and a bay leaf.",
        "Chop the herbs finely and scatter them over the salad just before serving.",
    ],
    "finance": [
        "The central bank raised interest rates by a quarter of a point.",
        "Quarterly earnings beat analyst expectations and the shares rose 8%.",
        "Diversify your portfolio across bonds, equities and cash.",
        "The company issued new debt to refinance its existing loans.",
        "Inflation ate into household savings over the past year.",
        "Our mortgage payment went up when the fixed rate ended.",
        "The fund's expense ratio is lower than most index trackers.",
        "Investors fled to gold as the stock market tumbled.",
        "She moved her pension into a lower-risk annuity before retiring.",
        "The startup closed a Series B round at a higher valuation.",
    ],
}


@pytest.fixture(scope="module")
def classifier():
    return ZeroShotClassifier()


def item(text="", label_names=LABELS, media_type="text/plain"):
    return item_input(
        name="note", text=text, extension="txt", media_type=media_type, label_names=label_names
    )


def test_embeddings_match_sentence_transformers(classifier):
    embeddings = classifier.encoder.embed(list(REFERENCE))
    reference = np.array(list(REFERENCE.values()))

    assert embeddings.shape == reference.shape == (3, 384)
    cosines = (embeddings * reference).sum(axis=1) / (
        np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(embeddings, reference, atol=1e-5)


def test_embeddings_are_unit_length_and_independent_of_the_batch(classifier):
    texts = [*TEXTS["sports"][:3], "A", " ".join(TEXTS["finance"])]
    batched = classifier.encoder.embed(texts)
    one_by_one = np.vstack([classifier.encoder.embed([text]) for text in texts])

    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # Padding a short text to the longest in its batch must not change it.
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_classifies_the_30_texts_into_their_labels(classifier):
    results = [
        (label, classifier.run(item(text), None, CONFIG).raw["label"])
        for label, texts in TEXTS.items()
        for text in texts
    ]

    accuracy = sum(expected == got for expected, got in results) / len(results)
    assert accuracy >= 0.9, [result for result in results if result[0] != result[1]]


def test_scores_every_label_best_first_and_leaves_the_text_alone(classifier):
    output = classifier.run(item(TEXTS["cooking"][0]), None, CONFIG)

    assert [prediction.label for prediction in output.predictions][0] == "cooking"
    assert {prediction.label for prediction in output.predictions} == set(LABELS)
    assert sum(prediction.score for prediction in output.predictions) == pytest.approx(1.0)
    assert output.predictions[0].score > 0.5
    assert all(prediction.coordinates is None for prediction in output.predictions)
    assert output.raw["model"] == "all-MiniLM-L6-v2 (zero-shot)"
    assert output.raw["label"] == "cooking"
    assert output.raw["scores"] == {p.label: p.score for p in output.predictions}
    assert set(output.raw["similarities"]) == set(LABELS)
    # With output_target text, a returned text would replace the item's.
    assert output.text is None


def test_classifies_a_text_file_when_the_item_has_no_text(classifier, tmp_path):
    path = tmp_path / "note.txt"
    path.write_text(TEXTS["finance"][0], encoding="utf-8")

    output = classifier.run(item(text=""), path, CONFIG)

    assert output.raw["label"] == "finance"
    assert output.raw["source"] == "file"


def test_a_version_without_labels_fails_permanently(classifier):
    with pytest.raises(PermanentError, match="add labels to the version"):
        classifier.run(item(TEXTS["sports"][0], label_names=()), None, CONFIG)


@pytest.mark.parametrize("media_type", ["image/png", "audio/wav"])
def test_an_item_without_text_fails_permanently(classifier, tmp_path, media_type):
    path = tmp_path / "file.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")

    with pytest.raises(PermanentError, match="registered ONNX model named in .*model_id"):
        classifier.run(item(text="", media_type=media_type), path, CONFIG)


def test_threads_share_one_classifier(classifier):
    texts = [text for texts in TEXTS.values() for text in texts[:4]]
    alone = [classifier.run(item(text), None, CONFIG).raw["scores"] for text in texts]

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda text: classifier.run(item(text), None, CONFIG), texts))

    for expected, output in zip(alone, together, strict=True):
        assert output.raw["scores"] == pytest.approx(expected, abs=1e-6)
