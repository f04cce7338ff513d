"""SCIM provisioning of accounts (RFC 7644 3.3-3.6): one client's view of the accounts
it created.

A client sees and changes only the accounts it provisioned (``ScimUser`` rows with its
client id); an account registered here or provisioned by another client does not
exist for it, and creating one with a taken ``userName`` is a ``uniqueness`` conflict.
Every change is one transaction: the account, its SCIM record and the audit events
commit together (a refusal leaves nothing behind). ``active: false`` and ``DELETE``
disable the account through ``AccountService.set_status``, as an operator's
``idp users disable`` does: its sessions end (back-channel logout to its services) and
its grants are revoked. After ``DELETE`` the resource answers 404; the account stays,
disabled, with its history (decision 38).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    Email,
    InvalidPathException,
    InvalidSyntaxException,
    InvalidValueException,
    Meta,
    NotFoundException,
    PatchOp,
    PreconditionFailedException,
    SCIMException,
    UniquenessException,
)
from sqlalchemy import Select, case, select, update
from sqlalchemy.orm import Session

from accounts.errors import AccountError
from accounts.people.errors import UsernameTaken
from accounts.people.services import (
    ACTIVE_STATUS,
    DISABLED_STATUS,
    AccountService,
    UserColumns,
)
from accounts.realname.services import RealNameService
from federation.scim import filters
from federation.scim.models import ScimUser as ScimRecord
from federation.scim.schema import (
    CITY_USER,
    CORE_USER,
    MAX_RESULTS,
    PATCH_OP,
    CityUser,
    ScimUser,
)
from idp.core.audit.services import AuditLog
from idp.core.clock import Clock

if TYPE_CHECKING:
    from accounts.people.models import User

EXTERNAL_ID_MAX = 255
KNOWN_SCHEMAS = {CORE_USER.lower(), CITY_USER.lower()}


@dataclass(frozen=True)
class Query:
    """A list request: filter, sort and page (RFC 7644 3.4.2)."""

    filter: str | None = None
    sort_by: str | None = None
    descending: bool = False
    start_index: int = 1
    count: int = MAX_RESULTS


@dataclass(frozen=True)
class Page:
    total: int
    start_index: int
    resources: list[ScimUser]


def scim_error(exc: ValidationError) -> SCIMException:
    """The SCIM error a model validation failure stands for (``scim2-models`` puts its
    scimType into the error's context; a type error is an invalid value)."""
    for error in exc.errors():
        context = error.get("ctx") or {}
        scim_type = context.get("scim_type")
        if scim_type:
            status = int(context.get("status", 400))
            found = SCIMException(detail=str(error.get("msg", "invalid request")))
            found.status, found.scim_type = status, str(scim_type)
            return found
    errors = exc.errors()
    if not errors:
        return InvalidValueException(detail="invalid value")
    where = ".".join(str(part) for part in errors[0]["loc"])
    message = errors[0]["msg"]
    return InvalidValueException(detail=f"{where}: {message}" if where else message)


def etag_of(resource: ScimUser) -> str:
    """A weak entity tag over the representation (anything that changes what the
    client reads changes it, including changes made here rather than over SCIM)."""
    body = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body.get("meta", {}).pop("version", None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    return f'W/"{digest}"'


def matches(if_match: str | None, etag: str) -> bool:
    """``If-Match`` (RFC 9110 13.1.1, weak comparison as SCIM's weak tags need)."""
    if if_match is None:
        return True
    wanted = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    bare = etag.removeprefix("W/")
    return any(tag == "*" or tag.removeprefix("W/") == bare for tag in wanted)


class ProvisioningService:
    def __init__(
        self,
        session: Session,
        accounts: AccountService,
        realname: RealNameService,
        audit: AuditLog,
        clock: Clock,
        *,
        client_id: str,
        base_url: str,
    ) -> None:
        self._session = session
        self._accounts = accounts
        self._realname = realname
        self._audit = audit
        self._clock = clock
        self._client_id = client_id
        self._base = base_url.rstrip("/")

    # -- reading --------------------------------------------------------------------------

    def get(self, public_id: str) -> ScimUser:
        user, record = self._find(public_id)
        return self._resource(user, record)

    def search(self, query: Query) -> Page:
        def shape(statement: Select[User], columns: UserColumns) -> Select[User]:
            attributes = self._attributes(columns)
            statement = statement.join(ScimRecord, ScimRecord.user_id == columns.id).where(
                ScimRecord.client_id == self._client_id, ScimRecord.deleted_at.is_(None)
            )
            if query.filter is not None:
                statement = statement.where(filters.condition(query.filter, attributes))
            if query.sort_by is not None:
                sort = attributes.get(query.sort_by.lower())
                if sort is None:
                    raise InvalidPathException(detail=f"Cannot sort by {query.sort_by!r}.")
                column = sort.column
                order = (
                    column.desc().nulls_first() if query.descending else column.asc().nulls_last()
                )
                statement = statement.order_by(order, ScimRecord.id)
            else:
                statement = statement.order_by(ScimRecord.id)
            return statement

        start = max(query.start_index, 1)
        count = min(max(query.count, 0), MAX_RESULTS)
        total = self._accounts.count(shape)
        if count == 0:
            return Page(total, start, [])

        def page(statement: Select[User], columns: UserColumns) -> Select[User]:
            return shape(statement, columns).offset(start - 1).limit(count)

        users = self._accounts.search(page)
        records = {
            record.user_id: record
            for record in self._session.scalars(
                select(ScimRecord).where(ScimRecord.user_id.in_([user.id for user in users]))
            )
        }
        return Page(total, start, [self._resource(user, records[user.id]) for user in users])

    def _attributes(self, columns: UserColumns) -> dict[str, filters.Attribute]:
        modified = case(
            (columns.updated_at > ScimRecord.last_modified, columns.updated_at),
            else_=ScimRecord.last_modified,
        )
        return {
            "id": filters.Attribute(columns.public_id, filters.Kind.EXACT),
            "username": filters.Attribute(columns.username_key, filters.Kind.FOLDED),
            "externalid": filters.Attribute(ScimRecord.external_id, filters.Kind.EXACT),
            "displayname": filters.Attribute(columns.display_name, filters.Kind.EXACT),
            "emails": filters.Attribute(columns.email, filters.Kind.LOWER),
            "emails.value": filters.Attribute(columns.email, filters.Kind.LOWER),
            "active": filters.Attribute(
                columns.status, filters.Kind.BOOLEAN, (ACTIVE_STATUS, DISABLED_STATUS)
            ),
            "meta.created": filters.Attribute(columns.created_at, filters.Kind.TIME),
            "meta.lastmodified": filters.Attribute(modified, filters.Kind.TIME),
        }

    # -- writing --------------------------------------------------------------------------

    def create(self, payload: Mapping[str, Any]) -> ScimUser:
        wanted = self._validated(payload, Context.RESOURCE_CREATION_REQUEST)
        try:
            email, external = _email_of(wanted), _external_id(wanted.external_id)
        except SCIMException as exc:
            self._refused("scim.user.create", exc.scim_type or "invalidValue")
            raise
        try:
            user = self._accounts.provision(
                wanted.user_name or "",
                display_name=wanted.display_name,
                email=email,
                password=wanted.password,
                active=wanted.active is not False,
            )
        except UsernameTaken:
            self._refused("scim.user.create", "uniqueness")
            raise UniquenessException(detail="That userName is already taken.") from None
        except AccountError as exc:
            self._refused("scim.user.create", "invalidValue")
            raise InvalidValueException(detail=str(exc)) from None
        now = self._clock.now()
        record = ScimRecord(
            user_id=user.id,
            client_id=self._client_id,
            external_id=external,
            created_at=now,
            last_modified=now,
        )
        self._session.add(record)
        self._session.flush()
        self._audit.record(
            "scim.user.create",
            subject=user.subject,
            details={"client": self._client_id, "active": wanted.active is not False},
        )
        self._session.commit()
        return self._resource(user, record)

    def replace(
        self, public_id: str, payload: Mapping[str, Any], *, if_match: str | None
    ) -> ScimUser:
        user, record = self._find(public_id, for_update=True)
        self._check_version(user, record, if_match, "scim.user.replace")
        # a readOnly "id" sent in the body is ignored (RFC 7644 3.5.1), as scim2-models does
        wanted = self._validated(payload, Context.RESOURCE_REPLACEMENT_REQUEST)
        return self._apply(user, record, wanted, "scim.user.replace")

    def patch(
        self, public_id: str, payload: Mapping[str, Any], *, if_match: str | None
    ) -> ScimUser:
        user, record = self._find(public_id, for_update=True)
        self._check_version(user, record, if_match, "scim.user.patch")
        schemas = payload.get("schemas")
        if not isinstance(schemas, list) or PATCH_OP not in schemas:
            self._refused("scim.user.patch", "invalidSyntax", user)
            raise InvalidSyntaxException(detail=f"schemas must list {PATCH_OP}.")
        try:
            operations = PatchOp[ScimUser].model_validate(
                payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST
            )
        except ValidationError as exc:
            error = scim_error(exc)
            self._refused("scim.user.patch", error.scim_type or "invalidValue", user)
            raise error from None
        resource = self._resource(user, record)
        try:
            operations.patch(resource)
        except SCIMException as exc:
            self._refused("scim.user.patch", exc.scim_type or "invalidValue", user)
            raise
        except ValidationError as exc:
            error = scim_error(exc)
            self._refused("scim.user.patch", error.scim_type or "invalidValue", user)
            raise error from None
        return self._apply(user, record, resource, "scim.user.patch")

    def delete(self, public_id: str, *, if_match: str | None) -> None:
        user, record = self._find(public_id, for_update=True)
        self._check_version(user, record, if_match, "scim.user.delete")
        record.deleted_at = record.last_modified = self._clock.now()
        self._audit.record(
            "scim.user.delete", subject=user.subject, details={"client": self._client_id}
        )
        if user.status != DISABLED_STATUS:
            # commits the record and the audit event with the status
            self._accounts.set_status(user, DISABLED_STATUS)
        else:
            self._session.commit()

    # -- helpers --------------------------------------------------------------------------

    def _validated(self, payload: Mapping[str, Any], context: Context) -> ScimUser:
        event = (
            "scim.user.create"
            if context is Context.RESOURCE_CREATION_REQUEST
            else "scim.user.replace"
        )
        schemas = payload.get("schemas")
        if (
            not isinstance(schemas, list)
            or not all(isinstance(s, str) for s in schemas)
            or CORE_USER.lower() not in {s.lower() for s in schemas}
        ):
            self._refused(event, "invalidSyntax")
            raise InvalidSyntaxException(detail=f"schemas must list {CORE_USER}.")
        unknown = [s for s in schemas if s.lower() not in KNOWN_SCHEMAS]
        if unknown:
            self._refused(event, "invalidValue")
            raise InvalidValueException(detail=f"Unknown schema {unknown[0]!r}.")
        try:
            wanted = ScimUser.model_validate(dict(payload), scim_ctx=context)
        except ValidationError as exc:
            error = scim_error(exc)
            self._refused(event, error.scim_type or "invalidValue")
            raise error from None
        return wanted

    def _apply(self, user: User, record: ScimRecord, wanted: ScimUser, event: str) -> ScimUser:
        try:
            email, external = _email_of(wanted), _external_id(wanted.external_id)
        except SCIMException as exc:
            self._refused(event, exc.scim_type or "invalidValue", user)
            raise
        try:
            changed = self._accounts.update_provisioned(
                user,
                username=wanted.user_name or "",
                display_name=wanted.display_name,
                email=email,
                password=wanted.password,
            )
        except UsernameTaken:
            self._session.rollback()
            self._refused(event, "uniqueness", user)
            raise UniquenessException(detail="That userName is already taken.") from None
        except AccountError as exc:
            self._session.rollback()
            self._refused(event, "invalidValue", user)
            raise InvalidValueException(detail=str(exc)) from None
        status = user.status
        if wanted.active is not None:
            status = ACTIVE_STATUS if wanted.active else DISABLED_STATUS
        if external != record.external_id:
            record.external_id = external
            changed = True
        if changed or status != user.status:
            record.last_modified = self._clock.now()
            self._audit.record(
                event,
                subject=user.subject,
                details={"client": self._client_id, "active": status == ACTIVE_STATUS},
            )
        if status != user.status:
            # commits everything above with the status; disabling ends the account's
            # sessions (back-channel logout) and revokes its grants
            self._accounts.set_status(user, status)
        else:
            self._session.commit()
        return self._resource(user, record)

    def _find(self, public_id: str, *, for_update: bool = False) -> tuple[User, ScimRecord]:
        """The client's live resource. ``for_update``: its SCIM row is locked until the
        transaction ends (a no-op ``UPDATE``: a row lock on PostgreSQL, the write lock on
        SQLite, where ``FOR UPDATE`` does nothing), so the ``If-Match`` check and the
        write it allows cannot interleave with another request's (no lost update)."""

        def shape(statement: Select[User], columns: UserColumns) -> Select[User]:
            return (
                statement.join(ScimRecord, ScimRecord.user_id == columns.id)
                .where(
                    columns.public_id == public_id,
                    ScimRecord.client_id == self._client_id,
                    ScimRecord.deleted_at.is_(None),
                )
                .limit(1)
            )

        found = self._accounts.search(shape) if len(public_id) <= 64 else []
        if not found:
            raise NotFoundException(detail="There is no such User.")
        user = found[0]
        if for_update:
            self._session.execute(
                update(ScimRecord)
                .where(ScimRecord.user_id == user.id)
                .values(last_modified=ScimRecord.last_modified),
                execution_options={"synchronize_session": False},
            )
        record = self._session.scalar(select(ScimRecord).where(ScimRecord.user_id == user.id))
        if record is None or record.deleted_at is not None:
            raise NotFoundException(detail="There is no such User.")
        if for_update:
            # read again under the lock: another request may have changed it meanwhile
            self._session.refresh(user)
            self._session.refresh(record)
            if record.deleted_at is not None:
                raise NotFoundException(detail="There is no such User.")
        return user, record

    def _check_version(
        self, user: User, record: ScimRecord, if_match: str | None, event: str
    ) -> None:
        if not matches(if_match, etag_of(self._resource(user, record))):
            self._refused(event, "preconditionFailed", user)
            raise PreconditionFailedException(
                detail="The resource changed since the version given in If-Match."
            )

    def _refused(self, event: str, reason: str, user: User | None = None) -> None:
        self._audit.record(
            event,
            "failure",
            subject=user.subject if user is not None else None,
            details={"client": self._client_id, "reason": reason},
        )
        self._session.commit()

    def _resource(self, user: User, record: ScimRecord) -> ScimUser:
        changed = user.updated_at or user.created_at
        modified = max(changed, record.last_modified)
        resource = ScimUser(
            id=user.public_id,
            external_id=record.external_id,
            user_name=user.username,
            display_name=user.display_name,
            active=user.status == ACTIVE_STATUS,
            emails=[Email(value=user.email, primary=True)] if user.email else None,
            meta=Meta(
                resource_type="User",
                created=user.created_at,
                last_modified=modified,
                location=f"{self._base}/Users/{user.public_id}",
            ),
        )
        resource[CityUser] = CityUser(real_name_level=self._realname.level(user))
        assert resource.meta is not None
        resource.meta.version = etag_of(resource)
        return resource


def _email_of(resource: ScimUser) -> str | None:
    emails: Sequence[Email] = resource.emails or []
    if len(emails) > 1:
        raise InvalidValueException(detail="This service keeps one e-mail address per account.")
    return str(emails[0].value) if emails and emails[0].value else None


def _external_id(value: str | None) -> str | None:
    if value is not None and len(value) > EXTERNAL_ID_MAX:
        raise InvalidValueException(detail=f"externalId: at most {EXTERNAL_ID_MAX} characters.")
    return value or None
