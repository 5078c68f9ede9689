"""Optimistic concurrency on items: every write adds 1 to `version`, and
If-Match: "N" applies a write only while the item is still at version N."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.builders import item_path, make_dataset, make_item, ok, problem


def test_put_without_if_match_is_unconditional(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    for name in ("a", "b", "c"):
        ok(client.put(item_path(dataset, item), json={"name": name}))

    updated = ok(client.put(item_path(dataset, item), json={"name": "last"}))

    assert (updated["name"], updated["version"]) == ("last", 5)


def test_if_match_with_the_current_version_applies(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)

    updated = ok(
        client.put(item_path(dataset, item), json={"name": "a"}, headers={"If-Match": '"1"'})
    )
    assert updated["version"] == 2
    again = ok(
        client.put(item_path(dataset, item), json={"name": "b"}, headers={"If-Match": '"2"'})
    )
    assert (again["name"], again["version"]) == ("b", 3)


@pytest.mark.parametrize("stale", ['"1"', '"7"', "garbage"])
def test_if_match_with_another_version_is_412_with_current_version(client, stale):
    dataset = make_dataset(client)
    item = make_item(client, dataset, name="before")
    ok(client.put(item_path(dataset, item), json={"text": "moved on"}))

    response = client.put(
        item_path(dataset, item), json={"name": "lost"}, headers={"If-Match": stale}
    )

    body = problem(response, 412)
    assert body["current_version"] == 2
    got = ok(client.get(item_path(dataset, item)))
    assert (got["name"], got["version"]) == ("before", 2), "nothing was written"


def test_if_match_star_matches_any_version(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    ok(client.put(item_path(dataset, item), json={"name": "a"}))

    updated = ok(
        client.put(item_path(dataset, item), json={"name": "b"}, headers={"If-Match": "*"})
    )

    assert (updated["name"], updated["version"]) == ("b", 3)


def test_if_match_with_a_huge_version_is_412(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)

    response = client.put(
        item_path(dataset, item), json={"name": "x"}, headers={"If-Match": '"99999999999999999999"'}
    )

    assert problem(response, 412)["current_version"] == 1


def test_concurrent_writes_with_the_same_if_match_let_one_win(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)

    def write(name):
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=30) as http:
            return http.put(
                item_path(dataset, item), json={"name": name}, headers={"If-Match": '"1"'}
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(write, [f"writer {n}" for n in range(6)]))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 5, [response.text for response in responses]
    [winner] = [response.json() for response in responses if response.status_code == 200]
    got = ok(client.get(item_path(dataset, item)))
    assert (got["name"], got["version"]) == (winner["name"], 2)
