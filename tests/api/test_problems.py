"""One place says what each error means over HTTP."""

from __future__ import annotations

import asyncio
import inspect
import json

from starlette.requests import Request

from api.problems import STATUSES, app_error, status_of
from shared import errors
from shared.inference.base import PermanentError
from shared.services.onnx_models import InvalidModel


def answer(error: errors.AppError) -> tuple[int, dict[str, object]]:
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    response = asyncio.run(app_error(request, error))
    return response.status_code, json.loads(bytes(response.body))


def test_every_request_error_has_a_status():
    request_errors = {
        kind
        for _name, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, errors.AppError) and kind is not errors.AppError
    }
    assert request_errors == set(STATUSES)


def test_an_error_answers_with_its_status_title_detail_and_fields():
    status, body = answer(errors.PreconditionFailed(current_version=3))
    assert status == 412
    assert body == {
        "type": "about:blank",
        "title": "Precondition Failed",
        "status": 412,
        "detail": "The item has changed since the version given in If-Match.",
        "current_version": 3,
    }
    assert answer(errors.ValidationFailed([]))[1]["title"] == "Unprocessable Content"


def test_a_subclass_answers_as_its_nearest_listed_ancestor():
    class Gone(errors.NotFound):
        """Gone."""

    assert status_of(Gone()) == 404


def test_an_error_not_about_the_request_is_a_500_without_its_message():
    for error in (PermanentError("the model's internals"), InvalidModel("a path /srv/x")):
        status, body = answer(error)
        assert status == 500
        assert "internals" not in body["detail"] and "/srv" not in body["detail"]
