"""Migration 0004 maps the post-processors saved before the operator decided
which keys go where: what gives the same call is rewritten, what would send
a variable of the worker's elsewhere is left to be refused with its reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from shared.migrate import alembic_config

LEGACY = {
    # (provider, external_config before) -> after; None: left as it was
    ("openai", "{}"): None,
    ("openai", '{"api_key_env": "OPENAI_API_KEY", "temperature": 0}'): {"temperature": 0},
    (
        "anthropic",
        '{"base_url": "https://api.anthropic.com/", "api_key_env": "ANTHROPIC_API_KEY"}',
    ): {},
    ("openai", '{"base_url": "http://127.0.0.1:11434/v1", "api_key_env": ""}'): {
        "base_url": "http://127.0.0.1:11434/v1"
    },
    ("openai", '{"base_url": "http://127.0.0.1:11434/v1"}'): None,
    ("openai", '{"base_url": "http://evil.example/v1", "api_key_env": "DATABASE_URL"}'): None,
    ("openai", '{"base_url": "http://evil.example/v1", "api_key_env": "OPENAI_API_KEY"}'): None,
    ("openai", '{"api_key_env": "TEAM_KEY"}'): None,
    ("openai", "{not json"): None,
    (None, '{"api_key_env": "OPENAI_API_KEY"}'): None,
}


def migrate(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    yield engine
    engine.dispose()


def test_saved_configurations_are_mapped_or_left_to_be_refused(engine: Engine) -> None:
    migrate(engine, "0003")
    now = datetime.now(UTC)
    user, dataset = uuid.uuid4(), uuid.uuid4()
    rows = {uuid.uuid4(): key for key in LEGACY}
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, name, created_at, updated_at) VALUES (:id, 'u', :t, :t)"),
            {"id": user.hex, "t": now},
        )
        connection.execute(
            text(
                "INSERT INTO datasets (id, user_id, name, description, notes, content_type, "
                "multi_label, default_splits, created_at, updated_at) "
                "VALUES (:id, :user, 'd', '', '', 'text', 0, 0, :t, :t)"
            ),
            {"id": dataset.hex, "user": user.hex, "t": now},
        )
        for row_id, (provider, config) in rows.items():
            connection.execute(
                text(
                    "INSERT INTO post_processors (id, dataset_id, user_id, name, description, "
                    'enabled, "order", model_id, model_version, external_provider, '
                    "external_model, external_config, model_type, output_target, "
                    "auto_create_labels, confidence_threshold, prompt, created_at, updated_at) "
                    "VALUES (:id, :dataset, :user, 'p', '', 1, 0, '', '', :provider, 'm', "
                    ":config, 'llm', 'text', 0, 0, '', :t, :t)"
                ),
                {
                    "id": row_id.hex,
                    "dataset": dataset.hex,
                    "user": user.hex,
                    "provider": provider,
                    "config": config,
                    "t": now,
                },
            )

    migrate(engine, "head")

    with engine.connect() as connection:
        after = dict(
            connection.execute(text("SELECT id, external_config FROM post_processors")).all()
        )
        tables = connection.execute(text("SELECT name FROM sqlite_master")).scalars().all()
    assert "provider_keys" in tables
    for row_id, (provider, before) in rows.items():
        expected = LEGACY[provider, before]
        now_saved = after[row_id.hex]
        if expected is None:
            assert now_saved == before, (provider, before)
        else:
            assert json.loads(now_saved) == expected, (provider, before)
