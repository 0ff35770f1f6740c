"""keysafe_codes (sealed, apart from residents) and web_users.keysafe_access (issue 12)

Revision ID: ap01
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "ap01"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keysafe_codes",
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("sealed_code", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=80), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_keysafe_codes_resident_id_residents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_keysafe_codes")),
    )
    with op.batch_alter_table("web_users") as batch:
        batch.add_column(sa.Column("keysafe_access", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("web_users") as batch:
        batch.drop_column("keysafe_access")
    op.drop_table("keysafe_codes")
