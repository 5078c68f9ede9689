"""Dataset items: create, read with job counts, update, attach a file, delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from shared.errors import NotFound, PreconditionFailed, ValidationFailed
from shared.filekinds import FileKind
from shared.models import (
    DatasetItem,
    DatasetSplit,
    DatasetVersion,
    JobStatus,
    PostProcessorJob,
    utcnow,
)
from shared.schemas import ItemCreate, JobCounts, SplitRef
from shared.services import files, jobs
from shared.services.scope import Page, get_item, get_version, reloaded
from shared.storage import StagedFile

_ITEM_LOAD = (selectinload(DatasetItem.splits), selectinload(DatasetItem.annotations))


@dataclass(frozen=True)
class StoredFile:
    key: str
    media_type: str
    size: int
    name: str
    sha256: str
    extension: str


def list_items(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    page: Page,
    split_id: uuid.UUID | None = None,
    job_status: JobStatus | None = None,
) -> tuple[list[tuple[DatasetItem, JobCounts]], int]:
    """A page of the version's items with their job counts, and how many
    items there are in all: in two queries (the page with its splits, counts
    and total; its annotations), or three for a page past the end."""
    conditions = [DatasetItem.version_id == version_id]
    if split_id is not None:
        conditions.append(DatasetItem.splits.any(DatasetSplit.id == split_id))
    if job_status is not None:
        conditions.append(
            exists().where(
                PostProcessorJob.dataset_item_id == DatasetItem.id,
                PostProcessorJob.status == job_status.value,
            )
        )
    order = (DatasetItem.created_at, DatasetItem.id)
    total = select(func.count()).select_from(DatasetItem).where(*conditions).scalar_subquery()
    # The page's ids first, from the index alone: a deep page skips its
    # offset there rather than reading each skipped row.
    page_ids = (
        select(DatasetItem.id)
        .where(*conditions)
        .order_by(*order)
        .limit(page.size)
        .offset(page.size * page.index)
    )
    rows = session.execute(
        select(DatasetItem, total, *_job_count_columns())
        # Only a version of the user's: a row of this join is the check.
        .join(
            DatasetVersion,
            (DatasetVersion.id == DatasetItem.version_id)
            & (DatasetVersion.user_id == user_id)
            & (DatasetVersion.dataset_id == dataset_id),
        )
        .where(DatasetItem.id.in_(page_ids))
        .order_by(*order)
        .options(joinedload(DatasetItem.splits), selectinload(DatasetItem.annotations))
    ).unique()
    listed: list[tuple[DatasetItem, JobCounts]] = []
    in_all = 0
    for item, total_of_all, *by_status in rows:
        in_all = total_of_all
        listed.append((item, _job_counts(by_status)))
    if not listed:
        # No row says whether the version is the user's, nor how many items
        # it has: asked apart, for an empty page only.
        get_version(session, user_id, dataset_id, version_id)
        in_all = session.scalar(select(total)) or 0
    return listed, in_all


def job_counts(session: Session, item_id: uuid.UUID) -> JobCounts:
    """An item's job counts, counted as the items list counts them."""
    row = session.execute(
        select(*_job_count_columns()).select_from(DatasetItem).where(DatasetItem.id == item_id)
    ).one()
    return _job_counts(row)


def _job_count_columns() -> list[Any]:
    """An item's jobs in each status, correlated to the query's item: from
    the (dataset_item_id, status) index alone."""
    return [
        select(func.count())
        .where(
            PostProcessorJob.dataset_item_id == DatasetItem.id, PostProcessorJob.status == status
        )
        .scalar_subquery()
        for status in JobStatus
    ]


def _job_counts(by_status: Sequence[int]) -> JobCounts:
    """JobCounts of the counts `_job_count_columns` gave, in their order."""
    by_name = {status.value: count for status, count in zip(JobStatus, by_status, strict=True)}
    return JobCounts(**by_name, total=sum(by_status))


def load_item(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
) -> DatasetItem:
    get_item(session, user_id, dataset_id, version_id, item_id)
    return reloaded(session, DatasetItem, item_id, *_ITEM_LOAD)


def create_item(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    body: ItemCreate,
) -> DatasetItem:
    version = get_version(session, user_id, dataset_id, version_id)
    if "splits" in body.model_fields_set:
        splits = _splits_of_version(session, version_id, body.splits)
    elif version.default_split:
        # Stored canonical and cleared with its split; still, a missing
        # default split must not make items impossible to create.
        default = session.get(DatasetSplit, uuid.UUID(version.default_split))
        splits = [default] if default is not None else []
    else:
        splits = []
    item = DatasetItem(
        version_id=version_id,
        dataset_id=dataset_id,
        user_id=user_id,
        **body.model_dump(exclude={"splits"}),
    )
    item.splits = splits
    session.add(item)
    session.flush()
    return reloaded(session, DatasetItem, item.id, *_ITEM_LOAD)


