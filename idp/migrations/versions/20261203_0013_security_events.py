"""security event tokens: owed pushes and received SETs

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.core.db

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'set_deliveries',
        sa.Column('peer', sa.String(length=64), nullable=False),
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('event_type', sa.String(length=200), nullable=False),
        sa.Column('sub_id', sa.JSON(), nullable=False),
        sa.Column('event', sa.JSON(), nullable=False),
        sa.Column('issued_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('created_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('next_attempt_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', idp.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('failed_at', idp.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_set_deliveries')),
        sa.UniqueConstraint('jti', name=op.f('uq_set_deliveries_jti')),
    )
    with op.batch_alter_table('set_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_set_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_set_deliveries_peer'), ['peer'], unique=False)

    op.create_table(
        'set_received',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('peer', sa.String(length=64), nullable=False),
        sa.Column('jti', sa.String(length=200), nullable=False),
        sa.Column('event_type', sa.String(length=200), nullable=False),
        sa.Column('sub_id', sa.JSON(), nullable=False),
        sa.Column('received_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_set_received')),
        sa.UniqueConstraint('peer', 'jti', name=op.f('uq_set_received_peer_jti')),
    )


def downgrade() -> None:
    op.drop_table('set_received')
    with op.batch_alter_table('set_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_set_deliveries_peer'))
        batch_op.drop_index(batch_op.f('ix_set_deliveries_next_attempt_at'))
    op.drop_table('set_deliveries')
