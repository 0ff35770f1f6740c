"""the worker's phone: enrolments, devices, home tags, tag scans, messages; visits.worker_notes;
the lone-worker alarm alert kind (issue 17)

Revision ID: d002
Revises: d001
"""
import sqlalchemy as sa
from alembic import op

revision = "d002"
down_revision = "d001"
branch_labels = None
depends_on = None

_KINDS = ("'late', 'missed', 'no_departure', 'no_reply', 'short_visit', 'double_up_apart', "
          "'failed_login', 'substitute', 'unscheduled'")


def _alert_kinds(kinds: str) -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("kind_known", type_="check")
        batch.create_check_constraint("kind_known", f"kind IN ({kinds})")


def upgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.add_column(sa.Column("worker_notes", sa.Text(), nullable=False, server_default=""))
    _alert_kinds(_KINDS + ", 'alarm'")
    op.create_table(
        "worker_enrolments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_by", sa.String(length=80), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_worker_enrolments_worker_id_workers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_enrolments")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_worker_enrolments_code_hash")),
    )
    op.create_index(op.f("ix_worker_enrolments_worker_id"), "worker_enrolments", ["worker_id"])
    op.create_table(
        "worker_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_worker_devices_worker_id_workers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_worker_devices_token_hash")),
    )
    op.create_index(op.f("ix_worker_devices_worker_id"), "worker_devices", ["worker_id"])
    op.create_table(
        "home_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("issued_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["resident_id"], ["residents.id"], name=op.f("fk_home_tags_resident_id_residents"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_tags")),
        sa.UniqueConstraint("tag_id", name=op.f("uq_home_tags_tag_id")),
    )
    op.create_index(op.f("ix_home_tags_resident_id"), "home_tags", ["resident_id"])
    op.create_table(
        "tag_scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tag_id"], ["home_tags.id"], name=op.f("fk_tag_scans_tag_id_home_tags"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_tag_scans_worker_id_workers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_scans")),
    )
    op.create_index("ix_tag_scans_tag_received", "tag_scans", ["tag_id", "received_at"])
    op.create_table(
        "worker_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("from_office", sa.Boolean(), nullable=False),
        sa.Column("author", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_worker_messages_visit_id_visits"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], name=op.f("fk_worker_messages_worker_id_workers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_messages")),
    )
    op.create_index(op.f("ix_worker_messages_worker_id"), "worker_messages", ["worker_id"])
    op.create_index(op.f("ix_worker_messages_visit_id"), "worker_messages", ["visit_id"])


def downgrade() -> None:
    for table in ("worker_messages", "tag_scans", "home_tags", "worker_devices", "worker_enrolments"):
        op.drop_table(table)
    _alert_kinds(_KINDS)
    with op.batch_alter_table("visits") as batch:
        batch.drop_column("worker_notes")
