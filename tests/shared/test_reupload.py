"""A new file for an item voids the jobs still waiting for the old one, and
a job that ran on the old file does not write over the new one."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.filekinds import detect
from shared.inference.base import ModelOutput
from shared.models import DatasetItem, PostProcessorJob
from shared.services import items, jobs
from shared.storage import StagedFile
from tests.shared.factories import make_job

TEXT = detect(b"words\n")


def attach(item: DatasetItem, version) -> list[PostProcessorJob]:
    staged = StagedFile(key=uuid.uuid4().hex, size=6, sha256="0" * 64, head=b"words\n")
    with session_scope() as session:
        items.attach_file(
            session, item.user_id, item.dataset_id, version.id, item.id, staged, TEXT, "a.txt"
        )
    with session_scope() as session:
        return list(
            session.scalars(
                select(PostProcessorJob).where(PostProcessorJob.dataset_item_id == item.id)
            )
        )


def test_a_new_upload_replaces_the_jobs_still_pending(sent):
    old_job, item, version = make_job()

    [new_job] = attach(item, version)

    assert new_job.id != old_job.id
    assert new_job.status == "pending"
    assert [message.job_id for message in sent] == [str(new_job.id)]


def test_a_job_that_ran_on_the_old_file_does_not_write_over_the_new_one(sent):
    _job, item, version = make_job()
    [first] = attach(item, version)
    with session_scope() as session:
        claimed = jobs.claim_job(session, first.id)

    [_running, second] = sorted(attach(item, version), key=lambda job: job.created_at)
    with session_scope() as session:
        assert jobs.complete_job(session, claimed, ModelOutput(raw={"old": True}, text="stale"))

    with session_scope() as session:
        assert session.get_one(DatasetItem, item.id).text == ""
        assert session.get_one(PostProcessorJob, first.id).status == "completed"
        assert session.get_one(PostProcessorJob, second.id).status == "pending"
