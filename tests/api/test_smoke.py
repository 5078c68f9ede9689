from tests.builders import make_dataset, ok


def test_healthz(api_url, client):
    assert ok(client.get(api_url + "/healthz")) == {"status": "ok"}


def test_create_and_get_dataset(client):
    dataset = make_dataset(client, default_splits=True)
    assert [split["name"] for split in dataset["versions"][0]["splits"]] == [
        "train",
        "valid",
        "test",
    ]
    assert ok(client.get(f"/datasets/{dataset['id']}")) == dataset
