"""Item states: a per-(item, version) workflow state under the items'
If-Match rules, 0 meaning never written."""

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.builders import item_path, make_dataset, make_item, ok, problem, version_path


def state_path(dataset, item):
    return item_path(dataset, item) + "/state"


def test_a_state_never_written_reads_as_a_scaffold_at_version_0(client, dataset, item):
    state = ok(client.get(state_path(dataset, item)))

    assert state["version"] == 0
    assert (state["state"], state["item_id"]) == ("", item["id"])
    assert state["dataset_version_id"] == dataset["versions"][0]["id"]
    assert state["created_at"] is None and state["updated_at"] is None
    assert ok(client.get(version_path(dataset) + "/states")) == []


def test_if_match_0_creates_then_1_updates_and_the_id_stays(client, dataset, item):
    scaffold = ok(client.get(state_path(dataset, item)))

    first = ok(
        client.put(
            state_path(dataset, item), json={"state": "labelled"}, headers={"If-Match": '"0"'}
        )
    )
    second = ok(
        client.put(
            state_path(dataset, item), json={"state": "reviewed"}, headers={"If-Match": '"1"'}
        )
    )

    assert (first["state"], first["version"]) == ("labelled", 1)
    assert (second["state"], second["version"]) == ("reviewed", 2)
    assert scaffold["id"] == first["id"] == second["id"]
    assert second["created_at"].endswith("Z") and second["updated_at"] >= first["updated_at"]
    assert ok(client.get(state_path(dataset, item))) == second
    assert ok(client.get(item_path(dataset, item)))["version"] == item["version"], (
        "a state is not a change of the item"
    )


def test_a_stale_if_match_is_412_with_current_version_and_writes_nothing(client, dataset, item):
    ok(client.put(state_path(dataset, item), json={"state": "a"}, headers={"If-Match": '"0"'}))

    for stale in ('"0"', '"2"', "garbage"):
        body = problem(
            client.put(
                state_path(dataset, item), json={"state": "lost"}, headers={"If-Match": stale}
            ),
            412,
        )
        assert body["current_version"] == 1

    assert ok(client.get(state_path(dataset, item)))["state"] == "a"


def test_if_match_above_0_on_a_state_never_written_is_412_at_0(client, dataset, item):
    body = problem(
        client.put(state_path(dataset, item), json={"state": "x"}, headers={"If-Match": '"1"'}),
        412,
    )
    assert body["current_version"] == 0
    assert ok(client.get(state_path(dataset, item)))["version"] == 0


def test_without_if_match_the_write_is_unconditional_and_null_fields_are_ignored(
    client, dataset, item
):
    ok(client.put(state_path(dataset, item), json={"state": "a", "name": "step"}))
    written = ok(client.put(state_path(dataset, item), json={"state": "b", "name": None}))

    assert (written["state"], written["name"], written["version"]) == ("b", "step", 2)


def test_of_many_creating_at_once_with_if_match_0_one_wins(client, dataset, item):
    headers = {**client.headers, "If-Match": '"0"'}

    def put(n: int) -> int:
        with httpx.Client(base_url=client.base_url, headers=headers) as racer:
            return racer.put(state_path(dataset, item), json={"state": f"s{n}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(8)))

    assert sorted(statuses) == [200] + [412] * 7
    assert ok(client.get(state_path(dataset, item)))["version"] == 1


def test_the_version_lists_its_written_states_paged(client, dataset):
    items = [make_item(client, dataset, name=f"i{n}") for n in range(3)]
    for n, item in enumerate(items[:2]):
        ok(client.put(state_path(dataset, item), json={"state": f"s{n}"}))

    listed = client.get(version_path(dataset) + "/states", params={"page_size": 1})

    assert listed.headers["x-total-count"] == "2"
    everything = ok(client.get(version_path(dataset) + "/states"))
    assert [(s["item_id"], s["state"]) for s in everything] == [
        (items[0]["id"], "s0"),
        (items[1]["id"], "s1"),
    ]
    assert ok(listed) == everything[:1]


def test_another_users_item_state_is_404(client, other_client, dataset, item):
    ok(client.put(state_path(dataset, item), json={"state": "mine"}))

    problem(other_client.get(state_path(dataset, item)), 404)
    problem(other_client.put(state_path(dataset, item), json={"state": "theirs"}), 404)
    problem(other_client.get(version_path(dataset) + "/states"), 404)
    assert ok(client.get(state_path(dataset, item)))["state"] == "mine"


def test_a_deleted_items_state_goes_with_it(client, dataset):
    dataset = make_dataset(client, default_splits=True)
    item = make_item(client, dataset)
    ok(client.put(state_path(dataset, item), json={"state": "x"}))
    split = item["splits"][0]["id"]

    ok(client.delete(f"{version_path(dataset)}/splits/{split}/items/{item['id']}"))

    assert ok(client.get(version_path(dataset) + "/states")) == []
