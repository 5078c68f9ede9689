"""Alembic environment: the URL comes from the settings, not from an ini file."""

from alembic import context

from shared.db import get_engine
from shared.models import Base

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection") or get_engine()
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
