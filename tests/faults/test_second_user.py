"""A second user against the first user's data, on every route that the
OpenAPI document names.

The first user makes one of everything: a dataset with its version, splits
and a label, an item with an uploaded image (so that it has a download and a
thumbnail) and an annotation, and two post-processors whose jobs have run,
one completed and one failed (and retryable, so that a retry that got
through would show). The routes are then read from the served document, not
listed here, so that a new route is swept as soon as it is documented. Each
is called with the second user's key, its path filled with the first user's
ids, with a valid body, an upload where it takes one, and every query
filter and header filled in; also with the second user's own rows in the
leading path parameters and the first user's in the rest, which catches a
route that checks the parent but not the child. Each call must answer 404,
exactly as the same call does with ids that exist nowhere, and carry no id,
name, text, file or file digest of the first user. (The API validates a JSON
body before it looks up any row, so a 404 also shows the body was valid.) Routes without path
parameters (the caller's own datasets, health checks, ...) answer the
second user with their own data only. Last, the first user reads every
route back and finds nothing changed.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.builders import (
    first_version,
    item_path,
    make_annotation,
    make_dataset,
    make_item,
    make_label,
    make_post_processor,
    make_quick_post_processor,
    ok,
    png_with_words,
    problem,
    stored_files,
    upload,
    wait_for_jobs,
)

DOCUMENT = "/api/v1/openapi.json"
# Another user's row is "not found", exactly as a row that does not exist:
# the API never answers 403, which would confirm that the id exists.
FOREIGN = 404
# (path, method) pairs of the document that the sweep does not call, each
# with its reason. A pair neither swept nor listed here fails the test, and
# so does a pair listed here that the document no longer has.
NOT_SWEPT: dict[tuple[str, str], str] = {
    ("/metrics", "get"): "no one's rows (counts by model type, queue and route template, "
    "for operators), and it changes with every request the sweep makes",
}
# The kinds of row that a path parameter, query parameter or body field names.
KINDS = ("dataset", "version", "split", "label", "item", "annotation", "post_processor", "job")
# Path parameters that name what every user shares, not anyone's rows: the
# operator's providers, an import's format. Filled in as they are; the
# caller's own key for a provider is the caller's own data.
SHARED = {"provider": "openai", "format": "folders"}
METHODS = ("get", "put", "post", "delete", "patch")
WRITES = ("put", "post", "patch")

Ids = dict[str, str]  # kind of row -> id
Query = dict[str, Any]  # the query parameters to fill in: a value, or None for any


class Nowhere(dict[str, str]):
    """Ids that exist nowhere, one per kind, made up when first asked for."""

    def __missing__(self, kind: str) -> str:
        self[kind] = str(uuid.uuid4())
        return self[kind]


def kind_of(name: str) -> str | None:
    """The kind of row a name stands for: `label_id` and `labels` name
    labels, `default_split` a split, `post-processors` post-processors."""
    stem = name.lower().replace("-", "_").removesuffix("_id").removeprefix("default_")
    for candidate in (stem, stem.removesuffix("s")):
        if candidate in KINDS:
            return candidate
    return None


def path_kinds(path: str) -> list[tuple[str, str]]:
    """Each path parameter with the kind of row it names; one without a
    telling name (`{row_id}`) names the rows of the segment before it."""
    found = []
    for segment, name in re.findall(r"([^/]*)/\{(\w+)\}", path):
        if name in SHARED:
            continue
        kind = kind_of(name) or kind_of(segment)
        assert kind, f"no kind of row is known for {{{name}}} in {path}: add it to KINDS"
        found.append((name, kind))
    return found


def success_status(operation: dict[str, Any]) -> int:
    [status] = [int(code) for code in operation["responses"] if code.startswith("2")]
    return status


@dataclass
class Call:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    files: dict[str, tuple[str, bytes]] | None = None

    def send(self, http: httpx.Client) -> httpx.Response:
        return http.request(
            self.method,
            self.url,
            params=self.params,
            headers=self.headers,
            json=self.body,
            files=self.files,
        )

    def __str__(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.params.items())
        return f"{self.method} {self.url}{'?' + query if query else ''}"


@dataclass
class Requests:
    """Turns an operation of the document into a call: path parameters
    from the ids given, and a valid value for every query parameter, header
    and body field, ids among them naming the rows in `refs`."""

    document: dict[str, Any]
    base_url: str
    text: str  # for every free-text field
    headers: dict[str, str]  # a value for each header parameter, by lower-case name
    file: bytes  # for every upload

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, operations in self.document["paths"].items():
            for method, operation in operations.items():
                assert method in METHODS, (path, method)
                yield path, method, operation

    def call(
        self,
        path: str,
        method: str,
        operation: dict[str, Any],
        path_ids: list[str],
        refs: Ids,
        query: Query,
    ) -> Call:
        url = path
        for (name, _kind), row_id in zip(path_kinds(path), path_ids, strict=True):
            url = url.replace(f"{{{name}}}", row_id)
        for name, value in SHARED.items():
            url = url.replace(f"{{{name}}}", value)
        call = Call(method.upper(), self.base_url + url, {}, {})
        for parameter in operation.get("parameters", []):
            name, schema = parameter["name"], parameter.get("schema", {})
            if parameter["in"] == "query" and name in query:
                value = self.sample(schema, name, refs) if query[name] is None else query[name]
                call.params[name] = str(value).lower() if isinstance(value, bool) else str(value)
            elif parameter["in"] == "header":
                assert name.lower() in self.headers, f"no value for the header {name} of {path}"
                call.headers[name] = self.headers[name.lower()]
            elif parameter["in"] not in ("path", "query"):
                raise AssertionError(f"a {parameter['in']} parameter in {path}: fill it in")
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            call.body = self.sample(content["application/json"]["schema"], "", refs)
        elif "multipart/form-data" in content:
            form = self.resolve(content["multipart/form-data"]["schema"])
            call.files = {field: (f"{self.text}.png", self.file) for field in form["required"]}
        elif content:
            raise AssertionError(f"no body of type {list(content)} for {method} {path}")
        return call

    def queries(self, operation: dict[str, Any]) -> list[Query]:
        """The query parameters to fill in: none; each alone (one with a
        choice of values once with each value); and all at once. Paging
        stays at its defaults, so that every row is listed."""
        names = {
            parameter["name"]: self.resolve(parameter["schema"]).get("enum", [None])
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "query" and parameter["schema"].get("type") != "integer"
        }
        alone = [{name: value} for name, values in names.items() for value in values]
        return [{}, *alone, *([dict.fromkeys(names)] if len(names) > 1 else [])]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def sample(self, schema: dict[str, Any], name: str, refs: Ids) -> Any:
        """A valid value with every field filled in."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            given = [s for s in schema["anyOf"] if s.get("type") != "null" and "const" not in s]
            return self.sample(given[0], name, refs)
        # One of a list of words names no row, whatever its field's name
        # (a backfill's `items`: "all" or "without_completed").
        if "enum" in schema:
            return schema["enum"][0]
        kind, type_ = kind_of(name), schema.get("type")
        if schema.get("format") == "uuid" or (kind and type_ == "string"):
            assert kind, f"no kind of row is known for the field {name!r}: add it to KINDS"
            return refs[kind]
        if "const" in schema:
            return schema["const"]
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00Z"
        if type_ == "string":
            return self.text[: schema.get("maxLength", len(self.text))]
        if type_ == "boolean":
            return True
        if type_ in ("integer", "number"):
            return min(max(5, schema.get("minimum", 5)), schema.get("maximum", 5))
        if type_ == "array":
            return [self.sample(schema["items"], name, refs)]
        if type_ == "object":
            properties = schema.get("properties", {}).items()
            # {"splits": [{"id": ...}]}: the id is of the kind its list names.
            return {
                field: self.sample(sub, name if field == "id" else field, refs)
                for field, sub in properties
            }
        raise AssertionError(f"no value for the field {name!r}: {schema}")


