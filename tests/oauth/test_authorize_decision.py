"""What an authorization request needs next (``idp.oauth.decision.decide``), case by case.

Every row is a behaviour the authorization endpoint has (tests/oauth/test_basic_op.py
and test_assurance.py drive the same cases through the browser): the request's
``prompt``, ``max_age``, ``id_token_hint``, ``acr_values`` / essential ``acr`` and the
client's minimum level and party, against what the user already did and the session.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from idp.oauth.assurance import AcrPolicy
from idp.oauth.decision import (
    ACCOUNT_SELECTION_REQUIRED,
    CONSENT_REQUIRED,
    INTERACTION_REQUIRED,
    LOGIN_REQUIRED,
    UNMET_AUTHENTICATION_REQUIREMENTS,
    Ask,
    Consent,
    Decision,
    Issue,
    Progress,
    Refuse,
    SelectAccount,
    SignedIn,
    SignIn,
    StepUp,
    decide,
    needs_consent_lookup,
    needs_level,
)

PWD = "urn:dongguan:idp:acr:pwd"
MFA = "urn:dongguan:idp:acr:mfa"
LEVEL = "urn:dongguan:idp:acr:level"
POLICY = AcrPolicy(password=PWD, mfa=MFA, level_prefix=LEVEL)

SIGNED_IN_AT = 400.0  # before the request
CREATED = 1000.0  # the request arrived
NOW = 1010.0  # it is decided (resumed)
FRESH = CREATED + 5  # signed in for this request

ALICE = "alice-sub"
UNMET = "The sign-in cannot reach the authentication level the client requires"


def session(**values: Any) -> SignedIn:
    """Alice, signed in with a password before the request; her consent covers it."""
    base = SignedIn(
        auth_time=SIGNED_IN_AT,
        amr=("pwd",),
        has_second_factor=False,
        subject=ALICE,
        level=1,
        consent_covers=True,
    )
    return replace(base, **values)


def ask(**values: Any) -> Ask:
    """A third-party client's request with no OpenID Connect parameters."""
    return replace(Ask(), **values)


def progress(**values: Any) -> Progress:
    return replace(Progress(created=CREATED), **values)


NONE = frozenset({"none"})
LOGIN = frozenset({"login"})
CONSENT = frozenset({"consent"})
SELECT = frozenset({"select_account"})
NOTHING_DONE = progress()
REAUTH = SignIn(reauth=True)  # the form although a session exists
FIRST_SIGN_IN = SignIn(reauth=False)

