"""Hypothesis strategies for hostile HTTP requests, as raw WSGI environs.

A request is built from bytes, not through a client library, so that it can carry
what a real client can send and a polite library would refuse to: bad UTF-8,
percent-garbage (``%zz``, a lone ``%``), NUL and control characters, lone surrogates
(encoded as the invalid UTF-8 a broken client sends), huge and repeated parameters,
array-style names, wrong content types, garbage ``Authorization`` headers and cookies.
Each field value is drawn from hostile text, random text, or the real values of the
test (a registered client id, a redirect URI, a CSRF token, a token) so that the fuzz
also reaches the code behind the first checks.
"""

from __future__ import annotations

import base64
import functools
import json
import string
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzz.endpoints import TARGETS

# -- values

HOSTILE_VALUES = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "\r\nSet-Cookie: injected=1",
    "\t\n",
    "登",
    "登录 统一身份认证",
    "😀",
    "👨‍👩‍👧‍👦",
    "\u202eevil\u202c",  # right-to-left override
    "مرحبا",
    "\ufeff",
    "\uffff",
    "\ud800",  # a lone surrogate: sent as invalid UTF-8
    "\udfff\ud800",
    "%",
    "%zz",
    "%00",
    "%ff",
    "%e7%99",  # a truncated UTF-8 sequence
    "%2525",
    "a[]",
    "[]",
    "{}",
    "null",
    "true",
    "0",
    "-1",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    "../../../etc/passwd",
    "javascript:alert(1)",
    "https://evil.example/",
    "//evil.example/x",
    "\\\\evil.example",
    '"quoted"\\',
    "x" * 5000,
    "登" * 3000,
)

HOSTILE_NAMES = (
    "",
    "a[]",
    "a[b]",
    "a[][c]",
    "__proto__",
    "constructor",
    "\x00",
    "登",
    "😀",
    "%zz",
    "=",
    "&",
    "x" * 300,
)

# parameter names the service reads somewhere (so values reach real code): every name a
# fuzz target lists, and a few that only other forms read
KNOWN_NAMES = tuple(
    sorted(
        {name for family in TARGETS.values() for target in family for name in target.names}
        | {"confirm", "document_type", "new_password", "number"}
    )
)


@dataclass(frozen=True)
class Known:
    """Real values of the test, mixed into the fuzz."""

    values: tuple[str, ...] = ()
    basic_credentials: tuple[tuple[str, str], ...] = ()
    bearer_tokens: tuple[str, ...] = ()
    # path -> valid requests' parameters, which the fuzz mutates (to get deep)
    templates: tuple[tuple[str, tuple[tuple[tuple[str, str], ...], ...]], ...] = ()

    def templates_for(self, path: str) -> tuple[tuple[tuple[str, str], ...], ...]:
        return next((found for name, found in self.templates if name == path), ())


# Strategies are built once per set of arguments: building them on every draw costs
# more than the request itself.
@functools.cache
def text_value(known: Known) -> st.SearchStrategy[str]:
    strategies: list[st.SearchStrategy[str]] = [
        st.sampled_from(HOSTILE_VALUES),
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8"), max_size=12),
        st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=8),
        st.text(string.printable, max_size=40),
    ]
    if known.values:
        strategies.append(st.sampled_from(known.values))
        strategies.append(
            st.builds(
                lambda a, b: a + b, st.sampled_from(known.values), st.sampled_from(HOSTILE_VALUES)
            )
        )
    return st.one_of(*strategies)


@functools.cache
def param_name(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(names or KNOWN_NAMES),
        st.sampled_from(KNOWN_NAMES),
        st.sampled_from(HOSTILE_NAMES),
        st.text(max_size=10),
    )


def encode_text(value: str) -> bytes:
    """UTF-8, lone surrogates included (as the invalid bytes a broken client sends)."""
    return value.encode("utf-8", "surrogatepass")


