"""join session 4's feature branches (alerts people and on-call, telephony, finance, outreach,
privacy, no landline) into one head

They were built side by side, each from c001; from here on migrations have a single
parent again.

Revision ID: m002
Revises: ao01, ap01, d002, f001, o001, pv01, t001
"""

revision = "m002"
down_revision = ("ao01", "ap01", "d002", "f001", "o001", "pv01", "t001")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
