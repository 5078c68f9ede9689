"""The database tables, as SQLAlchemy 2 typed ORM models.

Every row carries `user_id` so that a query can be scoped to its owner with
one condition; another user's row is then simply "not found".
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so naive
    values read from it are UTC by construction.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class Timestamped:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class User(Timestamped, Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200), unique=True)


class ApiKey(Timestamped, Base):
    __tablename__ = "api_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 of the key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user: Mapped[User] = relationship()


class ProviderKey(Timestamped, Base):
    """A user's own key for one of the operator's providers, used by that
    user's post-processors only. Stored encrypted (shared/secret_box.py);
    no route ever answers it."""

    __tablename__ = "provider_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "provider", name="uq_provider_keys_user_provider"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    sealed_key: Mapped[str] = mapped_column(Text)


class Dataset(Timestamped, Base):
    __tablename__ = "datasets"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(20), default="images")
    multi_label: Mapped[bool] = mapped_column(Boolean, default=False)
    default_splits: Mapped[bool] = mapped_column(Boolean, default=False)

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        order_by="DatasetVersion.created_at",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class DatasetVersion(Timestamped, Base):
    __tablename__ = "dataset_versions"

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    default_split: Mapped[str] = mapped_column(String(36), default="")
    config: Mapped[str] = mapped_column(Text, default="")

    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    labels: Mapped[list[Label]] = relationship(
        order_by="(Label.index, Label.created_at)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    splits: Mapped[list[DatasetSplit]] = relationship(
        order_by="DatasetSplit.created_at", cascade="all, delete-orphan", passive_deletes=True
    )


class DatasetSplit(Timestamped, Base):
    __tablename__ = "dataset_splits"

    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")


class Label(Timestamped, Base):
    __tablename__ = "labels"

    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    color: Mapped[str] = mapped_column(String(40), default="")
    index: Mapped[int] = mapped_column(Integer, default=0)
    shortcut: Mapped[str] = mapped_column(String(40), default="")


item_splits = Table(
    "item_splits",
    Base.metadata,
    Column("item_id", Uuid, ForeignKey("dataset_items.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "split_id",
        Uuid,
        ForeignKey("dataset_splits.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class DatasetItem(Timestamped, Base):
    __tablename__ = "dataset_items"
    # The items list's order, whole (migration 0006 says why).
    __table_args__ = (Index("ix_dataset_items_version_order", "version_id", "created_at", "id"),)

    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE")
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    extension: Mapped[str] = mapped_column(String(20), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The stored file, if any: its key in storage, media type, size, name.
    file_key: Mapped[str | None] = mapped_column(String(200), default=None)
    file_media_type: Mapped[str] = mapped_column(String(100), default="")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_name: Mapped[str] = mapped_column(Text, default="")
    file_sha256: Mapped[str] = mapped_column(String(64), default="")

    splits: Mapped[list[DatasetSplit]] = relationship(
        secondary=item_splits, order_by="DatasetSplit.created_at"
    )
    annotations: Mapped[list[Annotation]] = relationship(
        order_by="Annotation.created_at", cascade="all, delete-orphan", passive_deletes=True
    )


class Annotation(Timestamped, Base):
    __tablename__ = "annotations"

    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE")
    )
    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_items.id", ondelete="CASCADE"), index=True
    )
    label_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), index=True
    )
    split_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dataset_splits.id", ondelete="SET NULL"), default=None
    )
    coordinates: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Set when a post-processor job wrote it, so that a rerun replaces its own
    # annotations and never those a person made.
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("post_processor_jobs.id", ondelete="SET NULL"), default=None, index=True
    )


class ItemState(Timestamped, Base):
    """An item's workflow state in a version ("reviewed", "needs-check"...),
    written by people and apart from the item, so that setting it neither
    bumps the item's version nor starts its post-processors. `version`
    counts its writes under the items' If-Match rules; a state never written
    has no row (version 0)."""

    __tablename__ = "item_states"
    __table_args__ = (
        UniqueConstraint("item_id", "dataset_version_id", name="uq_item_states_item_version"),
        Index("ix_item_states_version_order", "dataset_version_id", "created_at", "id"),
    )

    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dataset_items.id", ondelete="CASCADE"))
    dataset_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)


class PostProcessor(Timestamped, Base):
    __tablename__ = "post_processors"

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    order: Mapped[int] = mapped_column(Integer, default=0)
    model_id: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str] = mapped_column(Text, default="")
    external_provider: Mapped[str | None] = mapped_column(String(20), default=None)
    external_model: Mapped[str] = mapped_column(Text, default="")
    external_config: Mapped[str] = mapped_column(Text, default="")
    model_type: Mapped[str] = mapped_column(String(30))
    output_target: Mapped[str] = mapped_column(String(20), default="text")
    auto_create_labels: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence_threshold: Mapped[float] = mapped_column(Float, default=0.0)
    prompt: Mapped[str] = mapped_column(Text, default="")


class PostProcessorJob(Timestamped, Base):
    __tablename__ = "post_processor_jobs"
    __table_args__ = (
        Index("ix_jobs_dataset_status", "dataset_id", "status"),
        Index("ix_jobs_item_status", "dataset_item_id", "status"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
    )

    post_processor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("post_processors.id", ondelete="CASCADE"), index=True
    )
    dataset_item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dataset_items.id", ondelete="CASCADE")
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # While `processing`: until when the worker that claimed the job holds it.
    # Its heartbeat pushes this forward; once it has passed, the worker is
    # gone and the reaper takes the job back.
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # While `processing`: the run holding the claim, as "<worker>:<pid>:<task
    # id>". The worker's main process, seeing that process die, takes back
    # exactly the claim it held; only that run may write the outcome.
    claimed_by: Mapped[str | None] = mapped_column(String(300), default=None)

    post_processor: Mapped[PostProcessor] = relationship()
    item: Mapped[DatasetItem] = relationship()


class OnnxModel(Timestamped, Base):
    """An ONNX network an operator registered with `itemflow models add`. A
    post-processor of the same `model_type` names it in `model_id`.

    Not owned by a user: like the built-in models, registered ones serve
    every user of the installation.
    """

    __tablename__ = "onnx_models"
    __table_args__ = (
        CheckConstraint("kind IN ('classification', 'detection')", name="ck_onnx_models_kind"),
    )

    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    # A JSON array of the label names, in the order of the model's outputs.
    labels: Mapped[str] = mapped_column(Text)
    # The network's file: its key in storage, so that a worker on another
    # machine finds it wherever it finds the items' files.
    file_key: Mapped[str] = mapped_column(String(200))
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Workers keep a loaded model per name and sha256, so a new file under
    # the same name is picked up by its next job.
    sha256: Mapped[str] = mapped_column(String(64))
    input_width: Mapped[int] = mapped_column(Integer)
    input_height: Mapped[int] = mapped_column(Integer)


class FileRemoval(Base):
    """A stored file whose rows are gone, to be deleted from storage. Written
    in the transaction that drops the rows, deleted once the file is: a
    removal that fails, or a process that dies before it, is done by the
    reaper later, so no file is orphaned for good."""

    __tablename__ = "file_removals"

    file_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def as_dict(row: Any) -> dict[str, Any]:
    """The column values of a row, by attribute name."""
    return {column.key: getattr(row, column.key) for column in row.__mapper__.column_attrs}