@st.composite
def encoded_pair(draw: st.DrawFn, name: str, value: str) -> bytes:
    """One ``name=value``: percent-encoded, raw bytes, or with garbage mixed in."""
    how = draw(st.sampled_from(["quoted", "quoted", "quoted", "raw", "no_equals", "garbage"]))
    raw_name, raw_value = encode_text(name), encode_text(value)
    if how == "raw":
        return raw_name + b"=" + raw_value
    if how == "no_equals":
        return quote(raw_name).encode()
    pair = quote(raw_name, safe="").encode() + b"=" + quote(raw_value, safe="").encode()
    if how == "garbage":
        junk = draw(st.sampled_from([b"%", b"%z", b"%zz", b"%ff", b"+", b"&&", b";", b"%%"]))
        pair += junk
    return pair


@st.composite
def params(draw: st.DrawFn, names: tuple[str, ...], known: Known) -> list[tuple[str, str]]:
    """A list of parameters: names the endpoint reads (sometimes repeated), others."""
    count = draw(st.integers(min_value=0, max_value=8))
    return [(draw(param_name(names)), draw(text_value(known))) for _ in range(count)]


@st.composite
def mutated(
    draw: st.DrawFn,
    template: tuple[tuple[str, str], ...],
    names: tuple[str, ...],
    known: Known,
) -> list[tuple[str, str]]:
    """A valid request's parameters with one to three changes: a value replaced, a
    parameter dropped, added or repeated."""
    pairs = list(template)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        change = draw(st.sampled_from(("replace", "replace", "drop", "add", "repeat")))
        if change == "add" or not pairs:
            pairs.append((draw(param_name(names)), draw(text_value(known))))
            continue
        index = draw(st.integers(min_value=0, max_value=len(pairs) - 1))
        name, value = pairs[index]
        if change == "replace":
            pairs[index] = (name, draw(text_value(known)))
        elif change == "drop":
            del pairs[index]
        else:
            pairs.append((name, draw(st.sampled_from((value, draw(text_value(known)))))))
    return pairs


@st.composite
def urlencoded(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    if draw(st.integers(0, 3)) != 0:  # mostly well-formed, so values reach the code
        return "&".join(
            quote(encode_text(name), safe="") + "=" + quote(encode_text(value), safe="")
            for name, value in pairs
        ).encode()
    parts = [draw(encoded_pair(name, value)) for name, value in pairs]
    separator = draw(st.sampled_from([b"&", b"&", b";", b"&&"]))
    body = separator.join(parts)
    if draw(st.integers(0, 20)) == 0:
        body = b"&".join([body] * 60)  # more fields than allowed
    return body


# -- bodies and content types

FORM = "application/x-www-form-urlencoded"


@st.composite
def body(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> tuple[str | None, bytes]:
    """(content type or None, body bytes)."""
    kind = draw(
        st.sampled_from(
            ["form", "form", "form", "json", "multipart", "text", "none", "garbage", "huge"]
        )
    )
    if kind == "form":
        content_type = draw(
            st.sampled_from(
                [
                    FORM,
                    FORM + "; charset=utf-8",
                    FORM + "; charset=latin-1",
                    "APPLICATION/X-WWW-FORM-URLENCODED",
                ]
            )
        )
        return content_type, draw(urlencoded(pairs))
    if kind == "json":
        document: Any = draw(
            st.sampled_from(["object", "array", "scalar", "broken"]),
        )
        if document == "object":
            raw = json.dumps(dict(pairs)).encode()
        elif document == "array":
            raw = json.dumps([list(pair) for pair in pairs]).encode()
        elif document == "scalar":
            raw = b'"x"'
        else:
            raw = b'{"a": '
        return draw(st.sampled_from(["application/json", "application/json; charset=utf-8"])), raw
    if kind == "multipart":
        boundary = "fuzzboundary"
        chunks = []
        for name, value in pairs:
            filename = draw(st.sampled_from(["", '; filename="a.jpg"', '; filename="登.png"']))
            disposition = f'form-data; name="{name}"{filename}'
            chunks.append(
                encode_text(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n")
                + encode_text(value)
                + b"\r\n"
            )
        raw = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, len(raw)))]  # truncated
        content_type = draw(
            st.sampled_from(
                [
                    f"multipart/form-data; boundary={boundary}",
                    "multipart/form-data",  # no boundary
                    "multipart/form-data; boundary=",
                ]
            )
        )
        return content_type, raw
    if kind == "text":
        return draw(st.sampled_from(["text/plain", "text/html", "application/xml"])), draw(
            urlencoded(pairs)
        )
    if kind == "none":
        return None, draw(st.sampled_from([b"", draw(urlencoded(pairs))]))
    if kind == "huge":
        return FORM, b"a=" + b"x" * draw(st.sampled_from([70_000, 300_000, 2_000_000]))
    raw_type = draw(st.sampled_from(["", "garbage", "a/b/c", "登/登", FORM + ";;;=", "*/*"]))
    return raw_type, draw(st.binary(max_size=200))


