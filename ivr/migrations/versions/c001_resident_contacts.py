"""resident_contacts, residents.access_notes, keysafe_reference, processing_restricted (issue 12)

Revision ID: c001
Revises: m001
"""
import sqlalchemy as sa
from alembic import op

revision = "c001"
down_revision = "m001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("residents") as batch:
        batch.add_column(sa.Column("access_notes", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("keysafe_reference", sa.String(length=80), nullable=False, server_default=""))
        batch.add_column(sa.Column("processing_restricted", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "resident_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("relation", sa.String(length=20), nullable=False),
        sa.Column("relation_note", sa.String(length=80), nullable=False),
        sa.Column("phone_e164", sa.String(length=20), nullable=True),
        sa.Column("phone2_e164", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("notify_missed", sa.Boolean(), nullable=False),
        sa.Column("billing_address", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "relation IN ('next_of_kin', 'representative', 'other')", name=op.f("ck_resident_contacts_relation_known")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["residents.id"], name=op.f("fk_resident_contacts_resident_id_residents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resident_contacts")),
    )
    op.create_index(op.f("ix_resident_contacts_resident_id"), "resident_contacts", ["resident_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_resident_contacts_resident_id"), table_name="resident_contacts")
    op.drop_table("resident_contacts")
    with op.batch_alter_table("residents") as batch:
        batch.drop_column("processing_restricted")
        batch.drop_column("keysafe_reference")
        batch.drop_column("access_notes")
