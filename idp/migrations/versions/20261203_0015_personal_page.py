"""the personal page (issue 14): a new password required after "this wasn't me", and
the account's scheduled deletion

Revision ID: 0015
Revises: 0017
Create Date: 2026-12-03 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.core.db

revision: str = '0015'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_reset_required', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('deletion_due_at', idp.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_users_deletion_due_at'), ['deletion_due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_deletion_due_at'))
        batch_op.drop_column('deletion_due_at')
        batch_op.drop_column('password_reset_required')
