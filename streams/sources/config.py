"""Source bindings: which bucket, Twilio account, Connect instance or PBX landing folder
belongs to which tenant, and the call defaults each brings.

A binding is the credential a notification is judged by ("tenant bound per source
credential"): the S3 prefix an object lies under, the Twilio account whose auth
token signed the callback, the Connect instance that wrote the CTR, the landing
folder a PBX announces into. A notification naming another tenant is refused
(``tenant-mismatch``); one no binding covers is refused (``unknown-source``).

Bindings come from a TOML file (``CALLVAULT_SOURCES``)::

    [[s3]]
    prefix = "s3://pbx-landing/calls/"      # must lie inside CALLVAULT_LANDING_ROOTS
    tenant = "acme"
    queue = "support"                       # defaults for what an object does not say
    consent = "notified"                    # (direction, agent_id, purposes too)

    [[twilio]]
    account_sid = "AC0123456789abcdef0123456789abcdef"
    auth_token_file = "/run/secrets/twilio-auth-token"   # or auth_token = "..."
    tenant = "acme"
    queue = "twilio"
    public_url = "https://callvault.example.com"   # the base URL Twilio calls
    media_hosts = ["api.twilio.com"]               # where RecordingUrl may point
    media_format = "wav"                           # or "mp3"

    [[connect]]
    instance_arn = "arn:aws:connect:eu-central-1:123456789012:instance/4f1c..."
    prefix = "s3://acme-connect/connect/northwind/CallRecordings/"
    tenant = "acme"
    customer_attribute = "customer_ref"     # contact attribute with the customer id

    [[announce]]
    landing = "file:///var/spool/asterisk/monitor"   # where `callvault announce` lands
    tenant = "acme"
    queue = "pbx"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callvault.errors import ConfigError, InputFileError
from callvault.inputfiles import read_input_text
from streams.sources.base import CallDefaults

__all__ = [
    "Secret",
    "S3Binding",
    "TwilioBinding",
    "ConnectBinding",
    "AnnounceBinding",
    "SourceBindings",
    "load_sources",
    "parse_sources",
]

_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_DIRECTIONS = ("inbound", "outbound", "internal")
_CONSENTS = ("notified", "granted", "declined")
_MAX_FILE_BYTES = 1 << 20  # the sources file (a real one has a few kB)
_MAX_SECRET_BYTES = 64 << 10  # a token or key file


class Secret:
    """A secret string that never shows in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _split_s3(prefix: str, where: str) -> tuple[str, str]:
    parts = urlsplit(prefix)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{where}: prefix {prefix!r} must look like s3://bucket/some/prefix/")
    key = parts.path.lstrip("/")
    return parts.netloc, key if not key or key.endswith("/") else key + "/"


@dataclass(frozen=True)
class S3Binding:
    """Objects under ``s3://bucket/key_prefix`` belong to ``defaults.tenant``."""

    bucket: str
    key_prefix: str
    defaults: CallDefaults

    @property
    def prefix(self) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}"

    def covers(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.key_prefix)


@dataclass(frozen=True)
class TwilioBinding:
    """Callbacks signed with this account's auth token belong to ``defaults.tenant``."""

    account_sid: str
    auth_token: Secret
    defaults: CallDefaults
    public_url: str | None = None
    media_hosts: tuple[str, ...] = ("api.twilio.com",)
    media_format: str = "wav"


@dataclass(frozen=True)
class ConnectBinding:
    """CTRs of ``instance_arn`` and recordings under ``prefix`` belong to the tenant."""

    instance_arn: str
    bucket: str
    key_prefix: str
    defaults: CallDefaults
    customer_attribute: str = "customer_ref"
    consent_attribute: str = "recording_consent"

    def covers(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.key_prefix)


@dataclass(frozen=True)
class AnnounceBinding:
    """What ``callvault announce`` lands into ``landing`` belongs to the tenant."""

    landing: str | None
    defaults: CallDefaults


@dataclass(frozen=True)
class SourceBindings:
    """Every binding of one deployment (empty: no source is enabled)."""

    s3: tuple[S3Binding, ...] = ()
    twilio: tuple[TwilioBinding, ...] = ()
    connect: tuple[ConnectBinding, ...] = ()
    announce: tuple[AnnounceBinding, ...] = field(default_factory=tuple)

    def s3_for(self, bucket: str, key: str) -> S3Binding | None:
        """The S3 binding with the longest prefix covering the object."""
        covering = [b for b in self.s3 if b.covers(bucket, key)]
        return max(covering, key=lambda b: len(b.key_prefix), default=None)

    def connect_for_object(self, bucket: str, key: str) -> ConnectBinding | None:
        covering = [b for b in self.connect if b.covers(bucket, key)]
        return max(covering, key=lambda b: len(b.key_prefix), default=None)

    def connect_for_instance(self, instance_arn: str) -> ConnectBinding | None:
        return next((b for b in self.connect if b.instance_arn == instance_arn), None)

    def twilio_for(self, account_sid: str) -> TwilioBinding | None:
        return next((b for b in self.twilio if b.account_sid == account_sid), None)

    def announce_for(self, landing: str | None) -> AnnounceBinding | None:
        """The announce binding of ``landing`` (a root URI), or the only one there is."""
        for binding in self.announce:
            if landing is not None and binding.landing == landing:
                return binding
        unnamed = [b for b in self.announce if b.landing is None]
        if unnamed:
            return unnamed[0]
        return self.announce[0] if len(self.announce) == 1 and landing is None else None

    @property
    def buckets(self) -> frozenset[str]:
        return frozenset(b.bucket for b in self.s3) | {b.bucket for b in self.connect}