# -- headers


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@st.composite
def authorization(draw: st.DrawFn, known: Known) -> str | None:
    kind = draw(
        st.sampled_from(
            ["none", "none", "real_basic", "real_bearer", "basic_junk", "bearer_junk", "scheme"]
        )
    )
    if kind == "none":
        return None
    if kind == "real_basic" and known.basic_credentials:
        client_id, secret = draw(st.sampled_from(known.basic_credentials))
        variant = draw(st.sampled_from(["exact", "wrong_secret", "extra_colon", "quoted"]))
        if variant == "wrong_secret":
            secret += "x"
        elif variant == "extra_colon":
            secret += ":extra"
        elif variant == "quoted":
            client_id = quote(client_id + "登")
        return "Basic " + _b64(f"{client_id}:{secret}".encode())
    if kind == "real_bearer" and known.bearer_tokens:
        token = draw(st.sampled_from(known.bearer_tokens))
        mangle = draw(st.sampled_from(["exact", "truncated", "flipped", "doubled"]))
        if mangle == "truncated":
            token = token[: len(token) // 2]
        elif mangle == "flipped":
            token = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        elif mangle == "doubled":
            token = token + " " + token
        return draw(st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Bearer\t"])) + token
    if kind == "basic_junk":
        raw = draw(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from([b"nocolon", b":", b"\xff\xfe:\x00", b"a:b:c", b"%zz:%", b""]),
                st.text(max_size=20).map(encode_text),
            )
        )
        encoded = draw(st.sampled_from([_b64(raw), "!!!notbase64", _b64(raw)[:-1], "=" * 5, ""]))
        return draw(st.sampled_from(["Basic ", "basic ", "Basic"])) + encoded
    if kind == "bearer_junk":
        return "Bearer " + draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=40)))
    return draw(
        st.sampled_from(
            ["Digest username=x", "Negotiate YII=", "DPoP abc", "Bearer", "Basic", " ", "登 x"]
        )
    )


@st.composite
def cookies(draw: st.DrawFn) -> str:
    names = ["idp_session", "__Host-idp_session", "idp_locale", "idp_device", "session", "x"]
    values = st.one_of(
        st.sampled_from(HOSTILE_VALUES[:40]),
        st.text(string.printable, max_size=40),
        st.text(max_size=10),
    )
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), values), max_size=4))
    return "; ".join(f"{name}={value}" for name, value in pairs)


HEADER_VALUES = st.one_of(
    st.sampled_from(HOSTILE_VALUES[:40]),
    st.text(max_size=30),
    st.text(string.printable, max_size=60),
)


