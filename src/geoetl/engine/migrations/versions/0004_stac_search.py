"""STAC search: item end datetimes (for interval overlap) and the indexes search uses.

Revision ID: 0004
Revises: 0003
"""

import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def upgrade() -> None:
    op.add_column("stac_items", sa.Column("end_datetime", sa.Float, nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT rid, data, datetime FROM stac_items")).fetchall()
    for rid, data, start in rows:
        doc = json.loads(data) if isinstance(data, str) else data
        end = _epoch(doc.get("properties", {}).get("end_datetime")) or start
        bind.execute(
            sa.text("UPDATE stac_items SET end_datetime = :end WHERE rid = :rid"),
            {"end": end, "rid": rid},
        )
    op.create_index(
        "ix_stac_items_collection_datetime", "stac_items", ["collection_id", "datetime"]
    )
    op.create_index("ix_stac_items_end_datetime", "stac_items", ["end_datetime"])
    op.create_index("ix_stac_items_item_id", "stac_items", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_stac_items_item_id", "stac_items")
    op.drop_index("ix_stac_items_end_datetime", "stac_items")
    op.drop_index("ix_stac_items_collection_datetime", "stac_items")
    op.drop_column("stac_items", "end_datetime")
