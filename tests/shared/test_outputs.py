"""Where a job's output lands: the item's text, its annotations, or both."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from shared.db import session_scope
from shared.inference.base import ModelOutput, PostProcessorConfig, Prediction
from shared.models import Annotation, DatasetItem, DatasetSplit, Label, PostProcessorJob
from shared.services import outputs
from tests.shared.factories import add_item, add_job, make_job

OUTPUT = ModelOutput(
    raw={},
    text="a cat on a mat",
    predictions=[
        Prediction("cat", 0.9, {"x": 1, "y": 2, "width": 3, "height": 4}),
        Prediction("mat", 0.3),
    ],
)


def config(job: PostProcessorJob, **fields) -> PostProcessorConfig:
    return PostProcessorConfig(id=job.post_processor_id, name="p", model_type="detection", **fields)


def apply(job, item, **fields):
    with session_scope() as session:
        return outputs.apply(session, job.id, item.id, None, config(job, **fields), OUTPUT)


def annotations_of(item):
    with session_scope() as session:
        rows = session.execute(
            select(Annotation, Label.name)
            .join(Label, Label.id == Annotation.label_id)
            .where(Annotation.item_id == item.id)
            .order_by(Label.name)
        )
        return [(name, annotation.coordinates, annotation.job_id) for annotation, name in rows]


def test_text_target_writes_the_text_and_bumps_the_version():
    job, item, _version = make_job()

    assert apply(job, item, output_target="text")

    with session_scope() as session:
        stored = session.get_one(DatasetItem, item.id)
        assert (stored.text, stored.version) == ("a cat on a mat", 2)
    assert annotations_of(item) == []


def test_annotations_target_creates_labels_only_when_asked_and_drops_low_scores():
    job, item, version = make_job()

    apply(job, item, output_target="annotations", confidence_threshold=0.5)
    assert annotations_of(item) == []  # no labels, none created

    apply(job, item, output_target="annotations", confidence_threshold=0.5, auto_create_labels=True)
    [(name, coordinates, job_id)] = annotations_of(item)
    assert (name, job_id) == ("cat", job.id)
    assert json.loads(coordinates) == {"x": 1, "y": 2, "width": 3, "height": 4}
    with session_scope() as session:
        labels = session.scalars(select(Label.name).where(Label.version_id == version.id))
        assert list(labels) == ["cat"]  # "mat" fell under the threshold


def test_both_targets_write_text_and_annotations_on_the_first_split():
    job, item, version = make_job()
    with session_scope() as session:
        first = DatasetSplit(version_id=version.id, user_id=item.user_id, name="train")
        second = DatasetSplit(version_id=version.id, user_id=item.user_id, name="test")
        session.add_all([first, second])
        session.flush()
        session.get_one(DatasetItem, item.id).splits = [second, first]
        first_id = first.id

    apply(job, item, output_target="both", auto_create_labels=True)

    with session_scope() as session:
        assert session.get_one(DatasetItem, item.id).text == "a cat on a mat"
        split_ids = set(
            session.scalars(select(Annotation.split_id).where(Annotation.item_id == item.id))
        )
    assert split_ids == {first_id}


def test_a_rerun_replaces_its_annotations_and_keeps_a_persons():
    job, item, version = make_job()
    with session_scope() as session:
        label = Label(version_id=version.id, user_id=item.user_id, name="person-made")
        session.add(label)
        session.flush()
        session.add(
            Annotation(
                version_id=version.id, item_id=item.id, label_id=label.id, user_id=item.user_id
            )
        )
        # A second job of the same post-processor, as after a new upload.
        later = PostProcessorJob(
            post_processor_id=job.post_processor_id,
            dataset_item_id=item.id,
            dataset_id=item.dataset_id,
            user_id=item.user_id,
            id=uuid.uuid4(),
        )
        session.add(later)

    apply(job, item, output_target="annotations", auto_create_labels=True)
    apply(job, item, output_target="annotations", auto_create_labels=True)
    apply(later, item, output_target="annotations", auto_create_labels=True)

    names = [(name, job_id) for name, _coordinates, job_id in annotations_of(item)]
    assert names == [("cat", later.id), ("mat", later.id), ("person-made", None)]


def test_jobs_finishing_at_once_create_a_missing_label_once():
    """Many jobs of one version, each auto-creating the same new labels, all
    recorded at the same moment."""
    import threading

    job, item, version = make_job()
    others = []
    with session_scope() as session:
        for index in range(11):
            other = add_item(session, version, f"item {index}")
            others.append((add_job(session, other, job.post_processor_id), other))
    pairs = [(job, item), *others]
    start = threading.Barrier(len(pairs))
    errors = []

    def record(pair):
        try:
            start.wait()
            apply(*pair, output_target="annotations", auto_create_labels=True)
        except Exception as error:  # reported below, with the thread's error
            errors.append(error)

    threads = [threading.Thread(target=record, args=(pair,)) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with session_scope() as session:
        names = session.scalars(select(Label.name).where(Label.version_id == version.id)).all()
    assert sorted(names) == ["cat", "mat"]
    for _job, each in pairs:
        assert [name for name, _, _ in annotations_of(each)] == ["cat", "mat"]
