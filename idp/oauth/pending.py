"""Authorization requests waiting for the user (signing in, choosing an account,
raising the real-name level, choosing an organisation, consenting): kept in the store
as ``authz:<rid>`` for 10 minutes and validated again when they resume at
``/authorize/continue``."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field

from idp.core.store import Store
from idp.oauth.decision import Progress

PENDING_TTL = 600
MAX_RID_LENGTH = 64


@dataclass
class Pending:
    """An authorization request waiting for the user, and what the user did for it."""

    params: dict[str, list[str]]
    created: float
    consented: bool = False
    account_chosen: bool = False
    # the user chose to go on without the real-name level the client prefers
    level_declined: bool = False
    # the user chose an organisation for this request (an org_hint no longer insists)
    org_chosen: bool = False
    # the user chose to go on as themselves
    org_declined: bool = False
    rid: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def progress(self) -> Progress:
        return Progress(
            created=self.created,
            consented=self.consented,
            account_chosen=self.account_chosen,
            level_declined=self.level_declined,
            org_declined=self.org_declined,
        )


class PendingRequests:
    def __init__(self, store: Store) -> None:
        self._store = store

    def save(self, pending: Pending) -> None:
        self._store.set(_key(pending.rid), json.dumps(asdict(pending)).encode(), PENDING_TTL)

    def load(self, rid: str) -> Pending | None:
        if not rid or len(rid) > MAX_RID_LENGTH:
            return None
        raw = self._store.get(_key(rid))
        return Pending(**json.loads(raw)) if raw else None

    def drop(self, pending: Pending) -> None:
        self._store.delete(_key(pending.rid))


def _key(rid: str) -> str:
    return f"authz:{rid}"
