"""Every route fuzzed from the OpenAPI document by schemathesis, against the
real server: no 5xx, answers as documented, and no trace in any answer.

Two passes: one with made-up ids and every kind of key (a user's, none, a
wrong one), and one with the ids of real rows of the caller's, so the fuzzed
bodies and queries reach the services. Both are derandomized with a fixed
seed and a fixed number of examples per operation, so a run is repeatable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import app
from api.openapi import openapi_document
from tests.builders import one_of_everything
from tests.fixtures import new_user_key

SEED = 20261126
MAX_EXAMPLES = 40
LEAKS = ("Traceback", "sqlalchemy", "psycopg", 'File "')
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
KEYS = ("user", "none", "wrong")
HTTP_SERVER_REFUSAL = "Invalid HTTP request received."


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # The coverage phase sends hundreds of boundary cases per
            # operation; the fuzzing phase with a fixed budget stays bounded.
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "suppress-health-check": ["all"],
        }
    )


def checked(case: schemathesis.Case, response: Any, headers: dict[str, str]) -> None:
    assert_no_trace(case, response)
    if response.status_code == 400 and response.text == HTTP_SERVER_REFUSAL:
        # A header no HTTP/1.1 parser accepts (an empty Content-Length, say):
        # uvicorn answers before any route runs, so no route documents it.
        return
    case.validate_response(response, checks=CHECKS, headers=headers)


def assert_no_trace(case: schemathesis.Case, response: Any) -> None:
    if "/download" in case.path and response.status_code == 200:
        return  # the bytes the fuzzer uploaded, whatever they are, or a zip of them
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} in {response.status_code}: {response.text}"


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    yield counts
    print(f"\nfuzzed: {dict(counts)}")


@pytest.fixture(scope="module")
def user_key(api_url: str) -> str:
    return new_user_key()


@pytest.fixture(scope="module")
def rows(api_url: str, user_key: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {user_key}"}
    with httpx.Client(base_url=api_url + "/api/v1", headers=headers, timeout=30) as client:
        return one_of_everything(client)


# The document the server serves, loaded at collection so that every
# operation is a test of its own (schemathesis's lazy from_fixture loader
# reads a private attribute pytest 9 no longer has).
schema = schemathesis.openapi.from_dict(openapi_document(app.routes), config=fuzz_config())


@schema.parametrize()
@schema.given(key=st.sampled_from(KEYS))
def test_fuzz_with_any_ids_and_keys(
    case: schemathesis.Case, key: str, api_url: str, user_key: str, tally: Counter[str]
) -> None:
    headers = {
        "user": {"Authorization": f"Bearer {user_key}"},
        "none": {},
        "wrong": {"Authorization": "Bearer not-a-key"},
    }[key]
    response = case.call(base_url=api_url, headers=headers)
    tally[f"any ids {response.status_code}"] += 1
    checked(case, response, headers)


# Deleting the rows would leave the rest of the pass nothing to reach; the
# deletes are fuzzed with made-up ids above.
@schema.exclude(method="DELETE").parametrize()
def test_fuzz_with_real_ids(
    case: schemathesis.Case, api_url: str, user_key: str, rows: dict[str, str], tally: Counter[str]
) -> None:
    headers = {"Authorization": f"Bearer {user_key}"}
    for name in case.path_parameters or {}:
        # An import's format is not a row: the fuzzer's (one of the enum).
        case.path_parameters[name] = rows.get(name, case.path_parameters[name])
    if "/labels/" in case.path:
        case.path_parameters["row_id"] = rows["label_id"]
    response = case.call(base_url=api_url, headers=headers)
    tally[f"real ids {response.status_code}"] += 1
    checked(case, response, headers)
