"""Who may call what: API keys, open health checks, and users kept apart."""

import httpx
import pytest

from tests.builders import (
    first_version,
    item_path,
    make_annotation,
    make_dataset,
    make_item,
    make_label,
    make_quick_post_processor,
    ok,
    problem,
    upload,
    version_path,
)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer ifk_not-a-real-key",
        "Bearer",
        "Bearer ifk_one ifk_two",
        "Basic dXNlcjpwYXNz",
        "ifk_a-key-without-a-scheme",
    ],
    ids=["missing", "wrong-key", "scheme-only", "two-keys", "basic", "no-scheme"],
)
def test_without_a_valid_key_is_401(api_url, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=api_url + "/api/v1", headers=headers) as http:
        response = http.get("/datasets")

    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_401_comes_before_the_body_is_looked_at(anonymous):
    problem(anonymous.post("/datasets", content=b"not json"), 401)
    problem(anonymous.post("/datasets", json={"name": "x"}), 401)


def test_every_api_route_needs_a_key(anonymous, client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)

    for method, path in [
        ("GET", "/applications"),
        ("GET", f"/datasets/{dataset['id']}"),
        ("GET", version_path(dataset) + "/items"),
        ("GET", item_path(dataset, item)),
        ("GET", item_path(dataset, item) + "/download"),
        ("POST", item_path(dataset, item) + "/upload"),
        ("GET", f"/datasets/{dataset['id']}/post-processors/jobs"),
    ]:
        problem(anonymous.request(method, path), 401)


def test_the_key_is_case_insensitive_in_its_scheme_only(api_url, client):
    key = client.headers["Authorization"].split(" ", 1)[1]
    with httpx.Client(base_url=api_url + "/api/v1") as http:
        assert http.get("/datasets", headers={"Authorization": f"bearer {key}"}).status_code == 200
        wrong_case = http.get("/datasets", headers={"Authorization": f"Bearer {key.upper()}"})
    problem(wrong_case, 401)


def test_health_checks_need_no_key(api_url):
    with httpx.Client(base_url=api_url) as http:
        assert ok(http.get("/healthz")) == {"status": "ok"}
        ready = ok(http.get("/readyz"))
    assert ready["status"] == "ok"
    assert (ready["database"], ready["broker"]) == ("ok", "ok")


def test_applications_is_an_empty_array(client):
    assert ok(client.get("/applications")) == []


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/nothing-here", "/api/v2/datasets"])
def test_unknown_routes_are_404_problems(api_url, client, path):
    problem(client.get(api_url + path), 404)


# --- another user's data ----------------------------------------------------


@pytest.fixture
def owned(client):
    """A dataset of the first user with one of everything."""
    dataset = make_dataset(client, default_splits=True)
    post_processor = make_quick_post_processor(client, dataset)
    label = make_label(client, dataset)
    item = make_item(client, dataset, name="mine")
    ok(upload(client, dataset, item, b"my text file"))
    annotation = make_annotation(client, dataset, label, item)
    [job] = ok(client.get(item_path(dataset, item) + "/jobs"))
    return {
        "dataset": dataset,
        "split": first_version(dataset)["splits"][0],
        "label": label,
        "item": item,
        "annotation": annotation,
        "post_processor": post_processor,
        "job": job,
    }


def snapshot(client, owned):
    """What the owner sees of their data."""
    dataset, item = owned["dataset"], owned["item"]
    got_item = ok(client.get(item_path(dataset, item)))
    got_item.pop("job_status")  # the one thing a worker may change meanwhile
    return {
        "dataset": ok(client.get(f"/datasets/{dataset['id']}")),
        "item": got_item,
        "file": client.get(item_path(dataset, item) + "/download").content,
        "post_processors": ok(client.get(f"/datasets/{dataset['id']}/post-processors")),
        "jobs": [job["id"] for job in ok(client.get(item_path(dataset, item) + "/jobs"))],
    }


