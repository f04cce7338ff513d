"""The records API's request and response bodies (pydantic), from which the OpenAPI
document's schemas are generated, so the document and the validation are one thing.

Requests are strict (no unknown fields, no "true" for a boolean, no "3" for a number)
and every field's rule is checked here, so a refusal names the field. Free text, the
external id and the result link must not carry an identity document number: records
are about applications, and the holder is named by account, never by number.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from accounts.identifiers import check_person_id
from accounts.records.models import RecordStatus

MAX_BODY_BYTES = 16 * 1024
_ID_NUMBER_SHAPE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_id_number(value: str) -> str:
    """Refuse a value holding a valid resident ID / permit number (18 characters with
    a valid address code, date and check character)."""
    for match in _ID_NUMBER_SHAPE.finditer(value):
        if check_person_id(match.group(0)).valid:
            raise ValueError("must not contain an identity document number")
    return value


def no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("must be an https:// URL")
    return value


Text = Annotated[str, AfterValidator(no_control), AfterValidator(no_id_number)]
ExternalId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"),
    AfterValidator(no_id_number),
]
ServiceName = Annotated[Text, Field(min_length=1, max_length=200)]
ItemCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Remark = Annotated[Text, Field(min_length=1, max_length=500)]
ResultUrl = Annotated[
    str,
    Field(max_length=2000, pattern=r"^https://", json_schema_extra={"format": "uri"}),
    AfterValidator(no_control),
    AfterValidator(https_url),
    AfterValidator(no_id_number),
]
CounterVisits = Annotated[StrictInt, Field(ge=0, le=1000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Subject(_Strict):
    """Whom the record is for, as the client knows them: ``person`` with the ``sub``
    the client received for the person (public or pairwise); ``organisation`` with the
    ``sub`` it received when the organisation was the subject, or the organisation's
    unified social credit code from an ``org`` claim."""

    type: Literal["person", "organisation"]
    sub: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")


class RecordCreate(_Strict):
    external_id: ExternalId
    subject: Subject
    service_name: ServiceName
    item_code: ItemCode
    status: RecordStatus = RecordStatus.SUBMITTED
    remark: Remark | None = None
    result_url: ResultUrl | None = None
    done_online: StrictBool = False
    counter_visits: CounterVisits = 0


class RecordUpdate(_Strict):
    """A change: a status transition (with an optional remark for the timeline), the
    result link, the counter visits, whether it was done online."""

    status: RecordStatus | None = None
    remark: Remark | None = None
    result_url: ResultUrl | None = None
    done_online: StrictBool | None = None
    counter_visits: CounterVisits | None = None


class TimelineEntry(BaseModel):
    at: datetime
    status: RecordStatus
    remark: str | None


class SubjectOut(BaseModel):
    type: Literal["person", "organisation"]
    sub: str


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    external_id: str
    subject: SubjectOut
    service_name: str
    item_code: str
    status: RecordStatus
    timeline: list[TimelineEntry]
    result_url: str | None
    done_online: bool
    counter_visits: int = Field(ge=0)
    satisfaction: int | None = Field(ge=1, le=5)
    created_at: datetime
    updated_at: datetime


class RecordList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[Record]
    total: int = Field(ge=0)
    offset: int = Field(ge=0)
    limit: int = Field(ge=1)


class Error(BaseModel):
    error: str
    error_description: str
    field: str | None = None
