"""an upstream's display name (what the sign-in page calls it)

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-03 19:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('federation_upstreams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_name', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('federation_upstreams', schema=None) as batch_op:
        batch_op.drop_column('display_name')
