"""Request and response bodies, named by role: `*Create`, `*Update`, `*Public`.

Requests are lenient the way the contract asks: unknown and read-only fields
are ignored, and a `null` counts as "not given". Responses never carry `null`
except in the fields the contract marks nullable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from shared.models import JobStatus
from shared.provider_config import NAME_PATTERN


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Ids the contract gives as plain strings, "" when unset.
IdText = Annotated[str, BeforeValidator(lambda value: "" if value is None else str(value))]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it on every backend alike.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
# Integers the database stores in 32 bits.
INT32_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str)]
ContentType = Literal["images", "text", "tabular", "ner", "documents"]
ModelType = Literal["stt", "stt-diarization", "classification", "detection", "ner", "ocr", "llm"]
OutputTarget = Literal["text", "annotations", "both"]
# The name of one of the operator's providers (PROVIDERS): the built-in
# ones are openai and anthropic; the service checks the name exists.
ProviderName = Annotated[str, Field(pattern=NAME_PATTERN)]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, for a partial update."""
        return self.model_dump(include=self.model_fields_set)


# --- requests ---------------------------------------------------------------


class DatasetUpdate(RequestBody):
    name: Text = ""
    description: Text = ""
    notes: Text = ""
    content_type: ContentType = "images"
    multi_label: bool = False


class DatasetCreate(DatasetUpdate):
    default_splits: bool = False


class VersionCreate(RequestBody):
    name: Text = ""
    description: Text = ""
    default_split: Text = ""
    config: Text = ""


VersionUpdate = VersionCreate


class SplitCreate(RequestBody):
    name: Text = ""
    description: Text = ""


SplitUpdate = SplitCreate


class LabelCreate(RequestBody):
    name: Text = ""
    description: Text = ""
    color: Text = Field(default="", max_length=40)
    index: Int32 = 0
    shortcut: Text = Field(default="", max_length=40)


LabelUpdate = LabelCreate


class AnnotationCreate(RequestBody):
    label_id: uuid.UUID
    item_id: uuid.UUID
    split_id: uuid.UUID | Literal[""] | None = None
    coordinates: Text = ""


class AnnotationUpdate(RequestBody):
    label_id: uuid.UUID | None = None
    split_id: uuid.UUID | Literal[""] | None = None
    coordinates: Text = ""


class ItemStateUpdate(RequestBody):
    name: Text = ""
    description: Text = ""
    state: Text = ""


class SplitRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID


class ItemCreate(RequestBody):
    name: Text = ""
    description: Text = ""
    text: Text = ""
    extension: Text = Field(default="", max_length=20)
    splits: list[SplitRef] = []


ItemUpdate = ItemCreate


class PostProcessorCreate(RequestBody):
    name: Text = ""
    description: Text = ""
    enabled: bool = True
    order: Int32 = 0
    model_id: Text = ""
    model_version: Text = ""
    external_provider: ProviderName | None = None
    external_model: Text = ""
    external_config: Text = ""
    model_type: ModelType
    output_target: OutputTarget = "text"
    auto_create_labels: bool = False
    confidence_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    prompt: Text = ""


class PostProcessorUpdate(PostProcessorCreate):
    model_type: ModelType = "ocr"


class ProviderKeySet(RequestBody):
    # Printable ASCII without spaces: what keys are, and nothing that could
    # break out of the header it is sent in.
    api_key: str = Field(min_length=1, max_length=4096, pattern=r"^[!-~]+$")


class JobRetry(RequestBody):
    max_attempts: int | None = Field(default=None, ge=1, le=1000)


class JobsRetry(JobRetry):
    """Which of a dataset's jobs to retry: failed ones only, said as such."""

    status: Literal["failed"]
    post_processor_id: uuid.UUID | None = None
    model_type: ModelType | None = None
    error_contains: str | None = Field(default=None, min_length=1, max_length=1000)
    created_before: AwareDatetime | None = None
    created_after: AwareDatetime | None = None


# --- responses --------------------------------------------------------------


class PublicModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: Timestamp
    updated_at: Timestamp


