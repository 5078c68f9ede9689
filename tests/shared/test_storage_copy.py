"""`itemflow storage copy`: an installation's files copied to a bucket on a
real S3 server (SeaweedFS) and back, each checked against its row's sha256,
resuming where an interrupted copy stopped."""

from __future__ import annotations

import hashlib
import os

import anyio

from shared.db import session_scope
from shared.services.storage_copy import StoredFile, copy_files, same_place, stored_files
from shared.storage.local import LocalStorage
from tests.shared.factories import add_item, new_version
from tests.shared.test_storage import chunks_of, s3_storage

MIB = 1024 * 1024


def stored_on(storage, *contents: bytes) -> list[StoredFile]:
    """Files staged in `storage`, as the rows pointing at them record them."""
    files = []
    for content in contents:
        staged = anyio.run(storage.stage, chunks_of(content), 100 * MIB)
        files.append(StoredFile(staged.key, staged.size, staged.sha256))
    return files


def read(storage, key: str) -> bytes:
    with storage.open(key) as stream:
        return stream.read()


def test_files_go_to_a_bucket_and_back_byte_exact(tmp_path, s3_server, s3_prefix, s3_credentials):
    local = LocalStorage(tmp_path / "files")
    bucket = s3_storage(s3_server, s3_prefix)
    contents = [b"a scan", os.urandom(9 * MIB), b""]  # one of several parts, one empty
    files = stored_on(local, *contents)
    done = []

    report = copy_files(files, local, bucket, done.append)

    assert (report.copied, report.skipped, report.ok) == (3, 0, True)
    assert done == [len(content) for content in contents]
    assert [read(bucket, file.key) for file in files] == contents
    assert s3_server.objects(s3_prefix) == {s3_prefix + file.key for file in files}

    back = LocalStorage(tmp_path / "back")
    report = copy_files(files, bucket, back)

    assert (report.copied, report.ok) == (3, True)
    assert [read(back, file.key) for file in files] == contents


def test_a_copy_run_again_resumes_where_it_stopped(tmp_path, s3_server, s3_prefix, s3_credentials):
    bucket = s3_storage(s3_server, s3_prefix)
    files = stored_on(bucket, b"first", b"second", b"third")
    target = LocalStorage(tmp_path / "target")
    copy_files(files[:1], bucket, target)
    # The second was cut short by an earlier run: half of it is there.
    (tmp_path / "target" / files[1].key).write_bytes(b"sec")

    report = copy_files(files, bucket, target)

    assert (report.copied, report.skipped) == (2, 1)
    assert read(target, files[1].key) == b"second"
    assert copy_files(files, bucket, target).skipped == 3


def test_a_file_that_is_not_what_its_row_says_is_not_copied(
    tmp_path, s3_server, s3_prefix, s3_credentials
):
    local = LocalStorage(tmp_path / "files")
    bucket = s3_storage(s3_server, s3_prefix)
    [good, changed, grown] = stored_on(local, b"kept as it was", b"changed", b"grown")
    (tmp_path / "files" / changed.key).write_bytes(b"CHANGED")  # same size, other bytes
    (tmp_path / "files" / grown.key).write_bytes(b"grown on disk")
    missing = StoredFile("0" * 32, 5, hashlib.sha256(b"gone!").hexdigest())

    report = copy_files([good, changed, grown, missing], local, bucket)

    assert report.copied == 1 and not report.ok
    assert report.mismatched == [changed.key, grown.key]
    assert report.missing == [missing.key]
    assert s3_server.objects(s3_prefix) == {s3_prefix + good.key}


def test_the_files_to_copy_are_those_rows_point_at():
    with session_scope() as session:
        version, _post_processor = new_version(session)
        item = add_item(session, version)
        item.file_key, item.file_size, item.file_sha256 = "f" * 32, 7, "e" * 64
        add_item(session, version)  # no file
        session.flush()
        files = stored_files(session)

    assert StoredFile("f" * 32, 7, "e" * 64) in files
    assert all(file.key for file in files)


def test_a_file_already_there_is_skipped_only_if_it_is_the_rows(tmp_path):
    source = LocalStorage(tmp_path / "source")
    target = LocalStorage(tmp_path / "target")
    [file] = stored_on(source, b"the real bytes")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / file.key).write_bytes(b"other  bytes!!")  # same size

    report = copy_files([file], source, target)

    assert (report.copied, report.skipped) == (1, 0)
    assert read(target, file.key) == b"the real bytes"


def test_a_copy_onto_the_same_folder_by_another_name_is_refused(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "files")
    source = LocalStorage(tmp_path / "files")

    assert same_place(source, LocalStorage(tmp_path / "link"))
    assert same_place(source, LocalStorage(tmp_path / "." / "files"))
    assert not same_place(source, LocalStorage(tmp_path / "elsewhere"))
