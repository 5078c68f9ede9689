"""Backfill without a worker (the messages are kept, not sent): the jobs a
run makes stay pending, so what a second run does beside them is seen
exactly."""

import pytest

from tests.builders import (
    make_dataset,
    make_item,
    make_quick_post_processor,
    ok,
    problem,
    version_path,
)
from tests.fixtures import wait_until

pytestmark = pytest.mark.usefixtures("sent")


def run(client, dataset, post_processor, **body):
    path = f"/datasets/{dataset['id']}/post-processors/{post_processor['id']}/run"
    return client.post(path, json=body)


def jobs_of(client, dataset):
    return ok(client.get(f"/datasets/{dataset['id']}/post-processors/jobs?page_size=1000"))


def test_a_run_makes_a_job_per_item_and_none_beside_a_pending_one(client, sent):
    dataset = make_dataset(client)
    items = [make_item(client, dataset, name=f"i{n}", text=f"text {n}") for n in range(7)]
    post_processor = make_quick_post_processor(client, dataset)

    first = ok(run(client, dataset, post_processor))
    again = ok(run(client, dataset, post_processor, items="all"))

    assert first == {"created": 7, "skipped": 0, "next": "", "remaining": 0}
    assert again == {"created": 0, "skipped": 7, "next": "", "remaining": 0}
    jobs = jobs_of(client, dataset)
    assert sorted(job["dataset_item_id"] for job in jobs) == sorted(i["id"] for i in items)
    assert {job["status"] for job in jobs} == {"pending"}
    assert wait_until(lambda: len(sent) == 7, 5, "the jobs' messages")


def test_limit_and_next_walk_the_items_in_pages(client):
    dataset = make_dataset(client)
    for n in range(5):
        make_item(client, dataset, name=f"i{n}")
    post_processor = make_quick_post_processor(client, dataset)

    pages = [ok(run(client, dataset, post_processor, limit=2))]
    while pages[-1]["next"]:
        pages.append(ok(run(client, dataset, post_processor, limit=2, after=pages[-1]["next"])))

    assert [(page["created"], page["remaining"]) for page in pages] == [(2, 3), (2, 1), (1, 0)]
    assert len(jobs_of(client, dataset)) == 5


def test_version_and_split_filters(client):
    dataset = make_dataset(client, default_splits=True)
    train, valid, _ = dataset["versions"][0]["splits"]
    make_item(client, dataset, splits=[{"id": train["id"]}])
    in_valid = make_item(client, dataset, splits=[{"id": valid["id"]}])
    post_processor = make_quick_post_processor(client, dataset)
    version_id = dataset["versions"][0]["id"]

    done = ok(run(client, dataset, post_processor, version_id=version_id, split_id=valid["id"]))

    assert done["created"] == 1
    assert [job["dataset_item_id"] for job in jobs_of(client, dataset)] == [in_valid["id"]]


def test_bad_input_and_other_users(client, other_client):
    dataset = make_dataset(client)
    post_processor = make_quick_post_processor(client, dataset)
    other = make_dataset(client, default_splits=True)

    problem(run(client, dataset, post_processor, items="some"), 422)
    problem(run(client, dataset, post_processor, after="not a cursor"), 422)
    split = other["versions"][0]["splits"][0]["id"]
    problem(run(client, dataset, post_processor, split_id=split), 404)
    problem(run(other_client, dataset, post_processor), 404)
    assert jobs_of(client, dataset) == []


def test_a_failed_job_is_not_retried_beside_the_one_a_run_made(client):
    from tests.api.test_post_processor_jobs import fail_job

    dataset = make_dataset(client)
    item = make_item(client, dataset)
    post_processor = make_quick_post_processor(client, dataset)
    ok(run(client, dataset, post_processor))
    [failed] = jobs_of(client, dataset)
    fail_job(failed["id"])

    # A failed job is not live: the run makes the item another.
    assert ok(run(client, dataset, post_processor))["created"] == 1
    single = client.post(f"{version_path(dataset)}/items/{item['id']}/jobs/{failed['id']}/retry")
    bulk = ok(
        client.post(
            f"/datasets/{dataset['id']}/post-processors/jobs/retry", json={"status": "failed"}
        )
    )

    assert "pending or running" in problem(single, 409)["detail"]
    assert bulk == {"retried": 0, "skipped": 0, "busy": 1}
    statuses = sorted(job["status"] for job in jobs_of(client, dataset))
    assert statuses == ["failed", "pending"]
