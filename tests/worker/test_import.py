"""`itemflow import`: a folder or a CSV's files uploaded as items through
the real API, resumed without uploading a file twice, and waited for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import make_dataset, make_quick_post_processor, ok, version_path

pytestmark = pytest.mark.usefixtures("worker")
ROOT = Path(__file__).resolve().parents[2]


def run_import(api_url, client, *args):
    key = client.headers["Authorization"].removeprefix("Bearer ")
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "import", *args, "--url", api_url, "--api-key", key],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def items_by_name(client, dataset):
    items = ok(client.get(version_path(dataset) + "/items", params={"page_size": 1000}))
    found: dict[str, list[dict]] = {}
    for item in items:
        found.setdefault(item["name"], []).append(item)
    return found


def jobs_of(client, dataset):
    return ok(client.get(f"/datasets/{dataset['id']}/post-processors/jobs?page_size=1000"))


def test_a_folder_is_imported_then_resumed_without_uploading_twice(client, api_url, tmp_path):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    for number in range(12):
        (folder / f"note{number:02}.txt").write_text(f"note number {number}\n")
    (folder / "sub" / "deep.txt").write_text("deeper down\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 4)

    into = ["--dataset", dataset["id"]]
    first = run_import(api_url, client, str(folder), *into, "--split", "train", "--wait")

    assert first.returncode == 1, first.stderr  # refused files are listed, the rest go in
    assert "uploaded 13, already there 0, refused 2" in first.stdout
    assert "refused: empty.txt: the file is empty" in first.stderr
    assert "refused: blob.bin: 415" in first.stderr
    assert "jobs: completed 13, failed 0" in first.stdout
    items = items_by_name(client, dataset)
    # No item is left of the refused files; every item is in the split.
    assert set(items) == {f"note{n:02}.txt" for n in range(12)} | {"sub/deep.txt"}
    assert {split["name"] for [item] in items.values() for split in item["splits"]} == {"train"}
    assert len(jobs_of(client, dataset)) == 13

    again = run_import(api_url, client, str(folder), *into, "--split", "train")

    assert "uploaded 0, already there 13, refused 2" in again.stdout, again.stderr
    assert len(jobs_of(client, dataset)) == 13  # nothing uploaded twice, no job ran again

    (folder / "new.txt").write_text("a new one\n")
    (folder / "note00.txt").write_text("changed since\n")
    third = run_import(api_url, client, str(folder), *into)

    assert "uploaded 2, already there 12, refused 2" in third.stdout, third.stderr
    # A changed file is a new item beside the old one, which keeps its file.
    assert len(items_by_name(client, dataset)["note00.txt"]) == 2


def test_a_csv_names_the_files_their_items_and_splits(client, api_url, tmp_path):
    dataset = make_dataset(client)
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "b.txt").write_text("second\n")
    table = tmp_path / "list.csv"
    table.write_text("file,name,split\na.txt,alpha,train\nb.txt,,val\nmissing.txt,gone,\n")

    done = run_import(api_url, client, str(table), "--dataset", dataset["id"])

    assert "uploaded 2, already there 0, refused 1" in done.stdout, done.stderr
    assert "refused: gone: cannot read it" in done.stderr
    items = items_by_name(client, dataset)
    assert {name: [s["name"] for s in item["splits"]] for name, [item] in items.items()} == {
        "alpha": ["train"],
        "b.txt": ["val"],
    }


def test_a_dataset_that_is_not_there_stops_it_at_once(client, api_url, tmp_path):
    (tmp_path / "a.txt").write_text("first\n")

    nowhere = "00000000-0000-4000-8000-000000000000"
    done = run_import(api_url, client, str(tmp_path), "--dataset", nowhere)

    assert done.returncode == 1
    assert "404" in done.stderr and "uploaded" not in done.stdout
