"""Sign-in methods: the interface the sign-in flow drives, and their registry.

A sign-in method proves something about an account and says so in a ``Proof``: which
account, and the RFC 8176 ``amr`` values it proved (``pwd``, ``otp``, ``hwk``, ``sc``,
``pin``, ``fed``, ``mfa``...). Methods are first factors (they find the account:
password, certificate, an upstream provider) or second factors (they confirm an
account a first factor found: a one-time code). Each package registers its methods into
the app's ``SignInMethods`` from its ``init_app``; the sign-in flow (``idp.login``)
drives them:

1. a first factor is proved;
2. unless its ``amr`` already says ``mfa``, the first registered second factor that
   ``applies`` to the account is asked for (the pending state lives in the session for
   a few minutes);
3. one step finishes: the session starts with the achieved ``amr`` set (``mfa`` added
   when two methods proved it), the ``signin`` audit event is written and counted, and
   each method's ``finished`` cookies are set.

Two shapes of method:

* form-driven (``FormSignInMethod``: password, one-time code): the sign-in pages draw
  their form and hand the submitted fields to ``verify``; a method whose ``entry`` is
  None is drawn by the sign-in pages themselves (the password form on ``/login``, the
  code form on ``/login/otp``);
* redirect- or challenge-driven (certificate at ``/login/certificate``, an upstream
  provider at ``/federation/NAME/login``): the package owns its views, ``entry`` is the
  URL the sign-in page links to, and its view calls ``SignInMethods.of().flow.proved``
  with the ``Proof`` once it checked the result.

This module is infrastructure: it knows no account model, so a ``Proof`` carries the
account's ids and how the audit log names it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from flask.typing import ResponseReturnValue

from idp.core.principal import ActingFor
from idp.core.runtime import Component

MFA = "mfa"
# counts an attempt's outcome: (step, outcome), e.g. ("password", "failure")
CountAttempt = Callable[[str, str], None]


class Stage(enum.StrEnum):
    FIRST = "first"  # finds the account
    SECOND = "second"  # confirms the account a first factor found


@dataclass(frozen=True)
class Proof:
    """What one method proved about one account.

    ``device_id``: a browser the method recognised as one that signed in to the account
    before (a device cookie), which later steps' throttles exempt from the account's
    back-off. ``state``: what the method wants back when the sign-in finishes (kept in
    the session while a second factor is pending, so JSON strings only)."""

    method: str
    uid: int
    sub: str
    subject: str  # how the audit log names the account
    amr: tuple[str, ...]
    device_id: str | None = None
    state: Mapping[str, str] = field(default_factory=dict)
    # the sign-in proved an organisation (an enterprise certificate): the session acts
    # for it from the start
    acting_for: ActingFor | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "uid": self.uid,
            "sub": self.sub,
            "subject": self.subject,
            "amr": list(self.amr),
            "dev": self.device_id,
            "state": dict(self.state),
            "act": self.acting_for.to_session() if self.acting_for is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proof:
        return cls(
            method=str(data["method"]),
            uid=int(data["uid"]),
            sub=str(data["sub"]),
            subject=str(data["subject"]),
            amr=tuple(str(value) for value in data["amr"]),
            device_id=None if data.get("dev") is None else str(data["dev"]),
            state={str(k): str(v) for k, v in dict(data.get("state") or {}).items()},
            acting_for=ActingFor.from_session(data.get("act")),
        )


@dataclass(frozen=True)
class SignInRequest:
    """What a form-driven method may know of the browser's request; ``first`` is what
    the first factor proved, for a second factor."""

    client_ip: str
    cookies: Mapping[str, str]
    first: Proof | None = None


@dataclass(frozen=True)
class Cookie:
    """A cookie a method sets when the sign-in finishes (e.g. a device cookie)."""

    name: str
    value: str
    max_age: int
    path: str
    secure: bool
    httponly: bool = True
    samesite: str = "Lax"


class SignInFailed(Exception):
    """The method refused the attempt; ``message`` (an English msgid the pages
    translate) is safe to show and never says which part was wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def achieved_amr(proofs: Sequence[Proof]) -> list[str]:
    """The ``amr`` of a sign-in: every value the methods proved, in order, and ``mfa``
    when two different methods took part."""
    amr: list[str] = []
    for proof in proofs:
        amr += [value for value in proof.amr if value not in amr]
    if len({proof.method for proof in proofs}) > 1 and MFA not in amr:
        amr.append(MFA)
    return amr


