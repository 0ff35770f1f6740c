"""the unanswered (free) check-in: each worker's own number and switch, and the flag on attendances (issue 13)

Revision ID: t001
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "t001"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("unanswered_ddi", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("unanswered_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_unique_constraint(op.f("uq_workers_unanswered_ddi"), ["unanswered_ddi"])
    with op.batch_alter_table("attendances") as batch:
        batch.add_column(sa.Column("arrival_unanswered", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("departure_unanswered", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("attendances") as batch:
        batch.drop_column("departure_unanswered")
        batch.drop_column("arrival_unanswered")
    with op.batch_alter_table("workers") as batch:
        batch.drop_constraint(op.f("uq_workers_unanswered_ddi"), type_="unique")
        batch.drop_column("unanswered_enabled")
        batch.drop_column("unanswered_ddi")