def user_ids(value: Any) -> set[str]:
    """Every `user_id` in a JSON value, however deep."""
    if isinstance(value, dict):
        return {
            found
            for key, child in value.items()
            for found in (
                {child} if key == "user_id" and isinstance(child, str) else user_ids(child)
            )
        }
    if isinstance(value, list):
        return {found for child in value for found in user_ids(child)}
    return set()


def names_rows(
    requests: Requests, path: str, method: str, operation: dict[str, Any], query: Query
) -> bool:
    """Whether the operation's query or body names rows, by their ids."""
    path_ids = ["" for _kind in path_kinds(path)]
    one, other = (
        requests.call(path, method, operation, path_ids, refs, query)
        for refs in (Nowhere(), Nowhere())
    )
    return (one.params, one.body) != (other.params, other.body)


def json_type(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "").split(";")[0]
    return media_type.endswith("json")


def json_or_bytes(response: httpx.Response) -> Any:
    return response.json() if json_type(response) else response.content


@pytest.fixture
def owned(client: httpx.Client, worker: object) -> dict[str, Any]:
    """One of everything of the first user's, its jobs run: the ids by kind
    for the sweep, and every id, name and digest that must not leak."""
    token = f"owner-{uuid.uuid4().hex}"
    provider_key = f"sk-owner-{uuid.uuid4().hex}"
    ok(client.put(f"/providers/{SHARED['provider']}/key", json={"api_key": provider_key}))
    dataset = make_dataset(client, name=token, description=token, notes=token, default_splits=True)
    version = first_version(dataset)
    quick = make_quick_post_processor(client, dataset, name=f"{token}-quick")
    rejecting = make_post_processor(
        client,
        dataset,
        name=f"{token}-rejecting",
        model_type="classification",
        model_id="test-reject",
    )
    label = make_label(client, dataset, name=token, description=token)
    item = make_item(client, dataset, name=token, description=token, text=token)
    file = png_with_words("owner", size=(320, 120))
    item = ok(upload(client, dataset, item, file, name=f"{token}.png"))
    annotation = make_annotation(
        client, dataset, label, item, coordinates=token, split_id=item["splits"][0]["id"]
    )
    jobs = {job["status"]: job for job in wait_for_jobs(client, dataset, item)}
    assert set(jobs) == {"completed", "failed"}, jobs
    # Retryable by its owner: a retry that got through would show.
    assert jobs["failed"]["attempts"] < jobs["failed"]["max_attempts"], jobs
    item = ok(client.get(item_path(dataset, item)))
    ids = {
        "dataset": dataset["id"],
        "version": version["id"],
        "split": item["splits"][0]["id"],
        "label": label["id"],
        "item": item["id"],
        "annotation": annotation["id"],
        "post_processor": quick["id"],
        "job": jobs["failed"]["id"],
    }
    every_id = {
        *ids.values(),
        *(split["id"] for split in version["splits"]),
        rejecting["id"],
        jobs["completed"]["id"],
        dataset["user_id"],
    }
    # What must not leak, each with what it is.
    secrets = {
        token.encode(): "the text of the first user's rows",
        provider_key.encode(): "the first user's provider key",
        hashlib.sha256(file).hexdigest().encode(): "the digest of the item's file",
        file: "the item's file",
        **{row_id.encode(): f"the id {row_id}" for row_id in every_id},
        **{row_id.replace("-", "").encode(): f"the id {row_id} in hex" for row_id in every_id},
    }
    return {
        "ids": ids,
        "secrets": secrets,
        "file": file,
        "item_version": item["version"],
        "failed_job": jobs["failed"],
    }