def update_item(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
    body: ItemCreate,
    if_match: int | None,
) -> DatasetItem:
    item = get_item(session, user_id, dataset_id, version_id, item_id)
    changes = body.changes()
    splits = changes.pop("splits", None)
    _bump_version(session, item, if_match, **changes)
    if splits is not None:
        item.splits = _splits_of_version(session, version_id, body.splits)
        session.flush()
    return reloaded(session, DatasetItem, item_id, *_ITEM_LOAD)


def _bump_version(
    session: Session, item: DatasetItem, if_match: int | None, **values: object
) -> None:
    """Write `values` and add 1 to the item's version, only if the version is
    still `if_match` (when given): a compare-and-set in one UPDATE."""
    statement = update(DatasetItem).where(DatasetItem.id == item.id)
    if if_match is not None:
        statement = statement.where(DatasetItem.version == if_match)
    statement = statement.values(**values, version=DatasetItem.version + 1, updated_at=utcnow())
    if session.execute(statement.returning(DatasetItem.id)).one_or_none() is None:
        current = session.scalar(select(DatasetItem.version).where(DatasetItem.id == item.id))
        raise PreconditionFailed(
            f"The item is at version {current}, not {if_match}.", current_version=current
        )
    session.expire(item)


def _splits_of_version(
    session: Session, version_id: uuid.UUID, refs: list[SplitRef]
) -> list[DatasetSplit]:
    wanted = list(dict.fromkeys(ref.id for ref in refs))
    found = {
        split.id: split
        for split in session.scalars(
            select(DatasetSplit).where(
                DatasetSplit.id.in_(wanted), DatasetSplit.version_id == version_id
            )
        )
    }
    errors = [
        {"loc": ["body", "splits", index, "id"], "msg": "not a split of this version"}
        for index, split_id in enumerate(wanted)
        if split_id not in found
    ]
    if errors:
        raise ValidationFailed(errors)
    return [found[split_id] for split_id in wanted]


def attach_file(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
    staged: StagedFile,
    kind: FileKind,
    file_name: str,
    if_match: int | None = None,
) -> DatasetItem:
    """Make a staged upload the item's file and start its post-processors.

    The item, its new jobs and (after commit) their messages: one
    transaction, so a job exists exactly when its file does.
    """
    # Locked, so that two uploads at once cannot both read the same old file
    # as theirs to delete and leave the other's file orphaned.
    item = get_item(session, user_id, dataset_id, version_id, item_id, for_update=True)
    old_key = item.file_key
    # Jobs still waiting for the old file are void; those already running
    # finish, but their output is not applied to the new file (see outputs).
    session.execute(
        delete(PostProcessorJob).where(
            PostProcessorJob.dataset_item_id == item.id,
            PostProcessorJob.status == JobStatus.PENDING.value,
        )
    )
    # Before the version bump, which expires the item (reading it again
    # would cost a query): a bump refused by If-Match rolls them back.
    jobs.create_jobs_for_upload(session, item)
    _bump_version(
        session,
        item,
        if_match,
        file_key=staged.key,
        file_size=staged.size,
        file_sha256=staged.sha256,
        file_media_type=kind.media_type,
        file_name=file_name,
        extension=kind.extension,
    )
    if old_key and old_key != staged.key:
        files.delete_after_commit(session, [old_key])
    # Found above, under a lock: only read again for the answer.
    return reloaded(session, DatasetItem, item_id, *_ITEM_LOAD)


def stored_file(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
) -> StoredFile:
    item = get_item(session, user_id, dataset_id, version_id, item_id)
    if not item.file_key:
        raise NotFound("The item has no file.")
    return StoredFile(
        key=item.file_key,
        media_type=item.file_media_type,
        size=item.file_size,
        name=item.file_name or f"{item.id}.{item.extension}",
        sha256=item.file_sha256,
        extension=item.extension,
    )


def delete_item(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    split_id: uuid.UUID,
    item_id: uuid.UUID,
) -> DatasetItem:
    """Delete an item reached through one of its splits, with its file,
    annotations and jobs. Messages still queued for its jobs find no job
    and are dropped by the worker."""
    # Locked, as an upload locks it: a new file attached meanwhile would be
    # left out of the removal.
    get_item(session, user_id, dataset_id, version_id, item_id, for_update=True)
    item = load_item(session, user_id, dataset_id, version_id, item_id)
    if split_id not in {split.id for split in item.splits}:
        raise NotFound("Item not found in this split.")
    if item.file_key:
        files.delete_after_commit(session, [item.file_key])
    session.delete(item)
    session.flush()
    return item
