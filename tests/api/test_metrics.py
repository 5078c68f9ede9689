"""GET /metrics: who may read it, and what the API itself puts in it (the
workers' side is in tests/worker/test_jobs.py)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from shared.broker import celery_app
from shared.metrics import QueuesCollector
from shared.settings import get_settings
from tests.builders import (
    make_dataset,
    make_item,
    make_quick_post_processor,
    ok,
    problem,
    scrape_metrics,
    upload,
)


def test_the_jobs_are_counted_by_status_and_model_type(client, api_url):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    # No series before its first job: a model type appears with its jobs.
    before = scrape_metrics(api_url).get("itemflow_jobs", [])
    for _ in range(3):
        ok(upload(client, dataset, make_item(client, dataset), b"text"))

    after = scrape_metrics(api_url)["itemflow_jobs"]

    def total(series):
        return sum(value for labels, value in series if labels["model_type"] == "classification")

    # No worker runs here: the three are pending (each status has its series).
    assert total(after) - total(before) == 3
    statuses = {labels["status"] for labels, _ in after if labels["model_type"] == "classification"}
    assert statuses == {"pending", "processing", "completed", "failed"}


def test_messages_waiting_in_a_queue_are_counted():
    # Queues of their own, which no test worker reads, on the run's broker.
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    queue = f"{name}.classification"
    with celery_app().connection_for_write() as connection:
        waiting = connection.SimpleQueue(queue)
        for number in range(3):
            waiting.put({"n": number})
        try:
            [family] = QueuesCollector(name).collect()
            lengths = {sample.labels["queue"]: sample.value for sample in family.samples}
            assert lengths[queue] == 3
            assert lengths[f"{name}.ocr"] == 0  # never declared: nothing waits
        finally:
            waiting.clear()
            waiting.close()


def test_each_queue_has_its_length(api_url):
    series = scrape_metrics(api_url)["itemflow_queue_length"]
    lengths = {labels["queue"]: value for labels, value in series}

    queue = get_settings().queue_name
    assert {f"{queue}.classification", f"{queue}.ocr", f"{queue}.external"} <= set(lengths)
    assert all(value >= 0 for value in lengths.values())


def test_requests_are_timed_by_route_template_not_by_path(client, api_url):
    dataset = make_dataset(client)
    ok(client.get(f"/datasets/{dataset['id']}"))
    problem(client.get("/no/such/route"), 404)

    counts = {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in scrape_metrics(api_url)["itemflow_http_request_duration_seconds_count"]
    }

    assert counts[("/api/v1/datasets/{dataset_id}", "GET", "200")] >= 1
    assert counts[("unmatched", "GET", "404")] >= 1
    assert not [route for route, _, _ in counts if dataset["id"] in route]


@pytest.fixture
def from_afar():
    """The API in this process, asked from an address that is not loopback."""
    with TestClient(create_app(), client=("203.0.113.9", 40000)) as remote:
        yield remote


def test_from_afar_it_needs_the_token(from_afar, monkeypatch):
    body = problem(from_afar.get("/metrics"), 403)
    assert "METRICS_TOKEN" in body["detail"]

    monkeypatch.setattr(get_settings(), "metrics_token", "a-long-scrape-token")
    problem(from_afar.get("/metrics"), 401)
    problem(from_afar.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    answer = from_afar.get("/metrics", headers={"Authorization": "Bearer a-long-scrape-token"})
    assert answer.status_code == 200
    assert "\nitemflow_queue_length{" in answer.text


def test_a_request_through_a_proxy_is_not_this_machines_own(api_url, monkeypatch):
    # As a proxy on this machine passes a client's request on, whatever
    # address it (or uvicorn's reading of its headers) gives the client.
    for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}):
        problem(httpx.get(api_url + "/metrics", headers=header), 403)
    monkeypatch.setattr(get_settings(), "metrics_token", "a-long-scrape-token")
    through = {"X-Forwarded-For": "198.51.100.7", "Authorization": "Bearer a-long-scrape-token"}
    assert httpx.get(api_url + "/metrics", headers=through).status_code == 200


def test_an_ipv4_client_on_an_ipv6_socket_is_loopback():
    with TestClient(create_app(), client=("::ffff:127.0.0.1", 40000)) as local:
        assert local.get("/metrics").status_code == 200
