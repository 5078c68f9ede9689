"""job holders: which worker process claimed a job, for which message

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a job claimed before this migration has no holder, and only
    # its lease says when it is lost.
    with op.batch_alter_table("post_processor_jobs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("post_processor_jobs") as batch:
        batch.drop_column("claimed_by")
