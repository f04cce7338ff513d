"""The revoked serials of one CRL, checked and held in a compact form, for the trust
store's revocation checks (``pki.revocation``).

Why not asn1crypto's or pyhanko's CRL objects: a city CA's CRL can list a million
certificates. Parsed into Python objects that is hundreds of megabytes and seconds of
work, and pyhanko walks the entries for every look-up. Here the entries are read once
by a small DER walker over the raw bytes (bounded: every length is checked against its
container, nothing recurses) into a few flat buffers:

* ``_records``: one record an entry, back to back in a ``bytearray``: the length of
  the serial's DER contents (one byte), those contents, the revocation time (seconds
  since 1970, 8 bytes big-endian) and the RFC 5280 reason code (one byte);
* ``_table``: an open-addressing hash table (linear probing, at most half full, an
  ``array`` of 32-bit record offsets + 1), keyed by Python's ``hash`` of a secret
  per-process prefix and the serial's bytes.

A look-up encodes the serial, hashes it and probes one or two slots, each slot and
its record a cache line or two: the work does not depend on the size of the CRL
(binary search over a million entries would touch twenty). The fixed part of the CRL
(signature algorithm, issuer name, the CRL extensions) is small and read with
asn1crypto; the signature is checked with ``pki.signatures.verify_signed``, so SM2
CRLs work too.

What a CRL must be to be used (anything else is a ``CrlError`` whose ``reason`` says
why): PEM or DER within ``max_bytes``; issued by the CA whose certificate is given
(name, key, and ``cRLSign`` when it has a keyUsage); a complete CRL for all reasons and
all certificates of the issuer. Delta CRLs, CRLs partitioned by reason, indirect CRLs
and attribute-certificate CRLs are refused; a CRL that covers only end-entity or only
CA certificates (issuingDistributionPoint) says so in ``scope`` and the caller decides.
``thisUpdate`` may not be more than ``CLOCK_SKEW`` in the future, and ``nextUpdate``
must not have passed. ``certificateHold`` entries are revocations with that reason;
``removeFromCRL`` belongs in delta CRLs only, so such an entry in a complete CRL means
"not revoked" and is left out.
"""

from __future__ import annotations

import calendar
import secrets
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NamedTuple

from asn1crypto import algos, crl, pem, x509

from pki.signatures import SignatureInvalid, verify_signed
from pki.validation import rfc4514 as _rfc4514

MAX_CRL_BYTES: Final = 96 * 1024 * 1024  # a 1,000,000-entry CRL is 35 to 55 MB
CLOCK_SKEW: Final = timedelta(minutes=5)  # thisUpdate this far ahead of us is accepted
MAX_SERIAL_OCTETS: Final = 126  # RFC 5280 allows 20; some CAs exceed it a little

REASONS: Final = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}
REMOVE_FROM_CRL: Final = 8
# A secret prefix for the hash table's keys: Python's bytes hash is keyed per process,
# but not when PYTHONHASHSEED is set, and a CRL of colliding serials would make
# building the table quadratic.
_SALT: Final = secrets.token_bytes(16)

_REASON_CODE = "2.5.29.21"
_INVALIDITY_DATE = "2.5.29.24"
_CERTIFICATE_ISSUER = "2.5.29.29"
_REASON_PREFIX = bytes.fromhex("300a0603551d1504030a01")  # the usual reasonCode, code next
_KNOWN_CRL_EXTENSIONS = {
    "2.5.29.20",  # cRLNumber
    "2.5.29.28",  # issuingDistributionPoint (checked below)
    "2.5.29.35",  # authorityKeyIdentifier
    "2.5.29.46",  # freshestCRL: deltas exist; the complete CRL alone is still complete
    "1.3.6.1.5.5.7.1.1",  # authorityInfoAccess
}

Scope = Literal["all", "end-entity", "ca"]
ErrorKind = Literal["format", "size", "issuer", "signature", "unsupported", "time"]


