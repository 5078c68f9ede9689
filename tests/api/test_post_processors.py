"""Post-processors of a dataset: /datasets/{dataset_id}/post-processors."""

import uuid

import pytest

from tests.builders import (
    error_locs,
    find_nulls,
    make_dataset,
    make_post_processor,
    ok,
    problem,
)

POST_PROCESSOR_FIELDS = {
    "id",
    "created_at",
    "updated_at",
    "dataset_id",
    "name",
    "description",
    "enabled",
    "order",
    "model_id",
    "model_version",
    "external_provider",
    "external_model",
    "external_config",
    "model_type",
    "output_target",
    "auto_create_labels",
    "confidence_threshold",
    "prompt",
    "user_id",
}
DETAIL_FIELDS = {"model_name", "model_kind", "is_external", "provider_name", "config_error"}


def path_of(dataset, post_processor=None):
    base = f"/datasets/{dataset['id']}/post-processors"
    return f"{base}/{post_processor['id']}" if post_processor else base


# --- CRUD -------------------------------------------------------------------


def test_create_answers_the_post_processor_with_defaults(client):
    dataset = make_dataset(client)

    created = make_post_processor(client, dataset, name="read text")

    assert set(created) == POST_PROCESSOR_FIELDS
    assert created["dataset_id"] == dataset["id"]
    assert created["user_id"] == dataset["user_id"]
    assert (created["name"], created["model_type"]) == ("read text", "ocr")
    assert created["enabled"] is True
    assert created["order"] == 0
    assert created["output_target"] == "text"
    assert created["auto_create_labels"] is False
    assert created["confidence_threshold"] == 0.0
    assert created["external_provider"] is None
    assert find_nulls(created, frozenset({"external_provider"})) == []


def test_get_and_list_add_model_details_for_the_builtin_ocr(client):
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset, model_type="ocr")
    details = {
        "model_name": "rapidocr-onnxruntime",
        "model_kind": "builtin",
        "is_external": False,
        "provider_name": "",
        "config_error": "",
    }

    got = ok(client.get(path_of(dataset, created)))
    listed = ok(client.get(path_of(dataset)))

    assert got == {**created, **details}
    assert listed == [got]


def test_an_external_provider_is_external(client):
    dataset = make_dataset(client)
    created = make_post_processor(
        client,
        dataset,
        model_type="llm",
        external_provider="openai",
        external_model="gpt-4o-mini",
        external_config='{"temperature": 0}',
    )

    got = ok(client.get(path_of(dataset, created)))

    assert got["external_provider"] == "openai"
    assert got["is_external"] is True
    assert got["provider_name"] == "openai"
    assert got["model_name"] == "gpt-4o-mini"
    assert got["external_config"] == '{"temperature": 0}'
    assert got["config_error"] == ""


def test_list_is_in_order(client):
    dataset = make_dataset(client)
    third = make_post_processor(client, dataset, name="third", order=3)
    first = make_post_processor(client, dataset, name="first", order=1)
    second = make_post_processor(client, dataset, name="second", order=2)

    listed = ok(client.get(path_of(dataset)))

    assert [p["id"] for p in listed] == [first["id"], second["id"], third["id"]]
    for entry in listed:
        assert set(entry) == POST_PROCESSOR_FIELDS | DETAIL_FIELDS


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"model_type": "telepathy"}, ["body", "model_type"]),
        ({"output_target": "email"}, ["body", "output_target"]),
        ({"confidence_threshold": 1.5}, ["body", "confidence_threshold"]),
        ({"confidence_threshold": -0.1}, ["body", "confidence_threshold"]),
        ({"external_provider": "acme"}, ["body", "external_provider"]),
        ({"order": "first"}, ["body", "order"]),
    ],
)
def test_invalid_fields_are_422(client, fields, loc):
    dataset = make_dataset(client)

    body = problem(client.post(path_of(dataset), json={"model_type": "ocr", **fields}), 422)

    assert error_locs(body) == [loc]
    assert ok(client.get(path_of(dataset))) == [], "nothing was created"


def test_model_type_is_required(client):
    dataset = make_dataset(client)

    body = problem(client.post(path_of(dataset), json={"name": "what model?"}), 422)

    assert error_locs(body) == [["body", "model_type"]]


def test_put_is_partial(client):
    dataset = make_dataset(client)
    created = make_post_processor(
        client, dataset, name="old", prompt="keep", order=4, confidence_threshold=0.5
    )

    updated = ok(
        client.put(
            path_of(dataset, created),
            json={"name": "new", "enabled": False, "prompt": None, "dataset_id": str(uuid.uuid4())},
        )
    )

    assert (updated["name"], updated["enabled"]) == ("new", False)
    assert (updated["prompt"], updated["order"]) == ("keep", 4)
    assert updated["confidence_threshold"] == 0.5
    assert updated["model_type"] == "ocr"
    assert updated["dataset_id"] == dataset["id"]
    got = ok(client.get(path_of(dataset, created)))
    assert {key: got[key] for key in updated} == updated


def test_put_can_switch_to_an_external_provider(client):
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset, model_type="llm")

    ok(client.put(path_of(dataset, created), json={"external_provider": "anthropic"}))

    got = ok(client.get(path_of(dataset, created)))
    assert (got["is_external"], got["provider_name"]) == (True, "anthropic")


def test_put_with_an_invalid_value_is_422_and_changes_nothing(client):
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset)

    body = problem(
        client.put(path_of(dataset, created), json={"name": "x", "confidence_threshold": 1.5}), 422
    )

    assert error_locs(body) == [["body", "confidence_threshold"]]
    assert ok(client.get(path_of(dataset, created)))["name"] == created["name"]


def test_delete_answers_it_then_404(client):
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset)

    deleted = ok(client.delete(path_of(dataset, created)))

    assert deleted["id"] == created["id"]
    problem(client.get(path_of(dataset, created)), 404)
    problem(client.put(path_of(dataset, created), json={"name": "x"}), 404)
    problem(client.delete(path_of(dataset, created)), 404)
    assert ok(client.get(path_of(dataset))) == []


def test_a_post_processor_of_another_dataset_is_404(client):
    dataset = make_dataset(client)
    other = make_dataset(client)
    created = make_post_processor(client, other)

    problem(client.get(path_of(dataset, created)), 404)
    problem(client.get(path_of(dataset, {"id": uuid.uuid4()})), 404)
    problem(client.get(f"/datasets/{uuid.uuid4()}/post-processors"), 404)


def test_a_registered_onnx_model_is_listed_by_its_name(client, tmp_path):
    from tests.shared.onnx_networks import (
        channel_mean_classifier,
        labels_file,
        register,
        unique_name,
    )

    name = unique_name("colours")
    classifier = channel_mean_classifier(tmp_path / "c.onnx")
    assert register(name, classifier, labels_file(tmp_path / "l.txt", ["r", "g", "b"])) == 0
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset, model_type="classification", model_id=name)
    make_post_processor(client, dataset, model_type="classification", model_id="nope")

    got = ok(client.get(f"/datasets/{dataset['id']}/post-processors/{created['id']}"))
    listed = ok(client.get(f"/datasets/{dataset['id']}/post-processors"))

    assert (got["model_name"], got["model_kind"]) == (name, "onnx")
    kinds = {entry["model_id"]: entry["model_kind"] for entry in listed}
    assert kinds == {name: "onnx", "nope": "missing"}
