"""billing_funders, billing_credit_notes, billing_invoices.bill_to / bill_to_email (issue 15)

Revision ID: f001
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "f001"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_funders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("invoice_address", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("po_required", sa.Boolean(), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("payment_days", sa.Integer(), nullable=False),
        sa.Column("brokerage_email", sa.String(length=254), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("payment_days >= 0 AND payment_days <= 365",
                           name=op.f("ck_billing_funders_payment_days_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_funders")),
        sa.UniqueConstraint("name", name=op.f("uq_billing_funders_name")),
    )
    op.create_table(
        "billing_credit_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("issued_by", sa.String(length=80), nullable=False),
        sa.Column("total_pence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["billing_invoices.id"],
                                name=op.f("fk_billing_credit_notes_invoice_id_billing_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_credit_notes")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_billing_credit_notes_invoice_id")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_credit_notes_number")),
    )
    op.create_index(op.f("ix_billing_credit_notes_issued_at"), "billing_credit_notes", ["issued_at"])
    with op.batch_alter_table("billing_invoices") as batch:
        batch.add_column(sa.Column("bill_to", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("bill_to_email", sa.String(length=254), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("billing_invoices") as batch:
        batch.drop_column("bill_to_email")
        batch.drop_column("bill_to")
    op.drop_index(op.f("ix_billing_credit_notes_issued_at"), table_name="billing_credit_notes")
    op.drop_table("billing_credit_notes")
    op.drop_table("billing_funders")