class CrlError(Exception):
    """The CRL cannot be used. ``reason`` is one line a person can act on; ``kind``
    tells callers what went wrong (``issuer``: the CRL is another CA's, which a
    caller given several CRLs skips silently)."""

    def __init__(self, reason: str, kind: ErrorKind = "format") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime  # UTC
    reason: str  # RFC 5280's name: keyCompromise, certificateHold, ..., "unspecified"


class _Der:
    """A bounded DER reader over one buffer: ``header`` reads a tag and a definite
    length and checks that the value ends inside ``limit``."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def header(self, pos: int, limit: int, tag: int | None = None) -> tuple[int, int, int]:
        """(tag, start of the value, end of the value) of the element at ``pos``."""
        data = self.data
        if pos + 2 > limit:
            raise CrlError("the CRL is truncated")
        found = data[pos]
        if tag is not None and found != tag:
            raise CrlError(f"the CRL is malformed (expected tag 0x{tag:02x} at byte {pos})")
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            octets = length & 0x7F
            if octets == 0 or octets > 4 or pos + octets > limit:
                raise CrlError("the CRL is malformed (bad length)")
            length = int.from_bytes(data[pos : pos + octets], "big")
            pos += octets
        end = pos + length
        if end > limit:
            raise CrlError("the CRL is truncated")
        return found, pos, end


def _utc_seconds(tag: int, raw: bytes, days: dict[bytes, int]) -> int:
    """Seconds since 1970 of a DER UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime
    (0x18, YYYYMMDDHHMMSSZ); the day's start is remembered in ``days``."""
    if tag == 0x17 and len(raw) == 13 and raw[12] == 0x5A:
        day, clock = raw[:6], raw[6:12]
    elif tag == 0x18 and len(raw) == 15 and raw[14] == 0x5A:
        day, clock = raw[:8], raw[8:14]
    else:
        raise CrlError("the CRL holds a time that is not a DER UTCTime or GeneralizedTime")
    start = days.get(day)
    if start is None:
        if not day.isdigit():
            raise CrlError("the CRL holds an invalid date")
        if tag == 0x17:
            year = int(day[:2])
            year += 2000 if year < 50 else 1900  # RFC 5280 4.1.2.5.1
            month, mday = int(day[2:4]), int(day[4:6])
        else:
            year, month, mday = int(day[:4]), int(day[4:6]), int(day[6:8])
        try:
            start = calendar.timegm(datetime(year, month, mday, tzinfo=UTC).timetuple())
        except ValueError:
            raise CrlError("the CRL holds an invalid date") from None
        days[day] = start
    if not clock.isdigit():
        raise CrlError("the CRL holds an invalid time")
    value = int(clock)
    hours, rest = divmod(value, 10000)
    minutes, seconds = divmod(rest, 100)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise CrlError("the CRL holds an invalid time")
    return start + hours * 3600 + minutes * 60 + seconds


def serial_key(serial: int) -> bytes:
    """The DER contents (minimal two's complement) of an INTEGER ``serial``."""
    size = ((serial if serial >= 0 else ~serial).bit_length() + 8) // 8
    return serial.to_bytes(size, "big", signed=True)


def _minimal(raw: bytes) -> bytes:
    """A DER INTEGER's contents re-encoded minimally (BER-ish CRLs pad serials)."""
    if len(raw) > 1 and ((raw[0] == 0x00 and raw[1] < 0x80) or (raw[0] == 0xFF and raw[1] >= 0x80)):
        return serial_key(int.from_bytes(raw, "big", signed=True))
    return raw


