"""verification_devices, device_code_uses; attendances' methods device and tag (issue 17)

Revision ID: d001
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

revision = "d001"
down_revision = "c001"
branch_labels = None
depends_on = None

_OLD = "('phone', 'manual')"
_NEW = "('phone', 'device', 'tag', 'manual')"


def _methods(allowed: str) -> None:
    with op.batch_alter_table("attendances") as batch:
        batch.drop_constraint("arr_method", type_="check")
        batch.drop_constraint("dep_method", type_="check")
        batch.create_check_constraint("arr_method", f"arrival_method IS NULL OR arrival_method IN {allowed}")
        batch.create_check_constraint("dep_method", f"departure_method IS NULL OR departure_method IN {allowed}")


def upgrade() -> None:
    op.create_table(
        "verification_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("secret_sealed", sa.String(length=255), nullable=False),
        sa.Column("digits", sa.Integer(), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("registered_by", sa.String(length=80), nullable=False),
        sa.CheckConstraint("digits IN (6, 8)", name=op.f("ck_verification_devices_digits_6_or_8")),
        sa.CheckConstraint("step_seconds IN (30, 60)", name=op.f("ck_verification_devices_step_30_or_60")),
        sa.ForeignKeyConstraint(["resident_id"], ["residents.id"],
                                name=op.f("fk_verification_devices_resident_id_residents"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_devices")),
        sa.UniqueConstraint("serial", name=op.f("uq_verification_devices_serial")),
    )
    op.create_index(op.f("ix_verification_devices_resident_id"), "verification_devices", ["resident_id"])
    op.create_table(
        "device_code_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("counter", sa.Integer(), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["verification_devices.id"],
                                name=op.f("fk_device_code_uses_device_id_verification_devices"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_code_uses")),
        sa.UniqueConstraint("device_id", "counter", name=op.f("uq_device_code_uses_device_id")),
    )
    _methods(_NEW)


def downgrade() -> None:
    _methods(_OLD)
    op.drop_table("device_code_uses")
    op.drop_index(op.f("ix_verification_devices_resident_id"), table_name="verification_devices")
    op.drop_table("verification_devices")
