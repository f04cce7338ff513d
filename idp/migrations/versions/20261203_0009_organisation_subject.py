"""organisation as the subject of a grant

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_id', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('oauth_grants', schema=None) as batch_op:
        batch_op.drop_column('subject_id')