@pytest.fixture
def theirs(other_client: httpx.Client) -> dict[str, Any]:
    """The second user's own rows, for the leading path parameters."""
    text = f"other-{uuid.uuid4().hex}"
    dataset = make_dataset(other_client, name=text, default_splits=True)
    label = make_label(other_client, dataset, name=text)
    item = make_item(other_client, dataset, name=text)
    item = ok(upload(other_client, dataset, item, png_with_words("other", size=(200, 80))))
    annotation = make_annotation(other_client, dataset, label, item)
    # After the upload, so that the second user has no job running.
    post_processor = make_quick_post_processor(other_client, dataset)
    ids = {
        "dataset": dataset["id"],
        "version": first_version(dataset)["id"],
        "split": item["splits"][0]["id"],
        "label": label["id"],
        "item": item["id"],
        "annotation": annotation["id"],
        "post_processor": post_processor["id"],
    }
    return {"ids": ids, "user_id": dataset["user_id"], "text": text}


def owner_views(owner: httpx.Client, requests: Requests, ids: Ids) -> dict[str, Any]:
    """Everything the first user can read: every GET of the document on
    their ids, with and without its query filled in."""
    views: dict[str, Any] = {}
    for path, method, operation in requests.operations():
        if method != "get" or (path, method) in NOT_SWEPT:
            continue
        path_ids = [ids[kind] for _name, kind in path_kinds(path)]
        for query in requests.queries(operation):
            call = requests.call(path, method, operation, path_ids, ids, query)
            response = call.send(owner)
            views[str(call)] = (
                response.status_code,
                response.headers.get("x-total-count"),
                response.headers.get("etag"),
                json_or_bytes(response),
            )
    return views


