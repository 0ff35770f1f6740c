"""login_failures and login_locks: PIN-guessing lockout (issue 7)

Revision ID: r002
Revises: r001
"""
import sqlalchemy as sa
from alembic import op

revision = "r002"
down_revision = "r001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_number", sa.String(length=16), nullable=False),
        sa.Column("line", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_worker_at", "login_failures", ["worker_number", "at"])
    op.create_index("ix_login_failures_line_at", "login_failures", ["line", "at"])
    op.create_table(
        "login_locks",
        sa.Column("worker_number", sa.String(length=16), nullable=False),
        sa.Column("line", sa.String(length=24), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("worker_number", "line", name=op.f("pk_login_locks")),
    )


def downgrade() -> None:
    op.drop_table("login_locks")
    op.drop_index("ix_login_failures_line_at", table_name="login_failures")
    op.drop_index("ix_login_failures_worker_at", table_name="login_failures")
    op.drop_table("login_failures")