def _datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CrlIndex:
    """One checked CRL: its revoked serials in flat buffers, looked up in constant
    time. Build with ``from_der``."""

    __slots__ = (
        "_count",
        "_hashes",
        "_mask",
        "_offsets",
        "_records",
        "_table",
        "distribution_points",
        "issuer",
        "next_update",
        "number",
        "scope",
        "this_update",
    )

    def __init__(self) -> None:
        self._records = bytearray()
        self._count = 0
        self._offsets = array("I")  # while building only
        self._hashes = array("q")  # while building only
        self._table = array("I", [0])
        self._mask = 0
        self.issuer = ""
        self.this_update = datetime.min.replace(tzinfo=UTC)
        self.next_update: datetime | None = None
        self.number: int | None = None
        self.scope: Scope = "all"
        self.distribution_points: tuple[str, ...] = ()  # URIs of its issuingDistributionPoint

    @property
    def size(self) -> int:
        """The number of revoked certificates listed."""
        return self._count

    @property
    def memory(self) -> int:
        """Bytes held by the index's buffers (for the benchmark)."""
        return len(self._records) + self._table.itemsize * len(self._table)

    def lookup(self, serial: int) -> Revocation | None:
        """The revocation of the certificate with ``serial``, or None if not listed."""
        key = serial_key(serial)
        size = len(key)
        table, records, mask = self._table, self._records, self._mask
        slot = hash(_SALT + key) & mask
        while True:
            reference = table[slot]
            if reference == 0:
                return None
            offset = reference - 1
            if records[offset] == size and records[offset + 1 : offset + 1 + size] == key:
                at = offset + 1 + size
                return Revocation(
                    serial=serial,
                    revoked_at=_datetime(int.from_bytes(records[at : at + 8], "big", signed=True)),
                    reason=REASONS.get(records[at + 8], "unspecified"),
                )
            slot = (slot + 1) & mask

    # --- Building ----------------------------------------------------------------------

    @classmethod
    def from_der(
        cls,
        der: bytes,
        issuer_der: bytes,
        *,
        at: datetime | None = None,
        max_bytes: int = MAX_CRL_BYTES,
    ) -> CrlIndex:
        """Check the CRL ``der`` (DER or PEM) against the CA certificate ``issuer_der``
        at ``at`` (default now) and index it. ``CrlError`` if it cannot be used."""
        if len(der) > max_bytes:
            raise CrlError(
                f"the CRL is too large ({len(der)} bytes; at most {max_bytes} accepted)", "size"
            )
        data = _unarmor(bytes(der))
        issuer = _issuer_certificate(issuer_der)
        moment = at or datetime.now(UTC)
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        index = cls()
        index._read(data, issuer, moment)
        return index

    def _read(self, data: bytes, issuer: x509.Certificate, moment: datetime) -> None:
        reader = _Der(data)
        layout = _layout(reader)
        days: dict[bytes, int] = {}
        self._check_issuer(data[layout.name[0] : layout.name[1]], issuer)
        try:
            algorithm = algos.SignedDigestAlgorithm.load(layout.algorithm)
            verify_signed(
                issuer["tbs_certificate"]["subject_public_key_info"],
                algorithm,
                layout.signature,
                data[layout.tbs[0] : layout.tbs[1]],
            )
        except SignatureInvalid as exc:
            raise CrlError(
                f"the signature of the CRL of {self.issuer} is invalid: {exc}", "signature"
            ) from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CrlError(f"the CRL's signature cannot be checked: {exc}", "signature") from None
        if layout.extensions is not None:
            self._crl_extensions(data[layout.extensions[0] : layout.extensions[1]])
        this_update = _utc_seconds(*_time(reader, layout.this_update), days)
        next_update = (
            None
            if layout.next_update is None
            else _utc_seconds(*_time(reader, layout.next_update), days)
        )
        self._check_times(this_update, next_update, moment)
        if layout.entries is not None:
            self._entries(reader, *layout.entries, days)
        self._build_table()

    def _check_issuer(self, name_der: bytes, issuer: x509.Certificate) -> None:
        subject = issuer["tbs_certificate"]["subject"]
        try:
            name = x509.Name.load(name_der)
            same = name_der == subject.dump() or name == subject
            self.issuer = _rfc4514(name)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CrlError(f"the CRL's issuer name cannot be read: {exc}") from None
        if not same:
            raise CrlError(
                f"the CRL was issued by {self.issuer}, not by the CA {_rfc4514(subject)}",
                "issuer",
            )
        usage = issuer.key_usage_value
        if usage is not None and "crl_sign" not in usage.native:
            raise CrlError(
                f"the CA {self.issuer} may not sign CRLs (its keyUsage lacks cRLSign)", "issuer"
            )

    def _crl_extensions(self, raw: bytes) -> None:
        try:
            extensions = crl.TBSCertListExtensions.load(raw, strict=True)
            extensions.native  # noqa: B018 -- decode everything now
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CrlError(f"the CRL's extensions cannot be read: {exc}") from None
        for extension in extensions:
            try:
                self._crl_extension(extension)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise CrlError(f"the CRL's extensions cannot be processed: {exc}") from None

    def _crl_extension(self, extension: crl.TBSCertListExtension) -> None:
        oid = extension["extn_id"].dotted
        if oid == "2.5.29.27":
            raise CrlError(
                f"the CRL of {self.issuer} is a delta CRL; a complete CRL is needed",
                "unsupported",
            )
        if oid == "2.5.29.20":
            self.number = int(extension["extn_value"].parsed.native)
        elif oid == "2.5.29.28":
            self._distribution_point(extension["extn_value"].parsed)
        elif oid not in _KNOWN_CRL_EXTENSIONS and extension["critical"].native:
            raise CrlError(
                f"the CRL of {self.issuer} has an unsupported critical extension {oid}",
                "unsupported",
            )

    def _distribution_point(self, point: crl.IssuingDistributionPoint) -> None:
        if point["indirect_crl"].native:
            raise CrlError(
                f"the CRL of {self.issuer} is an indirect CRL, which is not supported",
                "unsupported",
            )
        if point["only_some_reasons"].native is not None:
            raise CrlError(
                f"the CRL of {self.issuer} covers only some revocation reasons (partitioned); "
                "a complete CRL is needed",
                "unsupported",
            )
        if point["only_contains_attribute_certs"].native:
            raise CrlError(
                f"the CRL of {self.issuer} covers attribute certificates only", "unsupported"
            )
        if point["only_contains_user_certs"].native:
            self.scope = "end-entity"
        elif point["only_contains_ca_certs"].native:
            self.scope = "ca"
        name = point["distribution_point"]
        if isinstance(name, crl.DistributionPointName) and name.name == "full_name":
            self.distribution_points = tuple(
                general.native
                for general in name.chosen
                if general.name == "uniform_resource_identifier"
            )

    def _check_times(self, this_update: int, next_update: int | None, moment: datetime) -> None:
        self.this_update = _datetime(this_update)
        self.next_update = None if next_update is None else _datetime(next_update)
        if self.this_update > moment + CLOCK_SKEW:
            raise CrlError(
                f"the CRL of {self.issuer} is not valid yet (thisUpdate "
                f"{self.this_update:%Y-%m-%d %H:%M:%S} UTC)",
                "time",
            )
        if self.next_update is not None and self.next_update < moment:
            raise CrlError(
                f"the CRL of {self.issuer} is stale (its nextUpdate was "
                f"{self.next_update:%Y-%m-%d %H:%M:%S} UTC)",
                "time",
            )

    def _entries(self, reader: _Der, pos: int, end: int, days: dict[bytes, int]) -> None:
        """Walk ``revokedCertificates``: SEQUENCE { serial INTEGER, revocationDate
        Time, crlEntryExtensions Extensions OPTIONAL }, appending to the columns. The
        usual shapes (short lengths, UTCTime, no extension or only a reasonCode) are
        read inline; anything else goes through the general reader."""
        data = reader.data
        records = self._records
        add_offset, add_hash, add_byte = self._offsets.append, self._hashes.append, records.append
        header = reader.header
        prefix = _REASON_PREFIX
        salt = _SALT
        while pos < end:
            if data[pos] == 0x30 and data[pos + 1] < 0x80 and data[pos + 2] == 0x02:
                entry_end = pos + 2 + data[pos + 1]
                value = pos + 4
                value_end = value + data[pos + 3]
                if entry_end > end or value_end > entry_end or data[pos + 3] >= 0x80:
                    raise CrlError("the CRL is malformed (a revoked certificate entry)")
            else:
                _, start, entry_end = header(pos, end, 0x30)
                _, value, value_end = header(start, entry_end, 0x02)
            size = value_end - value
            if size == 0 or size > MAX_SERIAL_OCTETS:
                raise CrlError(f"the CRL lists a serial number of {size} octets")
            serial = data[value:value_end]
            if size > 1 and data[value] in (0x00, 0xFF):
                serial = _minimal(serial)
            time_start = value_end + 2
            time_end = time_start + 13
            if (
                time_end <= entry_end
                and data[value_end] == 0x17
                and data[value_end + 1] == 13
                and data[time_end - 1] == 0x5A
                and (base := days.get(data[time_start : time_start + 6])) is not None
                and (clock := data[time_start + 6 : time_end - 1]).isdigit()
            ):
                hours, rest = divmod(int(clock), 10000)
                minutes, seconds = divmod(rest, 100)
                if hours > 23 or minutes > 59 or seconds > 59:
                    raise CrlError("the CRL holds an invalid time")
                seconds += base + hours * 3600 + minutes * 60
            else:
                tag, time_start, time_end = header(value_end, entry_end)
                seconds = _utc_seconds(tag, data[time_start:time_end], days)
            code = 0
            if time_end < entry_end:
                ext = data[time_end:entry_end]
                if len(ext) == 14 and ext[2:13] == prefix and ext[:2] == b"\x30\x0c":
                    code = ext[13]
                else:
                    code = self._entry_extensions(ext)
            pos = entry_end
            if code == REMOVE_FROM_CRL:
                continue
            add_offset(len(records))
            add_byte(len(serial))
            records += serial
            records += seconds.to_bytes(8, "big", signed=True)
            add_byte(code if code < 256 else 0)
            add_hash(hash(salt + serial))

    def _entry_extensions(self, raw: bytes) -> int:
        try:
            extensions = crl.CRLEntryExtensions.load(raw, strict=True)
            code = 0
            for extension in extensions:
                oid = extension["extn_id"].dotted
                if oid == _REASON_CODE:
                    code = int(extension["extn_value"].parsed.chosen.native)
                elif oid == _CERTIFICATE_ISSUER:
                    raise CrlError(
                        f"the CRL of {self.issuer} lists certificates of other issuers "
                        "(an indirect CRL), which is not supported",
                        "unsupported",
                    )
                elif oid != _INVALIDITY_DATE and extension["critical"].native:
                    raise CrlError(
                        f"the CRL of {self.issuer} has an entry with an unsupported critical "
                        f"extension {oid}",
                        "unsupported",
                    )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CrlError(f"the CRL holds an entry extension that cannot be read: {exc}") from None
        return code

    def _build_table(self) -> None:
        if len(self._records) >= 1 << 32:
            raise CrlError("the CRL has too many entries", "size")
        count = len(self._offsets)
        slots = 2
        while slots < 2 * count:
            slots *= 2
        table = array("I", bytes(4 * slots))
        mask = slots - 1
        records, offsets, hashes = self._records, self._offsets, self._hashes
        stored = 0
        for entry in range(count):
            offset = offsets[entry]
            end = offset + 1 + records[offset]
            slot = hashes[entry] & mask
            while table[slot]:
                other = table[slot] - 1
                if records[other : other + end - offset] == records[offset:end]:
                    break  # listed twice: the first entry stands
                slot = (slot + 1) & mask
            else:
                table[slot] = offset + 1
                stored += 1
        self._table = table
        self._mask = mask
        self._count = stored
        self._offsets = array("I")
        self._hashes = array("q")


