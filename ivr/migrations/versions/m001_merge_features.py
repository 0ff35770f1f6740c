"""join the feature branches (alerts, billing, journal + lockout, web) into one head

The four features were built side by side, each branching from 0001; from here on
migrations have a single parent again.

Revision ID: m001
Revises: a001, b001, r002, w001
"""

revision = "m001"
down_revision = ("a001", "b001", "r002", "w001")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
