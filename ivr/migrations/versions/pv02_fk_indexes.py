"""indexes on the foreign keys retention and erasure delete through (issue 18)

Revision ID: pv02
Revises: m002 (pv01 is merged there)
"""
from alembic import op

revision = "pv02"
down_revision = "m002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_call_records_attendance_id", "call_records", ["attendance_id"])
    op.create_index("ix_alerts_attendance_id", "alerts", ["attendance_id"])
    op.create_index("ix_alerts_call_record_id", "alerts", ["call_record_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_call_record_id", table_name="alerts")
    op.drop_index("ix_alerts_attendance_id", table_name="alerts")
    op.drop_index("ix_call_records_attendance_id", table_name="call_records")
