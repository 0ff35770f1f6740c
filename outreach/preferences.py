"""A resident's notice preferences (spec §5.26, §5.34): consent, channel, quiet hours, do not call.

No row is "not asked, so no": :func:`effective` gives the defaults with consent off.
Every change is audited with before and after, as the office's other edits are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

from sqlalchemy.orm import Session

from ivr.models import AuditEntry, ResidentContact
from outreach.family import OutreachError
from outreach.models import NoticeChannel, NoticePreference

HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclasses.dataclass(frozen=True)
class Preferences:
    lateness_consent: bool = False
    lateness_channel: str = NoticeChannel.CALL_RESIDENT
    contact_id: int | None = None
    lateness_minutes: int = 15
    quiet_start: int | None = None
    quiet_end: int | None = None
    do_not_call: bool = False
    survey_consent: bool = False

    def in_quiet_hours(self, local: dt.datetime) -> bool:
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return False
        m = local.hour * 60 + local.minute
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= m < self.quiet_end
        return m >= self.quiet_start or m < self.quiet_end  # wraps midnight


FIELDS = [f.name for f in dataclasses.fields(Preferences)]


def effective(session: Session, resident_id: int) -> Preferences:
    row = session.get(NoticePreference, resident_id)
    if row is None:
        return Preferences()
    return Preferences(**{k: getattr(row, k) for k in FIELDS})


def hhmm(minutes: int | None) -> str:
    return "" if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hhmm(text: str, name: str) -> int | None:
    if not text:
        return None
    m = HHMM.match(text)
    if not m:
        raise OutreachError(f"{name} must be a time HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_form(values: dict[str, str]) -> Preferences:
    """Checked preferences from the office form's fields; bad input is named and nothing changes."""
    errors = []
    channel = values.get("lateness_channel", NoticeChannel.CALL_RESIDENT)
    if channel not in NoticeChannel.ALL:
        errors.append("choose how the resident is told")
    minutes_text = values.get("lateness_minutes", "15") or "15"
    minutes = int(minutes_text) if minutes_text.isdigit() and len(minutes_text) < 4 else -1
    if not 1 <= minutes <= 120:
        errors.append("minutes late must be between 1 and 120")
    contact_text = values.get("contact_id", "")
    contact_id = int(contact_text) if contact_text.isdigit() and len(contact_text) < 10 else None
    if channel != NoticeChannel.CALL_RESIDENT and contact_id is None:
        errors.append("choose the contact to call or e-mail")
    try:
        quiet_start = parse_hhmm(values.get("quiet_start", ""), "quiet hours from")
        quiet_end = parse_hhmm(values.get("quiet_end", ""), "quiet hours until")
        if (quiet_start is None) != (quiet_end is None):
            errors.append("give both ends of the quiet hours, or neither")
    except OutreachError as exc:
        errors.append(str(exc))
        quiet_start = quiet_end = None
    if errors:
        raise OutreachError("; ".join(errors))
    on = ("on", "yes", "1")
    return Preferences(lateness_consent=values.get("lateness_consent", "") in on, lateness_channel=channel,
                       contact_id=contact_id if channel != NoticeChannel.CALL_RESIDENT else None,
                       lateness_minutes=minutes, quiet_start=quiet_start, quiet_end=quiet_end,
                       do_not_call=values.get("do_not_call", "") in on,
                       survey_consent=values.get("survey_consent", "") in on)


def save(session: Session, resident_id: int, prefs: Preferences, actor: str, now: dt.datetime) -> None:
    if prefs.contact_id is not None:
        contact = session.get(ResidentContact, prefs.contact_id)
        if contact is None or contact.resident_id != resident_id:
            raise OutreachError("that contact is not one of this resident's")
        if prefs.lateness_channel == NoticeChannel.EMAIL_CONTACT and "@" not in contact.email:
            raise OutreachError("that contact has no e-mail address")
        if prefs.lateness_channel == NoticeChannel.CALL_CONTACT and not (contact.phone_e164 or contact.phone2_e164):
            raise OutreachError("that contact has no phone number")
    row = session.get(NoticePreference, resident_id)
    before: dict[str, Any] = dataclasses.asdict(effective(session, resident_id))
    if row is None:
        row = NoticePreference(resident_id=resident_id)
        session.add(row)
    for k in FIELDS:
        setattr(row, k, getattr(prefs, k))
    row.updated_by, row.updated_at = actor, now
    session.add(AuditEntry(at=now, actor=actor, action="notice_preferences", entity="resident",
                           entity_id=str(resident_id), before=json.dumps(before),
                           after=json.dumps(dataclasses.asdict(prefs))))
