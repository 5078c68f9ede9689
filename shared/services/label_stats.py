"""How a split's items are labelled: per label of the version, its
annotations and the items they are on; and the split's items with none."""

from __future__ import annotations

import uuid

from sqlalchemy import distinct, exists, func, select
from sqlalchemy.orm import Session

from shared.models import Annotation, DatasetSplit, Label, item_splits
from shared.schemas import LabelStat
from shared.services.scope import get_child, get_version


def label_stats(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    split_id: uuid.UUID,
) -> list[LabelStat]:
    get_version(session, user_id, dataset_id, version_id)
    get_child(session, DatasetSplit, user_id, version_id, split_id)
    in_split = item_splits.c.split_id == split_id
    used = {
        label_id: (annotations, items)
        for label_id, annotations, items in session.execute(
            select(
                Annotation.label_id,
                func.count(Annotation.id),
                func.count(distinct(Annotation.item_id)),
            )
            .join(item_splits, item_splits.c.item_id == Annotation.item_id)
            .where(in_split, Annotation.version_id == version_id)
            .group_by(Annotation.label_id)
        )
    }
    labels = session.scalars(
        select(Label.id)
        .where(Label.version_id == version_id)
        .order_by(Label.index, Label.created_at)
    ).all()
    unlabelled = session.scalar(
        select(func.count())
        .select_from(item_splits)
        .where(in_split, ~exists().where(Annotation.item_id == item_splits.c.item_id))
    )
    rows = []
    for label_id in labels:
        annotations, items = used.get(label_id, (0, 0))
        rows.append(
            LabelStat(
                label_id=str(label_id),
                split_id=str(split_id),
                count=items,
                annotation_count=annotations,
                item_count=items,
            )
        )
    rows.append(
        LabelStat(
            label_id="",
            split_id=str(split_id),
            count=unlabelled or 0,
            annotation_count=0,
            item_count=unlabelled or 0,
        )
    )
    return rows
