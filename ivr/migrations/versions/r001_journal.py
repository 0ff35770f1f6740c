"""journal_applied: the exactly-once ledger of replayed journal events

Revision ID: r001
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "r001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_applied",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_journal_applied")),
    )


def downgrade() -> None:
    op.drop_table("journal_applied")
