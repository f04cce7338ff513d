"""What the organisation pages call roles, statuses, kinds, scopes and audit events, in
the reader's language (one place, so the two pages and any later one agree)."""

from __future__ import annotations

from collections.abc import Mapping

from flask_babel import gettext as _

from accounts.organisations.history import Activity, ActorKind
from accounts.organisations.models import Authorisation, AuthorisationStatus, OrganisationKind, Role


def role(value: Role) -> str:
    names = {
        Role.LEGAL_REPRESENTATIVE: _("Legal representative"),
        Role.ADMINISTRATOR: _("Administrator"),
        Role.AGENT: _("Agent"),
    }
    return str(names[value])


def status(authorisation: Authorisation, live: bool) -> str:
    value = authorisation.status
    if value is AuthorisationStatus.ACTIVE:
        return str(_("In force") if live else _("Not in force (outside its dates)"))
    names = {
        AuthorisationStatus.PENDING: _("Waiting for confirmation"),
        AuthorisationStatus.REVOKED: _("Revoked"),
        AuthorisationStatus.RENOUNCED: _("Given up"),
        AuthorisationStatus.ENDED: _("Ended"),
    }
    return str(names[value])


def holder(authorisation: Authorisation, usernames: Mapping[int, str]) -> str:
    """Who holds it, as the organisation's page says: the account's username once its
    holder has confirmed; before that only how it was offered, so that the list
    cannot tell an administrator whether a username they invited exists."""
    if authorisation.confirmed_at is None or authorisation.user_id is None:
        if authorisation.invitee_index is not None:
            return str(_("Invited by document number"))
        return str(_("Invited by username"))
    return usernames.get(authorisation.user_id, "")


def kind(value: OrganisationKind) -> str:
    names = {
        OrganisationKind.ENTERPRISE: _("Enterprise or institution"),
        OrganisationKind.INTERMEDIARY: _("Intermediary"),
        OrganisationKind.DEPARTMENT: _("Government department"),
    }
    return str(names[value])


def scope(authorisation: Authorisation) -> str:
    services = (
        _("All services")
        if authorisation.all_services
        else _("Services: %(clients)s", clients=", ".join(authorisation.clients))
    )
    if authorisation.scopes:
        return str(
            _(
                "%(services)s; scopes: %(scopes)s",
                services=services,
                scopes=" ".join(authorisation.scopes),
            )
        )
    return str(services)


def event(name: str) -> str:
    names = {
        "org.claim": _("Claimed by the legal representative"),
        "org.authorise": _("Authorisation offered"),
        "org.confirm": _("Authorisation confirmed"),
        "org.revoke": _("Authorisation revoked"),
        "org.renounce": _("Authorisation given up"),
        "org.representative_changed": _("Legal representative changed"),
        "org.verify": _("Organisation verified"),
    }
    return str(names.get(name, name))


def actor(activity: Activity) -> str:
    if activity.actor_kind == ActorKind.MEMBER and activity.actor_role is not None:
        return str(
            _(
                "%(role)s (authorisation %(id)s)",
                role=role(activity.actor_role),
                id=short(activity.actor_authorisation),
            )
        )
    names = {
        ActorKind.OUTSIDER: _("Someone outside the organisation"),
        ActorKind.OPERATOR: _("A platform operator"),
        ActorKind.STAFF: _("Government staff"),
        ActorKind.PLATFORM: _("The platform"),
    }
    return str(names.get(activity.actor_kind, _("The platform")))


def short(public_id: str | None) -> str:
    """The first block of a public id: enough to tell the rows of one page apart."""
    return (public_id or "").split("-", 1)[0]
