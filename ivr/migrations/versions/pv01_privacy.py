"""privacy_views (who looked at whose details), worker_ni_numbers (sealed NI numbers) (issue 18)

Revision ID: pv01
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "pv01"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("what", sa.String(length=60), nullable=False),
        sa.CheckConstraint("(resident_id IS NULL) <> (worker_id IS NULL)", name=op.f("ck_privacy_views_one_subject")),
        sa.CheckConstraint("channel IN ('web', 'api', 'cli')", name=op.f("ck_privacy_views_channel_known")),
        sa.ForeignKeyConstraint(["resident_id"], ["residents.id"], name=op.f("fk_privacy_views_resident_id_residents")),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_privacy_views_worker_id_workers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_views")),
    )
    op.create_index(op.f("ix_privacy_views_at"), "privacy_views", ["at"])
    op.create_index(op.f("ix_privacy_views_resident_id"), "privacy_views", ["resident_id"])
    op.create_index(op.f("ix_privacy_views_worker_id"), "privacy_views", ["worker_id"])
    op.create_index("ix_privacy_views_actor_at", "privacy_views", ["actor", "at"])
    op.create_table(
        "worker_ni_numbers",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_worker_ni_numbers_worker_id_workers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_ni_numbers")),
    )


def downgrade() -> None:
    op.drop_table("worker_ni_numbers")
    op.drop_index("ix_privacy_views_actor_at", table_name="privacy_views")
    op.drop_index(op.f("ix_privacy_views_worker_id"), table_name="privacy_views")
    op.drop_index(op.f("ix_privacy_views_resident_id"), table_name="privacy_views")
    op.drop_index(op.f("ix_privacy_views_at"), table_name="privacy_views")
    op.drop_table("privacy_views")
