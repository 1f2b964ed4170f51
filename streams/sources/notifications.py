"""S3 object notifications, in every shape a store emits them, as :class:`ObjectNotice`.

Shapes read (one Kafka message or HTTP body each):

- **AWS S3 event notifications** (``{"Records": [{"eventName": "ObjectCreated:Put",
  "s3": {"bucket": {"name"}, "object": {"key", "size", "eTag", "versionId",
  "sequencer"}}}]}``; keys URL-encoded, ``+`` for a space) as S3 sends them to SQS,
  SNS, Lambda or a Kafka bridge; MinIO's (the same ``Records``, ``eventName``
  prefixed ``s3:``, with ``EventName``/``Key`` beside them) and Ceph RGW's likewise;
- the same wrapped in an **SNS** envelope (``{"Type": "Notification", "Message": "..."}``);
- **EventBridge** S3 events (``{"source": "aws.s3", "detail-type": "Object Created",
  "detail": {"bucket": {"name"}, "object": {"key", ...}}}``);
- S3's ``s3:TestEvent`` (no records);
- **SeaweedFS filer notifications** (``weed filer`` / ``weed mini`` with
  ``[notification.kafka]``): a protobuf ``filer_pb.EventNotification`` keyed by the
  entry's full path (``/buckets/<bucket>/<key>``); see :func:`parse_filer_event`.

Nothing here talks to S3; :mod:`streams.sources.s3` decides what a notice means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from streams.sources.base import SourceReason, refuse

__all__ = [
    "ObjectNotice",
    "parse_s3_notification",
    "parse_filer_event",
    "MAX_NOTIFICATION_BYTES",
]

MAX_NOTIFICATION_BYTES = 1 << 20
MAX_RECORDS = 1000
BUCKETS_FOLDER = "/buckets"


@dataclass(frozen=True)
class ObjectNotice:
    """One object a notification is about. ``created`` is False for deletes and the
    like; tag changes count as created (a PBX may tag an object after uploading it)."""

    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None

    @property
    def created(self) -> bool:
        name = self.event_name.removeprefix("s3:")
        return name.startswith("ObjectCreated") or name.startswith("ObjectTagging:Put")


def _load(payload: bytes | str | Mapping[str, Any]) -> Any:
    if isinstance(payload, Mapping):
        return payload
    if len(payload) > MAX_NOTIFICATION_BYTES:
        raise refuse(SourceReason.MALFORMED, f"notification larger than {MAX_NOTIFICATION_BYTES}")
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise refuse(SourceReason.MALFORMED, "the notification is not JSON") from None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise refuse(SourceReason.MALFORMED, f"{what}: expected a non-empty string")
    return value


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _record(record: Any, index: int) -> ObjectNotice:
    if not isinstance(record, Mapping):
        raise refuse(SourceReason.MALFORMED, f"Records[{index}]: expected an object")
    s3 = record.get("s3")
    if not isinstance(s3, Mapping):
        raise refuse(SourceReason.MALFORMED, f"Records[{index}].s3: expected an object")
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, Mapping) or not isinstance(obj, Mapping):
        raise refuse(SourceReason.MALFORMED, f"Records[{index}].s3: needs bucket and object")
    etag = obj.get("eTag") or obj.get("etag")
    return ObjectNotice(
        bucket=_text(bucket.get("name"), f"Records[{index}].s3.bucket.name"),
        # S3 URL-encodes keys in notifications (a space as '+')
        key=unquote_plus(_text(obj.get("key"), f"Records[{index}].s3.object.key")),
        event_name=_text(record.get("eventName"), f"Records[{index}].eventName"),
        size=_size(obj.get("size")),
        etag=str(etag).strip('"') if isinstance(etag, str) and etag else None,
        version_id=obj.get("versionId") if isinstance(obj.get("versionId"), str) else None,
    )


def parse_s3_notification(payload: bytes | str | Mapping[str, Any]) -> list[ObjectNotice]:
    """The objects a JSON notification (any shape in the module docstring) is about.

    Raises:
        SourceRefused: ``malformed`` (not JSON, not a known shape, a record without its
            bucket or key, more than 1000 records).
    """
    data = _load(payload)
    if not isinstance(data, Mapping):
        raise refuse(SourceReason.MALFORMED, "the notification must be a JSON object")
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse_s3_notification(data["Message"])  # SNS envelope
    if data.get("Event") == "s3:TestEvent":
        return []
    if "Records" in data:
        records = data["Records"]
        if not isinstance(records, list) or len(records) > MAX_RECORDS:
            raise refuse(SourceReason.MALFORMED, f"Records: expected a list of <= {MAX_RECORDS}")
        return [_record(record, index) for index, record in enumerate(records)]
    if data.get("source") == "aws.s3" and isinstance(data.get("detail"), Mapping):
        detail = data["detail"]
        bucket, obj = detail.get("bucket"), detail.get("object")
        if not isinstance(bucket, Mapping) or not isinstance(obj, Mapping):
            raise refuse(SourceReason.MALFORMED, "detail: needs bucket and object")
        kind = _text(data.get("detail-type"), "detail-type")
        name = {"Object Created": "ObjectCreated:Put", "Object Tags Added": "ObjectTagging:Put"}
        return [
            ObjectNotice(
                bucket=_text(bucket.get("name"), "detail.bucket.name"),
                key=_text(obj.get("key"), "detail.object.key"),  # not URL-encoded here
                event_name=name.get(kind, kind),
                size=_size(obj.get("size")),
                etag=obj.get("etag") if isinstance(obj.get("etag"), str) else None,
                version_id=obj.get("version-id")
                if isinstance(obj.get("version-id"), str)
                else None,
            )
        ]
    raise refuse(SourceReason.MALFORMED, "not an S3, SNS or EventBridge object notification")


# -- SeaweedFS filer notifications (protobuf) -------------------------------------------


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise refuse(SourceReason.MALFORMED, "truncated protobuf varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    """The protobuf wire fields of one message: number -> values (varints as int,
    everything else as bytes). Only what ``filer_pb`` uses; groups are refused."""
    fields: dict[int, list[int | bytes]] = {}
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, at = data[at : at + width], at + width
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        else:
            raise refuse(SourceReason.MALFORMED, f"protobuf wire type {wire} not expected")
        if at > len(data) or number == 0:
            raise refuse(SourceReason.MALFORMED, "truncated protobuf message")
        fields.setdefault(number, []).append(value)
    return fields


def _first(fields: Mapping[int, list[int | bytes]], number: int) -> int | bytes | None:
    values = fields.get(number)
    return values[-1] if values else None


def _string(value: int | bytes | None) -> str:
    if not isinstance(value, bytes):
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(SourceReason.MALFORMED, "protobuf string is not UTF-8") from None


def parse_filer_event(
    key: bytes | None, value: bytes, *, buckets_folder: str = BUCKETS_FOLDER
) -> ObjectNotice | None:
    """The S3 object a SeaweedFS filer ``EventNotification`` creates or changes, or
    None when it is about something else (a directory, a delete, a path outside the
    buckets folder, multipart parts under ``.uploads``, SeaweedFS's ``.system``).

    ``key`` is the Kafka message key, the entry's full path (the old path for an update
    or rename). A versioned bucket's object ``k`` is stored as ``k.versions/v_<id>``.

    Raises:
        SourceRefused: ``malformed`` (not a protobuf EventNotification, no path).
    """
    event = _fields(value)
    new_entry = _first(event, 2)
    if not isinstance(new_entry, bytes):
        return None  # a delete (or nothing at all)
    entry = _fields(new_entry)
    if _first(entry, 2):  # is_directory
        return None
    name = _string(_first(entry, 1))
    new_parent = _string(_first(event, 4))
    if not key and not (new_parent and name):
        raise refuse(SourceReason.MALFORMED, "a filer event needs its path as the message key")
    try:
        path = f"{new_parent.rstrip('/')}/{name}" if new_parent and name else key.decode()  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise refuse(SourceReason.MALFORMED, "the filer path is not UTF-8") from None
    folder = buckets_folder.rstrip("/") + "/"
    if not path.startswith(folder):
        return None
    bucket, _, object_key = path[len(folder) :].partition("/")
    if not bucket or bucket.startswith(".") or not object_key:
        return None
    if object_key.split("/", 1)[0] == ".uploads":
        return None  # multipart parts; the completed object gets its own event
    version_id = None
    parent, _, leaf = object_key.rpartition("/")
    if parent.endswith(".versions") and leaf.startswith("v_"):
        object_key, version_id = parent.removesuffix(".versions"), leaf[2:]
    attributes = _first(entry, 4)
    size = None
    if isinstance(attributes, bytes):
        file_size = _first(_fields(attributes), 1)
        size = file_size if isinstance(file_size, int) else None
    updated = isinstance(_first(event, 1), bytes)
    return ObjectNotice(
        bucket=bucket,
        key=object_key,
        event_name="ObjectCreated:Put" if not updated else "ObjectCreated:Update",
        size=size,
        version_id=version_id,
    )
