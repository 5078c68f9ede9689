"""indexes for the items list: its order whole, and job counts from the index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The list's order is (created_at, id): with id in the index a page is
    # read in order and stops after its rows, and a deep page skips its
    # offset within the index.
    op.create_index(
        "ix_dataset_items_version_order", "dataset_items", ["version_id", "created_at", "id"]
    )
    op.drop_index("ix_dataset_items_version_created", table_name="dataset_items")
    # An item's job counts by status, from the index alone.
    op.create_index("ix_jobs_item_status", "post_processor_jobs", ["dataset_item_id", "status"])
    op.drop_index("ix_jobs_item", table_name="post_processor_jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_item", "post_processor_jobs", ["dataset_item_id"])
    op.drop_index("ix_jobs_item_status", table_name="post_processor_jobs")
    op.create_index(
        "ix_dataset_items_version_created", "dataset_items", ["version_id", "created_at"]
    )
    op.drop_index("ix_dataset_items_version_order", table_name="dataset_items")