def foreign_requests(owned):
    dataset, item = owned["dataset"], owned["item"]
    version = version_path(dataset)
    split, label = owned["split"]["id"], owned["label"]["id"]
    post_processor = f"/datasets/{dataset['id']}/post-processors/{owned['post_processor']['id']}"
    one_item = item_path(dataset, item)
    return [
        ("GET", f"/datasets/{dataset['id']}", None),
        ("PUT", f"/datasets/{dataset['id']}", {"name": "taken"}),
        ("GET", f"/datasets/{dataset['id']}/versions", None),
        ("POST", f"/datasets/{dataset['id']}/versions", {"name": "v2"}),
        ("GET", version, None),
        ("PUT", version, {"name": "taken"}),
        ("GET", f"{version}/splits", None),
        ("POST", f"{version}/splits", {"name": "extra"}),
        ("GET", f"{version}/splits/{split}", None),
        ("PUT", f"{version}/splits/{split}", {"name": "taken"}),
        ("DELETE", f"{version}/splits/{split}", None),
        ("GET", f"{version}/labels/{label}", None),
        ("PUT", f"{version}/labels/{label}", {"name": "taken"}),
        ("DELETE", f"{version}/labels/{label}", None),
        ("POST", f"{version}/annotations", {"label_id": label, "item_id": item["id"]}),
        ("PUT", f"{version}/annotations/{owned['annotation']['id']}", {"coordinates": "x"}),
        ("DELETE", f"{version}/annotations/{owned['annotation']['id']}", None),
        ("GET", f"{version}/items", None),
        ("POST", f"{version}/items", {"name": "planted"}),
        ("GET", one_item, None),
        ("PUT", one_item, {"name": "taken"}),
        ("GET", f"{one_item}/download", None),
        ("GET", f"{one_item}/download?thumbnail=true", None),
        ("GET", f"{one_item}/jobs", None),
        ("POST", f"{one_item}/jobs/{owned['job']['id']}/retry", None),
        ("DELETE", f"{version}/splits/{split}/items/{item['id']}", None),
        ("GET", f"/datasets/{dataset['id']}/post-processors", None),
        ("POST", f"/datasets/{dataset['id']}/post-processors", {"model_type": "ocr"}),
        ("GET", post_processor, None),
        ("PUT", post_processor, {"enabled": False}),
        ("DELETE", post_processor, None),
        ("GET", f"/datasets/{dataset['id']}/post-processors/jobs", None),
        ("DELETE", version, None),
    ]


def test_another_user_gets_404_for_everything_and_changes_nothing(client, other_client, owned):
    before = snapshot(client, owned)

    for method, path, body in foreign_requests(owned):
        response = other_client.request(method, path, json=body)
        problem(response, 404)
        assert owned["item"]["id"] not in response.text, (method, path)

    upload_path = item_path(owned["dataset"], owned["item"]) + "/upload"
    problem(other_client.post(upload_path, files={"file": ("x.txt", b"overwrite")}), 404)
    assert snapshot(client, owned) == before


def test_another_user_cannot_delete_a_dataset(client, other_client, owned):
    dataset = owned["dataset"]
    before = snapshot(client, owned)

    problem(other_client.delete(f"/datasets/{dataset['id']}"), 404)

    assert snapshot(client, owned) == before
    # The owner can: the 404 above was not the route failing.
    ok(client.delete(f"/datasets/{dataset['id']}"))


def test_lists_show_only_the_callers_data(client, other_client, owned):
    mine = make_dataset(other_client, name="theirs")

    listed = other_client.get("/datasets")

    assert [d["id"] for d in ok(listed)] == [mine["id"]]
    assert listed.headers["X-Total-Count"] == "1"
    assert owned["dataset"]["id"] in {d["id"] for d in ok(client.get("/datasets"))}


def test_another_users_split_cannot_be_joined(client, other_client, owned):
    theirs = make_dataset(other_client)

    response = other_client.post(
        version_path(theirs) + "/items", json={"splits": [{"id": owned["split"]["id"]}]}
    )

    problem(response, 422)