class _Layout(NamedTuple):
    """Where the parts of a CRL are: (start, end) of each, in the DER."""

    tbs: tuple[int, int]  # the whole TBSCertList element (what is signed)
    algorithm: bytes
    signature: bytes
    name: tuple[int, int]
    this_update: int  # position of the element
    next_update: int | None
    entries: tuple[int, int] | None  # contents of revokedCertificates
    extensions: tuple[int, int] | None  # contents of [0]


def _layout(reader: _Der) -> _Layout:
    """CertificateList { TBSCertList { version?, signature, issuer, thisUpdate,
    nextUpdate?, revokedCertificates?, [0] crlExtensions? }, signatureAlgorithm,
    signatureValue }, without reading the entries."""
    data = reader.data
    _, outer, outer_end = reader.header(0, len(data), 0x30)
    if outer_end != len(data):
        raise CrlError("the CRL has trailing data after its DER encoding")
    _, tbs_start, tbs_end = reader.header(outer, outer_end, 0x30)
    _, _, algo_end = reader.header(tbs_end, outer_end, 0x30)
    _, sig_start, sig_end = reader.header(algo_end, outer_end, 0x03)
    if sig_end != outer_end or sig_start == sig_end or data[sig_start] != 0:
        raise CrlError("the CRL is malformed (signature)")
    algorithm = data[tbs_end:algo_end]
    pos = tbs_start
    tag, _, end = reader.header(pos, tbs_end)
    if tag == 0x02:
        if data[pos + 2 : end] != b"\x01":
            raise CrlError("the CRL has an unknown version (only v1 and v2 are read)")
        pos = end
        tag, _, end = reader.header(pos, tbs_end)
    if tag != 0x30 or data[pos:end] != algorithm:
        raise CrlError("the CRL is malformed (its two signature algorithms differ)")
    name_start = end
    _, _, name_end = reader.header(name_start, tbs_end, 0x30)
    this_update = name_end
    _, _, pos = reader.header(this_update, tbs_end)
    next_update: int | None = None
    entries: tuple[int, int] | None = None
    extensions: tuple[int, int] | None = None
    if pos < tbs_end and data[pos] in (0x17, 0x18):
        next_update = pos
        _, _, pos = reader.header(pos, tbs_end)
    if pos < tbs_end and data[pos] == 0x30:
        _, start, pos = reader.header(pos, tbs_end)
        entries = (start, pos)
    if pos < tbs_end and data[pos] == 0xA0:
        _, start, pos = reader.header(pos, tbs_end)
        extensions = (start, pos)
    if pos != tbs_end:
        raise CrlError("the CRL is malformed (unexpected data in its TBSCertList)")
    return _Layout(
        tbs=(outer, tbs_end),
        algorithm=algorithm,
        signature=data[sig_start + 1 : sig_end],
        name=(name_start, name_end),
        this_update=this_update,
        next_update=next_update,
        entries=entries,
        extensions=extensions,
    )


def _time(reader: _Der, pos: int) -> tuple[int, bytes]:
    tag, start, end = reader.header(pos, len(reader.data))
    return tag, reader.data[start:end]


def _unarmor(data: bytes) -> bytes:
    stripped = data.strip()
    if not stripped:
        raise CrlError("the CRL is empty")
    if data[:1] == b"\x30":
        return data
    if not pem.detect(stripped):
        raise CrlError("the data is not a CRL (neither DER nor PEM)")
    try:
        kind, _headers, der = pem.unarmor(stripped)
    except (ValueError, TypeError) as exc:
        raise CrlError(f"the PEM data cannot be read: {exc}") from None
    if kind != "X509 CRL":
        raise CrlError(f"the PEM data holds a {kind}, not an X509 CRL")
    return bytes(der)


def _issuer_certificate(issuer_der: bytes) -> x509.Certificate:
    try:
        certificate = x509.Certificate.load(bytes(issuer_der), strict=True)
        certificate.native  # noqa: B018 -- decode every field now (asn1crypto is lazy)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CrlError(f"the CA certificate cannot be read: {exc}") from None
    return certificate


__all__ = ["CLOCK_SKEW", "MAX_CRL_BYTES", "REASONS", "CrlError", "CrlIndex", "Revocation"]
