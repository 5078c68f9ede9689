"""Put a model's output where its post-processor wants it: the item's text,
its annotations, or both."""

from __future__ import annotations

import json
import logging
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.inference.base import ModelOutput, PostProcessorConfig
from shared.models import (
    Annotation,
    DatasetItem,
    DatasetSplit,
    DatasetVersion,
    Label,
    PostProcessorJob,
    item_splits,
    utcnow,
)

log = logging.getLogger("itemflow.jobs")


def apply(
    session: Session,
    job_id: uuid.UUID,
    item_id: uuid.UUID,
    file_key: str | None,
    config: PostProcessorConfig,
    output: ModelOutput,
) -> bool:
    """Write the output to the item, unless the item has a new file since the
    job started: then the output describes a file that is gone, and is kept
    in the job's result only. True when it was applied."""
    current_key = session.scalar(
        select(DatasetItem.file_key).where(DatasetItem.id == item_id).with_for_update()
    )
    if current_key != file_key:
        log.info("event=job.output_skipped job_id=%s item_id=%s reason=new_file", job_id, item_id)
        return False
    if config.output_target in ("text", "both") and output.text is not None:
        session.execute(
            update(DatasetItem)
            .where(DatasetItem.id == item_id)
            .values(text=output.text, version=DatasetItem.version + 1, updated_at=utcnow())
        )
    if config.output_target in ("annotations", "both"):
        _write_annotations(session, job_id, item_id, config, output)
    return True


def _write_annotations(
    session: Session,
    job_id: uuid.UUID,
    item_id: uuid.UUID,
    config: PostProcessorConfig,
    output: ModelOutput,
) -> None:
    item = session.get(DatasetItem, item_id)
    if item is None:
        return
    # What this post-processor wrote on this item before (an earlier run, or
    # the job of an earlier upload) is replaced; a person's annotations
    # (no job) and other post-processors' are left alone.
    same_post_processor = select(PostProcessorJob.id).where(
        PostProcessorJob.dataset_item_id == item_id,
        PostProcessorJob.post_processor_id == config.id,
    )
    session.execute(
        delete(Annotation).where(
            Annotation.item_id == item_id, Annotation.job_id.in_(same_post_processor)
        )
    )
    if config.auto_create_labels and output.predictions:
        # Jobs of one version finishing at once would each find a new label
        # missing and create it: the version's row, locked until the commit,
        # makes them take turns, and the next one reads the label the first
        # created. (SQLite's BEGIN IMMEDIATE already lets one writer in.)
        session.execute(
            select(DatasetVersion.id).where(DatasetVersion.id == item.version_id).with_for_update()
        )
    labels = {
        label.name.casefold(): label
        for label in session.scalars(select(Label).where(Label.version_id == item.version_id))
    }
    split_id = session.scalar(
        select(item_splits.c.split_id)
        .join(DatasetSplit, DatasetSplit.id == item_splits.c.split_id)
        .where(item_splits.c.item_id == item_id)
        .order_by(DatasetSplit.created_at, DatasetSplit.id)
        .limit(1)
    )
    for prediction in output.predictions:
        if prediction.score < config.confidence_threshold:
            continue
        label = labels.get(prediction.label.casefold())
        if label is None:
            if not config.auto_create_labels:
                continue
            label = Label(
                version_id=item.version_id,
                user_id=item.user_id,
                name=prediction.label,
                index=len(labels),
            )
            session.add(label)
            session.flush()
            labels[prediction.label.casefold()] = label
        session.add(
            Annotation(
                version_id=item.version_id,
                item_id=item_id,
                label_id=label.id,
                split_id=split_id,
                coordinates=json.dumps(prediction.coordinates) if prediction.coordinates else "",
                user_id=item.user_id,
                job_id=job_id,
            )
        )
    session.flush()