# (id, ask, progress, session (None: no sign-in), decision)
CASES: list[tuple[str, Ask, Progress, SignedIn | None, Decision]] = [
    # -- signing in
    ("no session", ask(), NOTHING_DONE, None, FIRST_SIGN_IN),
    ("no session, prompt=none", ask(prompts=NONE), NOTHING_DONE, None, Refuse(LOGIN_REQUIRED)),
    ("signed in", ask(), NOTHING_DONE, session(), Issue(PWD)),
    ("signed in, prompt=none", ask(prompts=NONE), NOTHING_DONE, session(), Issue(PWD)),
    ("prompt=login, older sign-in", ask(prompts=LOGIN), NOTHING_DONE, session(), REAUTH),
    (
        "prompt=login, signed in for this request",
        ask(prompts=LOGIN),
        NOTHING_DONE,
        session(auth_time=FRESH),
        Issue(PWD),
    ),
    (
        "prompt=login, signed in the moment the request arrived",
        ask(prompts=LOGIN),
        NOTHING_DONE,
        session(auth_time=CREATED),
        Issue(PWD),
    ),
    ("max_age exceeded", ask(max_age=60), NOTHING_DONE, session(), REAUTH),
    ("max_age kept", ask(max_age=60), NOTHING_DONE, session(auth_time=NOW - 30), Issue(PWD)),
    (
        "max_age=0, signed in for this request",
        ask(max_age=0),
        NOTHING_DONE,
        session(auth_time=FRESH),
        Issue(PWD),
    ),
    (
        "max_age exceeded, prompt=none",
        ask(max_age=60, prompts=NONE),
        NOTHING_DONE,
        session(),
        Refuse(LOGIN_REQUIRED),
    ),
    ("hint names the user", ask(hint_subject=ALICE), NOTHING_DONE, session(), Issue(PWD)),
    ("hint names another", ask(hint_subject="carol"), NOTHING_DONE, session(), REAUTH),
    (
        "hint names another, signed in for this request",
        ask(hint_subject="carol"),
        NOTHING_DONE,
        session(auth_time=FRESH),
        Refuse(LOGIN_REQUIRED),
    ),
    (
        "hint names another, prompt=none",
        ask(hint_subject="carol", prompts=NONE),
        NOTHING_DONE,
        session(),
        Refuse(LOGIN_REQUIRED),
    ),
    # -- the MFA level: a second factor where the account has one
    (
        "MFA asked, one factor used, account has TOTP",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(has_second_factor=True),
        REAUTH,
    ),
    (
        "MFA asked, prompt=none",
        ask(acr_values=(MFA,), prompts=NONE),
        NOTHING_DONE,
        session(has_second_factor=True),
        Refuse(LOGIN_REQUIRED),
    ),
    (
        "MFA asked, signed in for this request without the second factor",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(has_second_factor=True, auth_time=FRESH),
        Refuse(LOGIN_REQUIRED),
    ),
    (
        "MFA asked, both factors used",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(amr=("pwd", "otp"), has_second_factor=True),
        Issue(MFA),
    ),
    (
        "MFA asked, a certificate on a hardware key used (the acr table: hwk is MFA)",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(amr=("hwk",), has_second_factor=True),
        Issue(MFA),
    ),
    (
        "MFA asked, an upstream provider without mfa used, account has TOTP",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(amr=("fed",), has_second_factor=True),
        REAUTH,
    ),
    (
        "MFA preferred, no second factor: the password acr",
        ask(acr_values=(MFA,)),
        NOTHING_DONE,
        session(),
        Issue(PWD),
    ),
    (
        "MFA essential, no second factor",
        ask(essential_acr=(MFA,)),
        NOTHING_DONE,
        session(),
        Refuse(UNMET_AUTHENTICATION_REQUIREMENTS, UNMET + "."),
    ),
    ("password essential", ask(essential_acr=(PWD,)), NOTHING_DONE, session(), Issue(PWD)),
    # -- choosing an account
    ("prompt=select_account", ask(prompts=SELECT), NOTHING_DONE, session(), SelectAccount()),
    (
        # authorize_request refuses "none" with another value before deciding
        "prompt=select_account with none",
        ask(prompts=SELECT | NONE),
        NOTHING_DONE,
        session(),
        Refuse(ACCOUNT_SELECTION_REQUIRED),
    ),
    (
        "prompt=select_account, chosen",
        ask(prompts=SELECT),
        progress(account_chosen=True),
        session(),
        Issue(PWD),
    ),
    (
        "prompt=select_account without a session: sign in first",
        ask(prompts=SELECT),
        NOTHING_DONE,
        None,
        FIRST_SIGN_IN,
    ),
    (
        "prompt=select_account comes before the level",
        ask(prompts=SELECT, client_min_level=3),
        NOTHING_DONE,
        session(level=2),
        SelectAccount(),
    ),
    # -- the real-name level
    (
        "client minimum not reached",
        ask(client_min_level=3),
        NOTHING_DONE,
        session(level=2),
        StepUp(wanted=3, current=2, required=True),
    ),
    ("client minimum reached", ask(client_min_level=3), NOTHING_DONE, session(level=3), Issue(PWD)),
    (
        "client minimum declined",
        ask(client_min_level=3),
        progress(level_declined=True),
        session(level=2),
        Refuse(UNMET_AUTHENTICATION_REQUIREMENTS, UNMET + " (real-name level 3 is required)."),
    ),
    (
        "client minimum not reached, prompt=none",
        ask(client_min_level=3, prompts=NONE),
        NOTHING_DONE,
        session(level=2),
        Refuse(
            INTERACTION_REQUIRED,
            "The service requires real-name level 3; the user must raise it interactively.",
        ),
    ),
    (
        "a preferred level not reached",
        ask(acr_values=(LEVEL + "4",)),
        NOTHING_DONE,
        session(level=3),
        StepUp(wanted=4, current=3, required=False),
    ),
    (
        "a preferred level declined: the acr reached",
        ask(acr_values=(LEVEL + "4",)),
        progress(level_declined=True),
        session(level=3),
        Issue(PWD),
    ),
    (
        "the first preferred value satisfied",
        ask(acr_values=(LEVEL + "4", LEVEL + "3")),
        NOTHING_DONE,
        session(level=3),
        Issue(LEVEL + "3"),
    ),
    (
        "a level above the one asked",
        ask(acr_values=(LEVEL + "3",)),
        NOTHING_DONE,
        session(level=4),
        Issue(LEVEL + "3"),
    ),
    (
        "an essential level not reached",
        ask(essential_acr=(LEVEL + "4",)),
        NOTHING_DONE,
        session(level=3),
        StepUp(wanted=4, current=3, required=True),
    ),
    (
        "an essential level declined",
        ask(essential_acr=(LEVEL + "4",)),
        progress(level_declined=True),
        session(level=3),
        Refuse(UNMET_AUTHENTICATION_REQUIREMENTS, UNMET + " (real-name level 4 is required)."),
    ),
    (
        "an essential level reached",
        ask(essential_acr=(LEVEL + "4",)),
        NOTHING_DONE,
        session(level=4),
        Issue(LEVEL + "4"),
    ),
    (
        "essential values win over acr_values",
        ask(essential_acr=(LEVEL + "4",), acr_values=(PWD,)),
        NOTHING_DONE,
        session(level=3),
        StepUp(wanted=4, current=3, required=True),
    ),
    (
        "a preferred level above the client minimum, which is met",
        ask(client_min_level=2, acr_values=(LEVEL + "4",)),
        NOTHING_DONE,
        session(level=2),
        StepUp(wanted=4, current=2, required=False),
    ),
    (
        "a preferred level above an unmet client minimum",
        ask(client_min_level=3, acr_values=(LEVEL + "4",)),
        NOTHING_DONE,
        session(level=2),
        StepUp(wanted=4, current=2, required=True),
    ),
    (
        "the level comes before consent",
        ask(client_min_level=3),
        NOTHING_DONE,
        session(level=2, consent_covers=False),
        StepUp(wanted=3, current=2, required=True),
    ),
    # -- consent
    ("not consented", ask(), NOTHING_DONE, session(consent_covers=False), Consent()),
    (
        "not consented, prompt=none",
        ask(prompts=NONE),
        NOTHING_DONE,
        session(consent_covers=False),
        Refuse(CONSENT_REQUIRED),
    ),
    ("prompt=consent, consented before", ask(prompts=CONSENT), NOTHING_DONE, session(), Consent()),
    (
        "prompt=consent, consented now",
        ask(prompts=CONSENT),
        progress(consented=True),
        session(),
        Issue(PWD),
    ),
    (
        "consented now, for scopes not remembered",
        ask(),
        progress(consented=True),
        session(consent_covers=False),
        Issue(PWD),
    ),
    (
        "first party: never asked",
        ask(first_party=True),
        NOTHING_DONE,
        session(consent_covers=False),
        Issue(PWD),
    ),
    (
        "first party, prompt=consent",
        ask(first_party=True, prompts=CONSENT),
        NOTHING_DONE,
        session(consent_covers=False),
        Issue(PWD),
    ),
    (
        "first party, prompt=none",
        ask(first_party=True, prompts=NONE),
        NOTHING_DONE,
        session(consent_covers=False),
        Issue(PWD),
    ),
]


