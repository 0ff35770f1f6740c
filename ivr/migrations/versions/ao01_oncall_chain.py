"""on-call rota, the escalation chain's state on alerts and deliveries, users' phones (issue 12 part B)

Revision ID: ao01
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "ao01"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_users") as batch:
        batch.add_column(sa.Column("phone_e164", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("phone_pin_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("chain_step", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("chain_next_at", sa.DateTime(), nullable=True))
    op.create_index(op.f("ix_alerts_chain_next_at"), "alerts", ["chain_next_at"])
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("outcome", sa.String(length=20), nullable=False, server_default=""))
    op.create_table(
        "oncall_rota",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.String(length=10), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_oncall_rota_ends_after_start")),
        sa.CheckConstraint("position IN ('on_call', 'second')", name=op.f("ck_oncall_rota_position_known")),
        sa.ForeignKeyConstraint(["user_id"], ["web_users.id"], name=op.f("fk_oncall_rota_user_id_web_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oncall_rota")),
    )
    op.create_index(op.f("ix_oncall_rota_user_id"), "oncall_rota", ["user_id"])
    op.create_index("ix_oncall_rota_window", "oncall_rota", ["starts_at", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_oncall_rota_window", table_name="oncall_rota")
    op.drop_index(op.f("ix_oncall_rota_user_id"), table_name="oncall_rota")
    op.drop_table("oncall_rota")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_column("outcome")
        batch.drop_column("step")
        batch.drop_column("user_id")
    op.drop_index(op.f("ix_alerts_chain_next_at"), table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("chain_next_at")
        batch.drop_column("chain_step")
    with op.batch_alter_table("web_users") as batch:
        batch.drop_column("phone_pin_hash")
        batch.drop_column("phone_e164")
