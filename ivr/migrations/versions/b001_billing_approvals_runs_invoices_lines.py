"""billing: approvals, runs, invoices, lines

Revision ID: b001
Revises: 0001
Create Date: 2026-11-23 18:42:50.146183
"""
from alembic import op
import sqlalchemy as sa


revision = 'b001'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('billing_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('funder', sa.String(length=80), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('issued_by', sa.String(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_runs')),
    sa.UniqueConstraint('period_start', 'funder', name=op.f('uq_billing_runs_period_start'))
    )
    op.create_table('billing_invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('group_key', sa.String(length=200), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('funder', sa.String(length=80), nullable=False),
    sa.Column('purchase_order', sa.String(length=60), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('issue_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('cap_minutes', sa.Integer(), nullable=False),
    sa.Column('billed_minutes', sa.Integer(), nullable=False),
    sa.Column('over_cap_minutes', sa.Integer(), nullable=False),
    sa.Column('visits', sa.Integer(), nullable=False),
    sa.Column('total_pence', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_billing_invoices_resident_id_residents')),
    sa.ForeignKeyConstraint(['run_id'], ['billing_runs.id'], name=op.f('fk_billing_invoices_run_id_billing_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_billing_invoices_number')),
    sa.UniqueConstraint('period_start', 'group_key', name=op.f('uq_billing_invoices_period_start'))
    )
    with op.batch_alter_table('billing_invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_invoices_run_id'), ['run_id'], unique=False)

    op.create_table('billing_approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('approved_by', sa.String(length=80), nullable=False),
    sa.Column('approved_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('minutes > 0', name=op.f('ck_billing_approvals_minutes_pos')),
    sa.ForeignKeyConstraint(['package_id'], ['care_packages.id'], name=op.f('fk_billing_approvals_package_id_care_packages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_approvals'))
    )
    with op.batch_alter_table('billing_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_approvals_approved_at'), ['approved_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_approvals_package_id'), ['package_id'], unique=False)
        batch_op.create_index('ix_billing_approvals_pkg_period', ['package_id', 'period_start'], unique=False)

    op.create_table('billing_invoice_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('attendance_id', sa.Integer(), nullable=True),
    sa.Column('package_id', sa.Integer(), nullable=True),
    sa.Column('service_period_start', sa.Date(), nullable=False),
    sa.Column('resident_reference', sa.String(length=40), nullable=False),
    sa.Column('visit_ref', sa.String(length=60), nullable=False),
    sa.Column('worker_number', sa.String(length=8), nullable=False),
    sa.Column('planned_start', sa.DateTime(), nullable=True),
    sa.Column('planned_end', sa.DateTime(), nullable=True),
    sa.Column('arrival_at', sa.DateTime(), nullable=True),
    sa.Column('departure_at', sa.DateTime(), nullable=True),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('billable_minutes', sa.Integer(), nullable=False),
    sa.Column('over_cap_minutes', sa.Integer(), nullable=False),
    sa.Column('rate_kind', sa.String(length=16), nullable=False),
    sa.Column('rate_pence', sa.BigInteger(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('billed', 'reversal', 'adjustment', 'exception', 'rejected')", name=op.f('ck_billing_invoice_lines_kind_known')),
    sa.ForeignKeyConstraint(['attendance_id'], ['attendances.id'], name=op.f('fk_billing_invoice_lines_attendance_id_attendances')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_invoice_lines_invoice_id_billing_invoices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['package_id'], ['care_packages.id'], name=op.f('fk_billing_invoice_lines_package_id_care_packages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_invoice_lines'))
    )
    with op.batch_alter_table('billing_invoice_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_invoice_lines_attendance_id'), ['attendance_id'], unique=False)
        batch_op.create_index('ix_billing_invoice_lines_invoice', ['invoice_id', 'id'], unique=False)

    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index('ix_billing_visits_resident_start', ['resident_id', 'planned_start'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_visits_resident_start')

    with op.batch_alter_table('billing_invoice_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_invoice_lines_invoice')
        batch_op.drop_index(batch_op.f('ix_billing_invoice_lines_attendance_id'))

    op.drop_table('billing_invoice_lines')
    with op.batch_alter_table('billing_approvals', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_approvals_pkg_period')
        batch_op.drop_index(batch_op.f('ix_billing_approvals_package_id'))
        batch_op.drop_index(batch_op.f('ix_billing_approvals_approved_at'))

    op.drop_table('billing_approvals')
    with op.batch_alter_table('billing_invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_invoices_run_id'))

    op.drop_table('billing_invoices')
    op.drop_table('billing_runs')