@runtime_checkable
class SignInMethod(Protocol):
    """One way to prove something about an account."""

    name: str  # unique among the app's methods; kept in the session while pending
    stage: Stage
    amr: frozenset[str]  # the values it can prove (each Proof says which it did)
    label: str  # an English msgid: the sign-in page's link text

    def entry(self, next_url: str) -> str | None:
        """Where a browser starts this method (the sign-in page links to it); None for
        a form the sign-in pages draw themselves."""
        ...

    def applies(self, first: Proof) -> bool:
        """For a second factor: whether the account a first factor found has it."""
        ...

    def finished(self, proof: Proof) -> Sequence[Cookie]:
        """The sign-in this method took part in completed: cookies to set."""
        ...


@runtime_checkable
class FormSignInMethod(SignInMethod, Protocol):
    def verify(self, fields: Mapping[str, str], request: SignInRequest) -> Proof:
        """Check the submitted fields. Raises ``SignInFailed``, ``Throttled`` (the
        attempt must wait) or ``StoreUnavailable`` (it cannot be throttled, so it is
        refused)."""
        ...


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@runtime_checkable
class MultiEntrySignInMethod(SignInMethod, Protocol):
    """A first factor with several entries on the sign-in page (one per upstream
    provider), known only at the request (they may change while the app runs)."""

    def entries(self, next_url: str) -> Sequence[Link]:
        """The sign-in page's links, each label already translated."""
        ...


@runtime_checkable
class SignOutSignInMethod(SignInMethod, Protocol):
    """A method whose sign-in leaves a session elsewhere to end at sign-out (an upstream
    provider's, single logout)."""

    def sign_out_redirect(self, final_url: str | None) -> str | None:
        """Called while the session still holds the sign-in, just before it ends: where
        to send the browser next (then on to ``final_url``, None meaning the
        signed-out page), or None to go to ``final_url`` directly."""
        ...


class SignInFlow(Protocol):
    """The sign-in flow (implemented by ``idp.login``)."""

    def proved(self, proof: Proof, next_url: str) -> ResponseReturnValue:
        """What a method's own view calls once it checked a first factor: the flow asks
        for a second factor or finishes the sign-in, and answers with the redirect."""
        ...

    def count(self, step: str, outcome: str) -> None:
        """Count an attempt's outcome (``idp_signins{step, outcome}``): methods count
        their failures and throttled attempts, the flow the completed sign-ins."""
        ...


ServiceName = Callable[[str], str | None]


def _unnamed(client_id: str) -> str | None:  # noqa: ARG001 - a ServiceName
    return None


class SignInMethods(Component):
    """The app's sign-in methods, in the order they were registered, and the flow.

    ``service_name`` names the service a user is signing in to, for the sign-in page,
    from the ``client_id`` an authorization request passed along; the provider
    (``idp.oauth.init_app``) fills it in, so the sign-in pages need not know clients.
    """

    extension: ClassVar[str] = "idp.signin"

    def __init__(self, flow: SignInFlow) -> None:
        self.flow = flow
        self.service_name: ServiceName = _unnamed
        self._methods: dict[str, SignInMethod] = {}

    def register(self, method: SignInMethod) -> None:
        if method.name in self._methods:
            raise ValueError(f"a sign-in method named {method.name!r} is already registered")
        self._methods[method.name] = method

    def get(self, name: str) -> SignInMethod | None:
        return self._methods.get(name)

    def form(self, name: str) -> FormSignInMethod:
        """A form-driven method the sign-in pages draw (KeyError when there is none)."""
        method = self._methods[name]
        if not isinstance(method, FormSignInMethod):
            raise KeyError(name)
        return method

    def __iter__(self) -> Iterator[SignInMethod]:
        return iter(self._methods.values())

    def sign_out_redirect(self, final_url: str | None) -> str | None:
        """Where a sign-out goes before ``final_url``: the first method that has
        somewhere to go (``SignOutSignInMethod``), else None."""
        for method in self._methods.values():
            if isinstance(method, SignOutSignInMethod):
                url = method.sign_out_redirect(final_url)
                if url is not None:
                    return url
        return None

    def links(self, next_url: str) -> list[Link]:
        """The first factors the sign-in page links to (those with their own entry)."""
        links: list[Link] = []
        for method in self._methods.values():
            if method.stage is not Stage.FIRST:
                continue
            if isinstance(method, MultiEntrySignInMethod):
                links.extend(method.entries(next_url))
                continue
            url = method.entry(next_url)
            if url is not None:
                links.append(Link(method.label, url))
        return links

    def second_factor_for(self, first: Proof) -> SignInMethod | None:
        """The second factor to ask for after ``first``: None when the first is
        multi-factor already or no registered second factor applies to the account."""
        if MFA in first.amr:
            return None
        for method in self._methods.values():
            second = method.stage is Stage.SECOND and method.name != first.method
            if second and method.applies(first):
                return method
        return None
