"""file removals: stored files to delete once their rows are gone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_removals",
        sa.Column("file_key", sa.String(200), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_file_removals_requested_at", "file_removals", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_file_removals_requested_at", table_name="file_removals")
    op.drop_table("file_removals")
