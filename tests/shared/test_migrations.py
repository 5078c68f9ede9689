"""The migrations build the tables the models describe, on the run's
backend: a model changed without its migration fails here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import get_engine
from shared.models import Base


def test_the_migrated_database_matches_the_models() -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