@pytest.mark.parametrize(
    ("request_asks", "done", "signed_in", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_decision(
    request_asks: Ask, done: Progress, signed_in: SignedIn | None, expected: Decision
) -> None:
    assert decide(request_asks, done, signed_in, policy=POLICY, now=NOW) == expected


@pytest.mark.parametrize(
    ("request_asks", "done", "signed_in"),
    [case[1:4] for case in CASES if case[3] is not None],
    ids=[case[0] for case in CASES if case[3] is not None],
)
def test_facts_that_cost_a_query_are_read_only_when_they_matter(
    request_asks: Ask, done: Progress, signed_in: SignedIn
) -> None:
    """The view looks the level and the remembered consent up only when
    ``needs_level`` / ``needs_consent_lookup`` say so, and the user's subject only for
    an id_token_hint: otherwise their value must not change the decision."""
    expected = decide(request_asks, done, signed_in, policy=POLICY, now=NOW)
    if not needs_level(request_asks, POLICY):
        for level in (1, 5):
            other = replace(signed_in, level=level)
            assert decide(request_asks, done, other, policy=POLICY, now=NOW) == expected
    if not needs_consent_lookup(request_asks, done):
        for covers in (False, True):
            other = replace(signed_in, consent_covers=covers)
            assert decide(request_asks, done, other, policy=POLICY, now=NOW) == expected
    if request_asks.hint_subject is None:
        for subject in (None, "carol"):
            other = replace(signed_in, subject=subject)
            assert decide(request_asks, done, other, policy=POLICY, now=NOW) == expected


@pytest.mark.parametrize(
    ("request_asks", "expected"),
    [
        (ask(), False),
        (ask(acr_values=(MFA, PWD)), False),
        (ask(client_min_level=2), True),
        (ask(acr_values=(PWD, LEVEL + "3")), True),
        (ask(essential_acr=(LEVEL + "2",)), True),
        (ask(essential_acr=(MFA,), acr_values=(LEVEL + "3",)), False),  # essential wins
        (ask(acr_values=(LEVEL + "9",)), False),  # not a level this service has
    ],
)
def test_when_the_level_matters(request_asks: Ask, expected: bool) -> None:
    assert needs_level(request_asks, POLICY) is expected


@pytest.mark.parametrize(
    ("request_asks", "done", "expected"),
    [
        (ask(), NOTHING_DONE, True),
        (ask(first_party=True), NOTHING_DONE, False),
        (ask(), progress(consented=True), False),
        (ask(prompts=CONSENT), NOTHING_DONE, False),  # asked anyway
    ],
)
def test_when_the_remembered_consent_matters(
    request_asks: Ask, done: Progress, expected: bool
) -> None:
    assert needs_consent_lookup(request_asks, done) is expected
