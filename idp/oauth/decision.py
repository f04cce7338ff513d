"""What a valid authorization request needs next: a pure function of what is known.

``decide`` reads what the request asks (``Ask``), what the user already did for it
(``Progress``) and the browser's sign-in (``SignedIn``, None without one), and answers
one of: sign in (``SignIn``), choose an account (``SelectAccount``), raise the
real-name level (``StepUp``), choose the organisation to act for
(``ChooseOrganisation``), consent (``Consent``), issue a code with the ``acr`` reached
and the organisation authorisation, if any (``Issue``), or an error for the client
(``Refuse``). With ``prompt=none`` each
interaction is an error instead. It reads no request, session, store or database:
``idp.oauth.authorize`` gathers the facts and carries the decision out, and
tests/oauth/test_authorize_decision.py states every case as a table row.

In order:

1. Sign in when there is no sign-in, when ``prompt=login`` or ``max_age`` wants a
   newer one, when ``id_token_hint`` names someone else, or when the client asks for
   the MFA ``acr`` and the account has a second factor the sign-in did not use. A
   sign-in made for this very request that still does not do is ``login_required``.
2. ``prompt=select_account``: choose an account, once.
3. The real-name level (``assurance.LevelDemand``): below it, step up; declining is
   ``unmet_authentication_requirements`` when the level is required and otherwise
   goes on with the ``acr`` reached.
4. An essential ``acr`` claim that nothing satisfied:
   ``unmet_authentication_requirements``.
5. The organisation (scope ``enterprise``, or a client that requires one): unless the
   session acts under an authorisation that permits this client and scopes, choose
   one (``prompt=none``: ``interaction_required``). Going on as oneself drops the
   ``enterprise`` scope; for a client that requires an organisation it is
   ``access_denied``.
6. Consent, for a third-party client: asked by ``prompt=consent``, or needed for
   scopes not consented before.
7. Issue.

Three facts cost a query, and are read only when they matter: the account's level
(``needs_level``), whether a remembered consent covers the request
(``needs_consent_lookup``) and the session's organisation authorisation
(``Ask.wants_org``); the caller may leave them at their defaults otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.oauth.assurance import AcrPolicy, LevelDemand

LOGIN_REQUIRED = "login_required"
ACCOUNT_SELECTION_REQUIRED = "account_selection_required"
INTERACTION_REQUIRED = "interaction_required"
CONSENT_REQUIRED = "consent_required"
UNMET_AUTHENTICATION_REQUIREMENTS = "unmet_authentication_requirements"
ACCESS_DENIED = "access_denied"


@dataclass(frozen=True)
class Ask:
    """What a validated request asks of the user."""

    prompts: frozenset[str] = frozenset()
    max_age: int | None = None
    # the ``sub`` of the request's id_token_hint
    hint_subject: str | None = None
    # ``acr_values``, in order of preference
    acr_values: tuple[str, ...] = ()
    # the values of an essential ``acr`` claim (they win over acr_values)
    essential_acr: tuple[str, ...] | None = None
    client_min_level: int = 1
    first_party: bool = False
    # the scope ``enterprise``, or a client that requires an organisation
    wants_org: bool = False
    # the client never takes a personal-only token
    requires_org: bool = False

    @property
    def requested_acr(self) -> tuple[str, ...]:
        return self.essential_acr or self.acr_values


@dataclass(frozen=True)
class Progress:
    """What the user already did for this request (kept with the pending request)."""

    created: float  # when the request first arrived
    consented: bool = False
    account_chosen: bool = False
    level_declined: bool = False
    # the user chose to go on as themselves, not for an organisation
    org_declined: bool = False


@dataclass(frozen=True)
class SignedIn:
    """The browser's sign-in, and the facts about its account that the decision reads."""

    auth_time: float
    amr: tuple[str, ...]
    has_second_factor: bool
    # the user's ``sub`` for this client: read only when the request has an
    # id_token_hint (compared with its ``sub``)
    subject: str | None = None
    # the account's real-name level: read only when ``needs_level``
    level: int = 1
    # a remembered consent covers the request: read only when ``needs_consent_lookup``
    consent_covers: bool = False
    # the public id of the session's organisation authorisation, when it is live and
    # permits this client and scopes: read only when ``Ask.wants_org``
    authorisation: str | None = None


@dataclass(frozen=True)
class SignIn:
    """Send the browser to sign in; ``reauth``: although a session exists."""

    reauth: bool


@dataclass(frozen=True)
class SelectAccount:
    """Let the user choose the signed-in account, or another."""


@dataclass(frozen=True)
class StepUp:
    """Offer raising the real-name level from ``current`` to ``wanted``."""

    wanted: int
    current: int
    required: bool


@dataclass(frozen=True)
class ChooseOrganisation:
    """Let the user choose the organisation to act for (or themselves)."""


@dataclass(frozen=True)
class Consent:
    """Ask the user to consent to the client's request."""