def _defaults(entry: Mapping[str, Any], where: str) -> CallDefaults:
    tenant = entry.get("tenant")
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ConfigError(f"{where}: tenant must match {_TENANT.pattern}")
    direction = entry.get("direction", "inbound")
    if direction not in _DIRECTIONS:
        raise ConfigError(f"{where}: direction must be one of {', '.join(_DIRECTIONS)}")
    consent = entry.get("consent", "notified")
    if consent not in _CONSENTS:
        raise ConfigError(f"{where}: consent must be one of {', '.join(_CONSENTS)}")
    purposes = entry.get("purposes")
    if purposes is not None and (
        not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes)
    ):
        raise ConfigError(f"{where}: purposes must be a list of purpose names")
    for name in ("queue", "agent_id"):
        if entry.get(name) is not None and not isinstance(entry[name], str):
            raise ConfigError(f"{where}: {name} must be a string")
    return CallDefaults(
        tenant=tenant,
        queue=entry.get("queue"),
        direction=direction,
        consent=consent,
        agent_id=entry.get("agent_id"),
        purposes=tuple(purposes) if purposes else None,
    )


def _entries(data: Mapping[str, Any], kind: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    entries = data.get(kind, [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"sources: [[{kind}]] must be a list of tables")
    for index, entry in enumerate(entries):
        yield f"sources [[{kind}]] #{index + 1}", entry


def _secret(entry: Mapping[str, Any], name: str, where: str, base: Path | None) -> Secret:
    if isinstance(entry.get(name), str) and entry[name]:
        return Secret(entry[name])
    path = entry.get(f"{name}_file")
    if isinstance(path, str) and path:
        file = Path(path) if base is None or Path(path).is_absolute() else base / path
        try:
            value = read_input_text(file, max_bytes=_MAX_SECRET_BYTES, what=f"{name}_file").strip()
        except InputFileError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if value:
            return Secret(value)
    raise ConfigError(f"{where}: needs {name} or {name}_file")


def parse_sources(data: Mapping[str, Any], *, base: Path | None = None) -> SourceBindings:
    """Bindings from the parsed TOML (see the module docstring).

    Raises:
        ConfigError: an unknown section, a malformed entry, a secret that cannot be read.
    """
    unknown = sorted(set(data) - {"s3", "twilio", "connect", "announce"})
    if unknown:
        raise ConfigError(f"sources: unknown sections {', '.join(unknown)}")
    s3 = []
    for where, entry in _entries(data, "s3"):
        bucket, key_prefix = _split_s3(str(entry.get("prefix", "")), where)
        s3.append(S3Binding(bucket, key_prefix, _defaults(entry, where)))
    twilio = []
    for where, entry in _entries(data, "twilio"):
        sid = entry.get("account_sid")
        if not isinstance(sid, str) or not _ACCOUNT_SID.match(sid):
            raise ConfigError(f"{where}: account_sid must look like AC + 32 hex digits")
        media_format = entry.get("media_format", "wav")
        if media_format not in ("wav", "mp3"):
            raise ConfigError(f"{where}: media_format must be wav or mp3")
        hosts = entry.get("media_hosts", ["api.twilio.com"])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigError(f"{where}: media_hosts must be a list of host[:port] names")
        public_url = entry.get("public_url")
        if public_url is not None and not str(public_url).startswith(("https://", "http://")):
            raise ConfigError(f"{where}: public_url must be an http(s) URL")
        twilio.append(
            TwilioBinding(
                account_sid=sid,
                auth_token=_secret(entry, "auth_token", where, base),
                defaults=_defaults(entry, where),
                public_url=str(public_url).rstrip("/") if public_url else None,
                media_hosts=tuple(h.lower() for h in hosts),
                media_format=media_format,
            )
        )
    connect = []
    for where, entry in _entries(data, "connect"):
        arn = entry.get("instance_arn")
        if not isinstance(arn, str) or not arn.startswith("arn:") or ":instance/" not in arn:
            raise ConfigError(f"{where}: instance_arn must be a Connect instance ARN")
        bucket, key_prefix = _split_s3(str(entry.get("prefix", "")), where)
        connect.append(
            ConnectBinding(
                instance_arn=arn,
                bucket=bucket,
                key_prefix=key_prefix,
                defaults=_defaults(entry, where),
                customer_attribute=str(entry.get("customer_attribute", "customer_ref")),
                consent_attribute=str(entry.get("consent_attribute", "recording_consent")),
            )
        )
    announce = []
    for where, entry in _entries(data, "announce"):
        landing = entry.get("landing")
        if landing is not None and not str(landing).startswith("file:///"):
            raise ConfigError(f"{where}: landing must be a file:/// landing root")
        announce.append(
            AnnounceBinding(str(landing).rstrip("/") if landing else None, _defaults(entry, where))
        )
    return SourceBindings(tuple(s3), tuple(twilio), tuple(connect), tuple(announce))


def load_sources(path: Path | None) -> SourceBindings:
    """The bindings of the TOML file ``path`` (None: no source enabled).

    Raises:
        ConfigError: the file cannot be read or is malformed.
    """
    if path is None:
        return SourceBindings()
    try:
        data = tomllib.loads(read_input_text(path, max_bytes=_MAX_FILE_BYTES, what="sources file"))
    except InputFileError as exc:
        raise ConfigError(str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read the sources file {path}: {exc}") from exc
    except RecursionError:  # tomllib parses nested arrays recursively
        raise ConfigError(f"cannot read the sources file {path}: nested too deep") from None
    return parse_sources(data, base=path.parent)
