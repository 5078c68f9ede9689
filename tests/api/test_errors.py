"""How requests go wrong: problem+json for every error, and nothing inside
a server leaks out."""

import json

import httpx
import pytest

from tests.builders import (
    error_locs,
    item_path,
    make_dataset,
    make_item,
    ok,
    problem,
    version_path,
)

MIB = 1024 * 1024
LEAKS = ("Traceback", "SELECT ", "INSERT ", "UPDATE ", "sqlalchemy", "psycopg", "sqlite3")


def fresh(client: httpx.Client) -> httpx.Client:
    """A client of the same user on a new connection: a failed request may
    close the one it came on."""
    return httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30)


def test_a_validation_error_is_a_problem_with_each_bad_field(client):
    response = client.post("/datasets", json={"content_type": "videos", "multi_label": "often"})

    body = problem(response, 422)
    assert body["type"]
    assert sorted(error_locs(body)) == [["body", "content_type"], ["body", "multi_label"]]
    for error in body["errors"]:
        assert error["msg"], error


@pytest.mark.parametrize(
    "content", [b"{", b"{'name': 'x'}", b'{"name": "x",}', b"\xff\xfe{}"], ids=str
)
def test_invalid_json_is_400(client, content):
    response = client.post(
        "/datasets", content=content, headers={"Content-Type": "application/json"}
    )

    problem(response, 400)


@pytest.mark.parametrize("value", [[], [{"name": "x"}], "x", 3, None], ids=repr)
def test_json_that_is_not_an_object_is_422(client, value):
    body = problem(client.post("/datasets", json=value), 422)

    assert error_locs(body) == [["body"]]


def test_a_missing_body_is_422(client):
    body = problem(client.post("/datasets"), 422)

    assert error_locs(body) == [["body"]]


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_json_sent_as_another_media_type_is_415(client, media_type):
    response = client.post(
        "/datasets", content=json.dumps({"name": "x"}), headers={"Content-Type": media_type}
    )

    problem(response, 415)
    assert ok(client.get("/datasets")) == [], "nothing was created"


def test_json_with_a_charset_parameter_is_accepted(client):
    response = client.post(
        "/datasets",
        content=json.dumps({"name": "x"}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert ok(response, 201)["name"] == "x"


def test_json_body_at_the_limit_is_accepted(client):
    content = json.dumps({"name": "padded"}).encode().ljust(MIB, b" ")

    response = client.post(
        "/datasets", content=content, headers={"Content-Type": "application/json"}
    )

    assert ok(response, 201)["name"] == "padded"


def test_json_body_over_the_limit_is_413(client):
    content = json.dumps({"name": "x" * MIB}).encode()

    with fresh(client) as http:
        problem(http.post("/datasets", content=content), 413)
    assert ok(client.get("/datasets")) == [], "nothing was created"


def test_json_body_over_the_limit_without_content_length_is_413(client):
    def chunks():
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    with fresh(client) as http:
        response = http.post(
            "/datasets", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    problem(response, 413)


@pytest.mark.parametrize(
    "path",
    [
        "/datasets/not-a-uuid",
        "/datasets/12345678-1234-1234-1234-1234567890",
        "/datasets/00000000-0000-0000-0000-000000000000/versions/x",
        "/datasets/%00",
    ],
)
def test_a_malformed_id_in_the_path_is_404(client, path):
    problem(client.get(path), 404)


def test_a_wrong_method_is_a_405_problem(client):
    problem(client.patch("/datasets", json={}), 405)


def test_no_answer_leaks_internals(client):
    dataset = make_dataset(client)
    version = version_path(dataset)
    item = item_path(dataset, make_item(client, dataset))
    requests = [
        ("POST", "/datasets", {"content": b"{bad json"}),
        ("POST", "/datasets", {"json": {"name": "nul \u0000 byte"}}),
        ("POST", f"{version}/labels", {"json": {"name": "x", "index": 2**63}}),
        ("POST", f"{version}/labels", {"json": {"name": "x", "index": 2**40}}),
        ("POST", f"{version}/items", {"json": {"splits": [{"id": "x"}]}}),
        ("POST", f"{version}/annotations", {"json": {"label_id": "' OR 1=1 --"}}),
        ("GET", f"{version}/items?page_count=99999999999", {}),
        ("POST", f"{version}/labels", {"json": {"name": "x", "color": "c" * 41}}),
        ("PUT", item, {"json": {"name": "x"}, "headers": {"If-Match": '"9' + "9" * 30 + '"'}}),
        ("GET", "/datasets/../../etc/passwd", {}),
    ]
    for method, path, options in requests:
        with fresh(client) as http:
            response = http.request(method, path, **options)
        assert response.headers["content-type"].startswith("application/"), response.headers
        for leak in LEAKS:
            assert leak not in response.text, (method, path, response.text)


# --- values the database cannot hold ----------------------------------------
#
# Refused as validation errors on every backend, never passed on to a
# database that would refuse them with a 500.


def assert_refused(response, field):
    assert error_locs(problem(response, 422)) == [["body", field]]


@pytest.mark.parametrize("value", [2**31, 2**40, 2**63, -(2**31) - 1], ids=str)
def test_an_integer_beyond_32_bits_is_refused(client, value):
    dataset = make_dataset(client)

    with fresh(client) as http:
        response = http.post(
            version_path(dataset) + "/labels", json={"name": "big", "index": value}
        )

    assert_refused(response, "index")


def test_the_largest_32_bit_integer_is_stored(client):
    dataset = make_dataset(client)

    label = ok(client.post(version_path(dataset) + "/labels", json={"index": 2**31 - 1}), 201)

    assert label["index"] == 2**31 - 1


def test_a_nul_character_is_refused(client):
    dataset = make_dataset(client)

    with fresh(client) as http:
        response = http.post(version_path(dataset) + "/items", json={"name": "nul \u0000 byte"})

    assert_refused(response, "name")


@pytest.mark.parametrize("field", ["color", "shortcut"])
def test_a_label_color_or_shortcut_over_40_characters_is_refused(client, field):
    dataset = make_dataset(client)

    with fresh(client) as http:
        response = http.post(version_path(dataset) + "/labels", json={"name": "x", field: "c" * 41})

    assert_refused(response, field)
