"""Apply the Alembic migrations that ship inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from shared.settings import get_settings


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "shared:migrations")
    return config


def upgrade_database() -> None:
    settings = get_settings()
    if settings.is_sqlite:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(), "head")
