"""job leases: until when the worker that claimed a job holds it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: jobs claimed before this migration have
    # no lease, and the reaper falls back to their time limit.
    with op.batch_alter_table("post_processor_jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("post_processor_jobs") as batch:
        batch.drop_column("lease_expires_at")
