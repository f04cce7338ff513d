"""service records (issue 14): records pushed by service systems and their timelines

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:49:05.203670
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.core.db

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('service_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('organisation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('subject_sub', sa.String(length=200), nullable=False),
    sa.Column('service_name', sa.String(length=200), nullable=False),
    sa.Column('item_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('submitted', 'accepted', 'in_progress', 'more_info_needed', 'completed', 'rejected', name='recordstatus', native_enum=False, length=32), nullable=False),
    sa.Column('result_url', sa.String(length=2000), nullable=True),
    sa.Column('done_online', sa.Boolean(), nullable=False),
    sa.Column('counter_visits', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('satisfaction', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rated_at', idp.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(user_id IS NULL) <> (organisation_id IS NULL)', name=op.f('ck_service_records_one_holder')),
    sa.CheckConstraint('counter_visits >= 0', name=op.f('ck_service_records_counter_visits_not_negative')),
    sa.CheckConstraint('satisfaction IS NULL OR (satisfaction >= 1 AND satisfaction <= 5)', name=op.f('ck_service_records_satisfaction_range')),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_clients.client_id'], name=op.f('fk_service_records_client_id_oauth_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_service_records_organisation_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_service_records_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_records')),
    sa.UniqueConstraint('client_id', 'external_id', name=op.f('uq_service_records_client_id_external_id')),
    sa.UniqueConstraint('public_id', name=op.f('uq_service_records_public_id'))
    )
    with op.batch_alter_table('service_records', schema=None) as batch_op:
        batch_op.create_index('ix_service_records_client_status', ['client_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_records_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_records_user_id'), ['user_id'], unique=False)

    op.create_table('service_record_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', idp.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Enum('submitted', 'accepted', 'in_progress', 'more_info_needed', 'completed', 'rejected', name='recordstatus', native_enum=False, length=32), nullable=False),
    sa.Column('remark', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['record_id'], ['service_records.id'], name=op.f('fk_service_record_events_record_id_service_records'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_record_events'))
    )
    with op.batch_alter_table('service_record_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_record_events_record_id'), ['record_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('service_record_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_record_events_record_id'))

    op.drop_table('service_record_events')
    with op.batch_alter_table('service_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_records_user_id'))
        batch_op.drop_index(batch_op.f('ix_service_records_organisation_id'))
        batch_op.drop_index('ix_service_records_client_status')

    op.drop_table('service_records')