@dataclass(frozen=True)
class Issue:
    """Issue the authorization code, with the ``acr`` the sign-in reached and the
    organisation authorisation the person acts under (None: for themselves)."""

    acr: str
    authorisation: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Send the client this error (OpenID Connect Core 3.1.2.6 and the like)."""

    error: str
    description: str | None = None


Decision = SignIn | SelectAccount | StepUp | ChooseOrganisation | Consent | Issue | Refuse


def needs_level(ask: Ask, policy: AcrPolicy) -> bool:
    """The account's real-name level matters: the client has a minimum, or asks for an
    acr value that stands for a level."""
    return ask.client_min_level > 1 or any(policy.level_of(value) for value in ask.requested_acr)


def needs_consent_lookup(ask: Ask, progress: Progress) -> bool:
    """Whether a remembered consent covers the request decides if the user is asked."""
    return not ask.first_party and not progress.consented and "consent" not in ask.prompts


def decide(
    ask: Ask, progress: Progress, signed_in: SignedIn | None, *, policy: AcrPolicy, now: float
) -> Decision:
    if signed_in is None or _must_sign_in(ask, progress, signed_in, policy, now):
        if signed_in is not None and _fresh(signed_in, progress):
            # signed in for this request, but not as the user the ID token hint names
            return Refuse(LOGIN_REQUIRED)
        return _interact(ask, SignIn(reauth=signed_in is not None), Refuse(LOGIN_REQUIRED))
    amr = signed_in.amr
    level = signed_in.level if needs_level(ask, policy) else 1
    if "select_account" in ask.prompts and not progress.account_chosen:
        return _interact(ask, SelectAccount(), Refuse(ACCOUNT_SELECTION_REQUIRED))
    demand = LevelDemand.of(
        policy,
        client_min_level=ask.client_min_level,
        essential=ask.essential_acr,
        preferred=ask.acr_values,
        amr=amr,
        level=level,
    )
    if demand.unmet(level) and (demand.required or not progress.level_declined):
        return _step_up(ask, progress, demand, level)
    achieved = policy.achieved(ask.requested_acr, amr, level)
    if ask.essential_acr and achieved not in ask.essential_acr:
        return _unmet()
    authorisation = signed_in.authorisation if ask.wants_org else None
    if ask.wants_org and authorisation is None:
        choice = _organisation(ask, progress)
        if choice is not None:
            return choice
    if _needs_consent(ask, progress, signed_in):
        return _interact(ask, Consent(), Refuse(CONSENT_REQUIRED))
    return Issue(acr=achieved, authorisation=authorisation)


def _organisation(ask: Ask, progress: Progress) -> Decision | None:
    """The session acts for no organisation that fits the request: choose one, or
    (having declined) go on as oneself, which a client requiring one refuses."""
    if progress.org_declined:
        if ask.requires_org:
            return Refuse(
                ACCESS_DENIED, "The service serves organisations only; the user chose none."
            )
        return None
    return _interact(
        ask,
        ChooseOrganisation(),
        Refuse(
            INTERACTION_REQUIRED,
            "The user must choose the organisation they act for interactively.",
        ),
    )


def _interact(ask: Ask, interaction: Decision, refusal: Refuse) -> Decision:
    """The interaction, or with ``prompt=none`` the error instead."""
    return refusal if "none" in ask.prompts else interaction


def _step_up(ask: Ask, progress: Progress, demand: LevelDemand, level: int) -> Decision:
    """The account's real-name level is below what the client asks for."""
    if "none" in ask.prompts:
        return Refuse(
            INTERACTION_REQUIRED,
            f"The service requires real-name level {demand.level}; the user must "
            "raise it interactively.",
        )
    if demand.required and progress.level_declined:
        return _unmet(f"real-name level {demand.level} is required")
    return StepUp(wanted=demand.level, current=level, required=demand.required)


def _fresh(signed_in: SignedIn, progress: Progress) -> bool:
    """Signed in for this very request."""
    return signed_in.auth_time >= progress.created


def _must_sign_in(
    ask: Ask, progress: Progress, signed_in: SignedIn, policy: AcrPolicy, now: float
) -> bool:
    fresh = _fresh(signed_in, progress)
    if "login" in ask.prompts and not fresh:
        return True
    if ask.max_age is not None and now - signed_in.auth_time > ask.max_age and not fresh:
        return True
    if ask.hint_subject is not None and signed_in.subject != ask.hint_subject:
        return True
    # a step-up: the client asks for the MFA level, the sign-in did not reach it (the
    # acr policy's table) and the account can give a second factor
    return (
        policy.mfa in ask.requested_acr
        and policy.strength(signed_in.amr) != policy.mfa
        and signed_in.has_second_factor
    )


def _needs_consent(ask: Ask, progress: Progress, signed_in: SignedIn) -> bool:
    if ask.first_party:
        return False
    if "consent" in ask.prompts and not progress.consented:
        return True
    return not (progress.consented or signed_in.consent_covers)


def _unmet(reason: str | None = None) -> Refuse:
    return Refuse(
        UNMET_AUTHENTICATION_REQUIREMENTS,
        "The sign-in cannot reach the authentication level the client requires"
        + (f" ({reason})." if reason else "."),
    )
