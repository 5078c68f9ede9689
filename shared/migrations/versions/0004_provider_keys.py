"""users' own provider keys; post-processors' external_config without api_key_env

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Before this, `external_config` could name any environment variable of the
worker in `api_key_env`, and its value was sent to whatever `base_url` the
config gave. Now the operator names each provider's key, and a user's own
base_url never gets it. Each existing configuration is mapped where the new
rules give the same call:

- the provider's public endpoint with its usual variable (or none named):
  the built-in provider of that name, which sends the same key;
- a base_url of the user's own with `"api_key_env": ""`: the same base_url,
  which gets no key from the worker, as before.

Any other `api_key_env` (a variable of the worker's sent to the user's
base_url, or an unusual one) is left where it is: such a post-processor is
refused, its answer's `config_error` says why and what to do, and its jobs
fail with that reason until its owner changes it. Downgrading drops the
stored keys and leaves the configurations as mapped.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each protocol's public endpoint and key variable, as they were built in.
PUBLIC = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
}


def upgrade() -> None:
    op.create_table(
        "provider_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "provider", name="uq_provider_keys_user_provider"),
    )
    post_processors = sa.table(
        "post_processors",
        sa.column("id", sa.Uuid()),
        sa.column("external_provider", sa.String()),
        sa.column("external_config", sa.Text()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            post_processors.c.id,
            post_processors.c.external_provider,
            post_processors.c.external_config,
        ).where(post_processors.c.external_provider.is_not(None))
    ).all()
    for row in rows:
        mapped = map_config(row.external_provider, row.external_config)
        if mapped is not None:
            connection.execute(
                sa.update(post_processors)
                .where(post_processors.c.id == row.id)
                .values(external_config=mapped)
            )


def map_config(provider: str | None, text: str) -> str | None:
    """The configuration under the new rules, or None to leave it as it is."""
    try:
        config = json.loads(text)
    except ValueError:
        return None
    if not isinstance(config, dict) or provider not in PUBLIC:
        return None
    public_url, public_variable = PUBLIC[provider]
    changed = False
    base_url = config.get("base_url")
    if isinstance(base_url, str) and base_url.strip().rstrip("/") == public_url:
        del config["base_url"]
        base_url, changed = None, True
    if "api_key_env" in config:
        variable = config["api_key_env"]
        usual = base_url is None and variable in (public_variable, None)
        keyless = base_url is not None and variable in ("", None)
        if usual or keyless:
            del config["api_key_env"]
            changed = True
    return json.dumps(config) if changed else None


def downgrade() -> None:
    op.drop_table("provider_keys")
