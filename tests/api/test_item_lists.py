"""Listing a version's items: a plain array with X-Total-Count, paging, and
the split_id and job_status filters."""

from tests.builders import (
    error_locs,
    first_version,
    make_dataset,
    make_item,
    make_quick_post_processor,
    ok,
    problem,
    upload,
    version_path,
)

NO_JOBS = {"pending": 0, "processing": 0, "completed": 0, "failed": 0, "total": 0}


def test_list_is_a_plain_array_with_job_status_and_x_total_count(client):
    dataset = make_dataset(client)
    created = [make_item(client, dataset, name=f"i{n}") for n in range(3)]

    response = client.get(version_path(dataset) + "/items")

    listed = ok(response)
    assert response.headers["X-Total-Count"] == "3"
    assert [item.pop("job_status") for item in listed] == [NO_JOBS] * 3
    assert listed == created


def test_list_pages(client):
    dataset = make_dataset(client)
    created = [make_item(client, dataset, name=f"i{n}")["id"] for n in range(3)]

    response = client.get(
        version_path(dataset) + "/items", params={"page_size": 2, "page_count": 1}
    )

    assert [item["id"] for item in ok(response)] == created[2:]
    assert response.headers["X-Total-Count"] == "3"
    problem(client.get(version_path(dataset) + "/items", params={"page_size": 0}), 422)


def test_list_filters_by_split(client):
    dataset = make_dataset(client, default_splits=True)
    train, valid, _test = first_version(dataset)["splits"]
    in_train = make_item(client, dataset)
    in_valid = make_item(client, dataset, splits=[{"id": valid["id"]}])
    in_both = make_item(client, dataset, splits=[{"id": train["id"]}, {"id": valid["id"]}])

    response = client.get(version_path(dataset) + "/items", params={"split_id": valid["id"]})

    assert [item["id"] for item in ok(response)] == [in_valid["id"], in_both["id"]]
    assert response.headers["X-Total-Count"] == "2"
    by_train = ok(client.get(version_path(dataset) + "/items", params={"split_id": train["id"]}))
    assert [item["id"] for item in by_train] == [in_train["id"], in_both["id"]]


def test_list_with_a_malformed_split_id_is_422(client):
    dataset = make_dataset(client)

    answer = problem(client.get(version_path(dataset) + "/items", params={"split_id": "x"}), 422)

    assert error_locs(answer) == [["query", "split_id"]]


def test_list_filters_by_job_status(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    with_jobs = make_item(client, dataset, name="with jobs")
    without_jobs = make_item(client, dataset, name="without")
    ok(upload(client, dataset, with_jobs, b"some text"))

    found = {}
    # A job only moves forward (pending, processing, completed: the test model
    # never fails), so asking in that order finds the item at least once,
    # whether or not a worker is running.
    for status in ("pending", "processing", "completed", "failed"):
        response = client.get(version_path(dataset) + "/items", params={"job_status": status})
        found[status] = [item["id"] for item in ok(response)]
        assert response.headers["X-Total-Count"] == str(len(found[status]))

    assert found["failed"] == []
    assert without_jobs["id"] not in sum(found.values(), [])
    assert with_jobs["id"] in sum(found.values(), [])
    for item in ok(client.get(version_path(dataset) + "/items")):
        expected_total = 1 if item["id"] == with_jobs["id"] else 0
        assert item["job_status"]["total"] == expected_total, item


def test_list_with_an_unknown_job_status_is_422(client):
    dataset = make_dataset(client)

    answer = problem(
        client.get(version_path(dataset) + "/items", params={"job_status": "done"}), 422
    )

    assert error_locs(answer) == [["query", "job_status"]]
