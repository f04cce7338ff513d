"""the hall's statistics (issue 14 item 4): indexes for counting by month

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-03 15:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_audit_events_event_created_at', 'audit_events', ['event', 'created_at'], unique=False
    )
    op.create_index(
        'ix_service_records_created_at', 'service_records', ['created_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_service_records_created_at', table_name='service_records')
    op.drop_index('ix_audit_events_event_created_at', table_name='audit_events')