def test_a_second_user_reaches_nothing_of_the_first_on_any_route(
    api_url: str,
    client: httpx.Client,
    other_client: httpx.Client,
    owned: dict[str, Any],
    theirs: dict[str, Any],
) -> None:
    document = ok(other_client.get(api_url + DOCUMENT))
    requests = Requests(
        document,
        api_url,
        text=theirs["text"],
        # The item's current version: a missing check would not stop at 412.
        headers={"if-match": f'"{owned["item_version"]}"'},
        file=png_with_words("intruder", size=(200, 80)),
    )
    owner_ids, own = owned["ids"], theirs["ids"]
    before = owner_views(client, requests, owner_ids)
    not_ok = {call: view[0] for call, view in before.items() if view[0] != 200}
    assert not not_ok, f"the owner cannot read their own rows: {not_ok}"
    files_before = stored_files()

    failures: list[str] = []
    swept: set[tuple[str, str]] = set()
    calls = 0

    def send(call: Call) -> httpx.Response | None:
        nonlocal calls
        calls += 1
        try:
            return call.send(other_client)
        except httpx.TransportError as error:
            failures.append(f"{call}: no answer: {error!r}")
            return None

    def check(call: Call, twin: Call | None, expected: int | range) -> httpx.Response | None:
        """Send `call` as the second user; `twin` is the same call with ids
        that exist nowhere, and must be answered alike."""
        response = send(call)
        if response is None:
            return None
        excerpt = response.text[:300] if json_type(response) else repr(response.content[:100])
        if expected == FOREIGN:
            try:
                problem(response, FOREIGN)
            except AssertionError as error:
                failures.append(f"{call}: {str(error)[:300]}")
        elif response.status_code not in (expected if isinstance(expected, range) else (expected,)):
            failures.append(f"{call}: {response.status_code}, not {expected}: {excerpt}")
        seen = response.content + str(response.headers.multi_items()).encode()
        leaked = sorted(what for secret, what in owned["secrets"].items() if secret in seen)
        if leaked:
            failures.append(f"{call}: {response.status_code} shows {leaked}: {excerpt}")
        answer = send(twin) if twin is not None else None
        if answer is not None:
            write_done = call.method.lower() in WRITES and response.status_code < 300
            got, nowhere = (
                (
                    reply.status_code,
                    reply.headers.get("x-total-count"),
                    None if write_done else json_or_bytes(reply),
                )
                for reply in (response, answer)
            )
            if got != nowhere:
                failures.append(
                    f"{call}: {str(got)[:300]} for the first user's ids, "
                    f"{str(nowhere)[:300]} for ids of nowhere"
                )
        return response

    for path, method, operation in requests.operations():
        if (path, method) in NOT_SWEPT:
            continue
        swept.add((path, method))
        kinds = [kind for _name, kind in path_kinds(path)]
        for query in requests.queries(operation):
            if not kinds:
                # Not about anyone's rows: the caller's own data only.
                call = requests.call(path, method, operation, [], owner_ids, query)
                response = check(call, None, success_status(operation))
                if response is not None and json_type(response):
                    strangers = user_ids(response.json()) - {theirs["user_id"]}
                    if strangers:
                        failures.append(f"{call}: rows of {strangers}")
                continue
            # The second user's own rows in the first `own_count` path
            # parameters, the first user's in the rest; and then all their
            # own, with the first user's ids in the query or body only.
            for own_count in range(len(kinds) + 1):
                expected: int | range = FOREIGN
                if own_count == len(kinds) and method == "get":
                    # Their own rows, filtered by the first user's ids.
                    expected = success_status(operation)
                elif own_count == len(kinds):
                    # A write to their own rows that names the first user's
                    # in its body or query is refused; one that names no
                    # rows is not about the first user (nor sent: it would
                    # change or delete the second user's rows).
                    if not names_rows(requests, path, method, operation, query):
                        continue
                    expected = range(400, 500)
                missing = [kind for kind in kinds[:own_count] if kind not in own]
                assert not missing, f"the second user needs a {missing} of their own for {path}"
                # Once with the first user's ids, once with ids of nowhere.
                call, twin = [
                    requests.call(
                        path,
                        method,
                        operation,
                        [own[kind] for kind in kinds[:own_count]]
                        + [ids[kind] for kind in kinds[own_count:]],
                        ids,
                        query,
                    )
                    for ids in (owner_ids, Nowhere())
                ]
                check(call, twin, expected)

    documented = {(path, method) for path, method, _operation in requests.operations()}
    assert set(NOT_SWEPT) <= documented, f"stale entries: {set(NOT_SWEPT) - documented}"
    assert swept == documented - set(NOT_SWEPT), documented - set(NOT_SWEPT) - swept
    assert len(swept) == len(documented) - len(NOT_SWEPT)

    # The first user finds everything as it was.
    after = owner_views(client, requests, owner_ids)
    failures += [f"changed for the owner: {call}" for call in before if after[call] != before[call]]
    assert not failures, f"{len(failures)} failures in {calls} calls:\n" + "\n".join(failures)
    dataset = {"id": owner_ids["dataset"], "versions": [{"id": owner_ids["version"]}]}
    item = item_path(dataset, {"id": owner_ids["item"]})
    download = client.get(item + "/download")
    assert download.status_code == 200 and download.content == owned["file"]
    jobs = {job["id"]: job for job in ok(client.get(item + "/jobs"))}
    assert jobs[owner_ids["job"]] == owned["failed_job"]
    assert ok(client.get(item))["version"] == owned["item_version"]
    assert stored_files() == files_before