@st.composite
def headers(draw: st.DrawFn, known: Known) -> dict[str, str]:
    result: dict[str, str] = {}
    auth = draw(authorization(known))
    if auth is not None:
        result["Authorization"] = auth
    if draw(st.booleans()):
        result["Accept"] = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "application/json",
                        "text/html",
                        "*/*",
                        "application/json, text/html;q=0.1",
                        "text/html;q=abc, application/json",
                        "application/jwt",
                        "",
                    ]
                ),
                HEADER_VALUES,
            )
        )
    if draw(st.booleans()):
        result["Accept-Language"] = draw(
            st.one_of(
                st.sampled_from(["zh-CN", "en", "zh-Hant-TW", "*", "zh-CN;q=abc", "x" * 300]),
                HEADER_VALUES,
            )
        )
    if draw(st.integers(0, 3)) == 0:
        result["X-Request-Id"] = draw(HEADER_VALUES)
    if draw(st.integers(0, 3)) == 0:
        result["X-Forwarded-For"] = draw(
            st.one_of(
                st.sampled_from(["127.0.0.1, 10.0.0.1", "::1", "999.1.1.1", "登"]), HEADER_VALUES
            )
        )
    if draw(st.integers(0, 3)) == 0:
        result["X-Forwarded-Proto"] = draw(st.sampled_from(["https", "gopher", ""]))
    if draw(st.integers(0, 3)) == 0:
        result["Origin"] = draw(st.sampled_from(["https://evil.example", "null", "登"]))
    return result


# -- whole requests

WRONG_METHODS = ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO", "get")


@dataclass
class FuzzRequest:
    method: str
    path: bytes
    query: bytes
    headers: dict[str, str]
    cookie: str
    content_type: str | None
    body: bytes

    def environ(self, session_cookie: str = "") -> dict[str, Any]:
        """The WSGI environ a server would build (strings carry bytes as latin-1)."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": self.path.decode("latin-1"),
            "QUERY_STRING": self.query.decode("latin-1"),
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": BytesIO(self.body),
            "wsgi.errors": BytesIO(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if self.body or self.method in {"POST", "PUT", "PATCH"}:
            environ["CONTENT_LENGTH"] = str(len(self.body))
        if self.content_type is not None:
            environ["CONTENT_TYPE"] = self.content_type
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = encode_text(value).decode("latin-1")
        cookie = "; ".join(part for part in (session_cookie, self.cookie) if part)
        if cookie:
            environ["HTTP_COOKIE"] = encode_text(cookie).decode("latin-1")
        return environ

    def single(self, name: str) -> str | None:
        """The value of a parameter sent exactly once in the query, decoded, else None."""
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(self.query.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return None
        values = [value for key, value in pairs if key == name]
        return values[0] if len(values) == 1 else None


@st.composite
def requests(
    draw: st.DrawFn,
    path: str,
    methods: tuple[str, ...],
    names: tuple[str, ...],
    known: Known,
    *,
    path_suffixes: bool = False,
) -> FuzzRequest:
    method = draw(
        st.one_of(
            st.sampled_from(methods), st.sampled_from(methods), st.sampled_from(WRONG_METHODS)
        )
    )
    raw_path = path.encode()
    if path_suffixes:
        raw_path += draw(
            st.one_of(
                st.sampled_from(
                    [b"", b"x", b"../../etc/passwd", b"%zz", b"\xff", b"%00", "登".encode()]
                ),
                st.text(max_size=20).map(lambda t: quote(encode_text(t)).encode()),
            )
        )
    query_pairs = draw(params(names, known))
    body_pairs = draw(params(names, known))
    templates = known.templates_for(path)
    from_template: bool = draw(st.booleans())
    if templates and from_template:
        valid = draw(mutated(draw(st.sampled_from(templates)), names, known))
        if method in {"GET", "HEAD", "get"} or draw(st.integers(0, 3)) == 0:
            query_pairs = valid
        else:
            body_pairs = valid
    query = draw(urlencoded(query_pairs))
    content_type, raw_body = draw(body(body_pairs))
    if method in {"GET", "HEAD", "get"} and draw(st.integers(0, 4)) != 0:
        content_type, raw_body = None, b""
    return FuzzRequest(
        method=method,
        path=raw_path,
        query=query,
        headers=draw(headers(known)),
        cookie=draw(cookies()) if draw(st.integers(0, 2)) == 0 else "",
        content_type=content_type,
        body=raw_body,
    )
