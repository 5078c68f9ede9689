"""Alembic environment: the URL comes from the settings, not from an ini file."""

from alembic import context
from sqlalchemy import Connection

from shared.db import get_engine
from shared.models import Base

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# A caller may hand over a connection of its own (config.attributes), as the
# Alembic cookbook shows; otherwise the settings' engine is used.
given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    with get_engine().connect() as connection:
        run_migrations(connection)