class SplitPublic(PublicModel):
    name: str
    description: str
    version_id: uuid.UUID
    user_id: IdText


class LabelPublic(PublicModel):
    name: str
    description: str
    version_id: uuid.UUID
    user_id: IdText
    color: str
    index: int
    shortcut: str


class VersionPublic(PublicModel):
    name: str
    description: str
    dataset_id: uuid.UUID
    user_id: IdText
    labels: list[LabelPublic]
    splits: list[SplitPublic]
    default_split: str
    config: str


class RefusedEntry(BaseModel):
    entry: str  # the zip member, or the row of a file that lists them
    reason: str


class VersionImported(VersionPublic):
    """The version after an import, and what the import made and refused."""

    imported: int
    refused: list[RefusedEntry]


class DatasetPublic(PublicModel):
    name: str
    description: str
    user_id: IdText
    notes: str
    content_type: str
    multi_label: bool
    default_splits: bool
    versions: list[VersionPublic]


class AnnotationPublic(PublicModel):
    label_id: uuid.UUID
    item_id: uuid.UUID
    split_id: IdText
    coordinates: str
    user_id: IdText


class JobCounts(BaseModel):
    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    total: int = 0


class ItemPublic(PublicModel):
    name: str
    description: str
    user_id: IdText
    text: str
    splits: list[SplitPublic]
    annotations: list[AnnotationPublic]
    extension: str
    version: int


class ItemWithJobStatus(ItemPublic):
    job_status: JobCounts


class PostProcessorPublic(PublicModel):
    dataset_id: uuid.UUID
    name: str
    description: str
    enabled: bool
    order: int
    model_id: str
    model_version: str
    external_provider: str | None
    external_model: str
    external_config: str
    model_type: str
    output_target: str
    auto_create_labels: bool
    confidence_threshold: float
    prompt: str
    user_id: IdText


class PostProcessorWithDetails(PostProcessorPublic):
    model_name: str
    model_kind: str
    is_external: bool
    provider_name: str
    # Why its jobs would be refused the provider it names ("" when not):
    # a setting the operator no longer allows, or one from before they
    # decided which keys and hosts a post-processor may use.
    config_error: str = ""


class ProviderPublic(BaseModel):
    """One of the operator's providers, and whether the caller has stored a
    key of their own for it. The key itself is never answered."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    protocol: str
    models: list[str]
    user_base_url: bool
    has_key: bool
    key_updated_at: Timestamp | None


class JobPublic(PublicModel):
    post_processor_id: uuid.UUID
    dataset_item_id: uuid.UUID
    dataset_id: uuid.UUID
    status: JobStatus
    attempts: int
    max_attempts: int
    error: str | None
    result: str | None
    started_at: Timestamp | None
    completed_at: Timestamp | None
    user_id: IdText


class JobsRetried(BaseModel):
    retried: int
    # Failed jobs without an attempt left.
    skipped: int
    # Failed jobs left so: another job of the post-processor is pending or
    # running for the item.
    busy: int


class PostProcessorJobCounts(BaseModel):
    post_processor_id: uuid.UUID
    name: str
    model_type: str
    counts: JobCounts


class CommonError(BaseModel):
    error: str
    count: int
    post_processor_id: uuid.UUID


class JobSummary(BaseModel):
    post_processors: list[PostProcessorJobCounts]
    errors: list[CommonError]


class JobWithDetails(JobPublic):
    post_processor_name: str
    item_name: str


class ItemStatePublic(BaseModel):
    """A state never written answers as a scaffold: version 0, no
    timestamps, and the id its row will have once written."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: Timestamp | None
    updated_at: Timestamp | None
    name: str
    description: str
    item_id: uuid.UUID
    dataset_version_id: uuid.UUID
    user_id: IdText
    state: str
    version: int


class LabelStat(BaseModel):
    """A label's use in a split: `annotation_count` annotations on
    `item_count` items; `count` is the items (the figure a label list
    shows). The row with `label_id` "" counts the split's unlabelled items."""

    label_id: IdText
    split_id: IdText
    count: int
    annotation_count: int
    item_count: int
