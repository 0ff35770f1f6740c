"""outreach (issue 16): notice preferences, lateness notices, family invites, outside scopes,
feedback, quality calls; web_users may hold the family and commissioner roles

Revision ID: o001
Revises: c001
"""
import sqlalchemy as sa
from alembic import op

OFFICE_ROLES = "role IN ('coordinator', 'finance', 'manager')"
ALL_ROLES = "role IN ('coordinator', 'finance', 'manager', 'family', 'commissioner')"


revision = 'o001'
down_revision = 'c001'
branch_labels = None
depends_on = None


def _roles(check: str) -> None:
    with op.batch_alter_table("web_users") as batch:
        batch.drop_constraint(op.f("ck_web_users_role_known"), type_="check")
        batch.create_check_constraint(op.f("ck_web_users_role_known"), check)


def upgrade() -> None:
    _roles(ALL_ROLES)
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('replied_by', sa.String(length=80), nullable=True),
    sa.Column('replied_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('compliment', 'concern', 'complaint')", name=op.f('ck_feedback_kind_known')),
    sa.CheckConstraint("status IN ('new', 'in_progress', 'closed')", name=op.f('ck_feedback_status_known')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_feedback_resident_id_residents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], name=op.f('fk_feedback_user_id_web_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_resident_id'), ['resident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_status'), ['status'], unique=False)

    op.create_table('survey_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('funder', sa.String(length=80), nullable=False),
    sa.Column('team', sa.String(length=80), nullable=False),
    sa.Column('target', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=True),
    sa.Column('did_what_needed', sa.Integer(), nullable=True),
    sa.Column('would_recommend', sa.Integer(), nullable=True),
    sa.Column('called_at', sa.DateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'sending', 'completed', 'partial', 'unanswered', 'failed')", name=op.f('ck_survey_calls_status_known')),
    sa.CheckConstraint('did_what_needed IS NULL OR did_what_needed BETWEEN 1 AND 5', name=op.f('ck_survey_calls_q2_range')),
    sa.CheckConstraint('on_time IS NULL OR on_time BETWEEN 1 AND 5', name=op.f('ck_survey_calls_q1_range')),
    sa.CheckConstraint('would_recommend IS NULL OR would_recommend BETWEEN 1 AND 5', name=op.f('ck_survey_calls_q3_range')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_survey_calls_resident_id_residents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_calls')),
    sa.UniqueConstraint('resident_id', 'month', name=op.f('uq_survey_calls_resident_id'))
    )
    with op.batch_alter_table('survey_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_survey_calls_resident_id'), ['resident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_survey_calls_status'), ['status'], unique=False)

    op.create_table('family_invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('email_status', sa.String(length=10), nullable=False),
    sa.Column('email_attempts', sa.Integer(), nullable=False),
    sa.Column('email_error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['resident_contacts.id'], name=op.f('fk_family_invites_contact_id_resident_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_family_invites_resident_id_residents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], name=op.f('fk_family_invites_user_id_web_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_family_invites')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_family_invites_token_hash'))
    )
    with op.batch_alter_table('family_invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_family_invites_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_family_invites_resident_id'), ['resident_id'], unique=False)

    op.create_table('lateness_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=254), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'unanswered', 'failed', 'skipped')", name=op.f('ck_lateness_notices_status_known')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_lateness_notices_resident_id_residents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_lateness_notices_visit_id_visits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lateness_notices')),
    sa.UniqueConstraint('visit_id', name=op.f('uq_lateness_notices_visit_id'))
    )
    with op.batch_alter_table('lateness_notices', schema=None) as batch_op:
        batch_op.create_index('ix_lateness_notices_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lateness_notices_resident_id'), ['resident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lateness_notices_status'), ['status'], unique=False)

    op.create_table('notice_preferences',
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('lateness_consent', sa.Boolean(), nullable=False),
    sa.Column('lateness_channel', sa.String(length=16), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('lateness_minutes', sa.Integer(), nullable=False),
    sa.Column('quiet_start', sa.Integer(), nullable=True),
    sa.Column('quiet_end', sa.Integer(), nullable=True),
    sa.Column('do_not_call', sa.Boolean(), nullable=False),
    sa.Column('survey_consent', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.String(length=80), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("lateness_channel IN ('call_resident', 'call_contact', 'email_contact')", name=op.f('ck_notice_preferences_channel_known')),
    sa.CheckConstraint('lateness_minutes BETWEEN 1 AND 120', name=op.f('ck_notice_preferences_minutes_range')),
    sa.CheckConstraint('quiet_end IS NULL OR quiet_end BETWEEN 0 AND 1439', name=op.f('ck_notice_preferences_quiet_end_range')),
    sa.CheckConstraint('quiet_start IS NULL OR quiet_start BETWEEN 0 AND 1439', name=op.f('ck_notice_preferences_quiet_start_range')),
    sa.ForeignKeyConstraint(['contact_id'], ['resident_contacts.id'], name=op.f('fk_notice_preferences_contact_id_resident_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_notice_preferences_resident_id_residents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resident_id', name=op.f('pk_notice_preferences'))
    )
    op.create_table('outside_scopes',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('funder', sa.String(length=80), nullable=True),
    sa.CheckConstraint('(resident_id IS NULL) <> (funder IS NULL)', name=op.f('ck_outside_scopes_one_scope')),
    sa.ForeignKeyConstraint(['contact_id'], ['resident_contacts.id'], name=op.f('fk_outside_scopes_contact_id_resident_contacts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_outside_scopes_resident_id_residents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['web_users.id'], name=op.f('fk_outside_scopes_user_id_web_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_outside_scopes'))
    )
    with op.batch_alter_table('outside_scopes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outside_scopes_resident_id'), ['resident_id'], unique=False)

    op.create_table('notice_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['notice_id'], ['lateness_notices.id'], name=op.f('fk_notice_events_notice_id_lateness_notices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_events'))
    )
    with op.batch_alter_table('notice_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_events_notice_id'), ['notice_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('notice_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notice_events_notice_id'))

    op.drop_table('notice_events')
    with op.batch_alter_table('outside_scopes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outside_scopes_resident_id'))

    op.drop_table('outside_scopes')
    op.drop_table('notice_preferences')
    with op.batch_alter_table('lateness_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lateness_notices_status'))
        batch_op.drop_index(batch_op.f('ix_lateness_notices_resident_id'))
        batch_op.drop_index('ix_lateness_notices_due')

    op.drop_table('lateness_notices')
    with op.batch_alter_table('family_invites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_family_invites_resident_id'))
        batch_op.drop_index(batch_op.f('ix_family_invites_contact_id'))

    op.drop_table('family_invites')
    with op.batch_alter_table('survey_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_survey_calls_status'))
        batch_op.drop_index(batch_op.f('ix_survey_calls_resident_id'))

    op.drop_table('survey_calls')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_status'))
        batch_op.drop_index(batch_op.f('ix_feedback_resident_id'))

    op.drop_table('feedback')
    op.execute("DELETE FROM web_users WHERE role IN ('family', 'commissioner')")
    _roles(OFFICE_ROLES)
