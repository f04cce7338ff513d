"""What a record's status is called on the pages (the holder's records, the hall's
statistics)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from accounts.records.models import RecordStatus

STATUS_LABELS = {
    RecordStatus.SUBMITTED: _l("Submitted"),
    RecordStatus.ACCEPTED: _l("Accepted"),
    RecordStatus.IN_PROGRESS: _l("In progress"),
    RecordStatus.MORE_INFO_NEEDED: _l("More information needed"),
    RecordStatus.COMPLETED: _l("Completed"),
    RecordStatus.REJECTED: _l("Rejected"),
}
