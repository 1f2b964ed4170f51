"""Every boto3 client callvault builds sets its connect and read timeouts and the retry
mode explicitly (issue 17): the vault's, the landing roots', KMS's, from the
``CALLVAULT_S3_*`` settings; and no module builds a boto3 client any other way."""

from __future__ import annotations

import re
from pathlib import Path

from callvault.services import s3_client_factory, s3_client_options
from callvault.settings import load_settings
from storage.crypto.kms import make_kms_client
from storage.vault.s3 import make_s3_client

ROOT = Path(__file__).resolve().parents[2]


def _config(client: object) -> tuple[float, float, dict[str, object]]:
    config = client.meta.config  # type: ignore[attr-defined]
    return config.connect_timeout, config.read_timeout, dict(config.retries)


def test_every_client_has_explicit_timeouts_and_retry_mode(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "CALLVAULT_DATA_DIR": str(tmp_path),
            "CALLVAULT_S3_ENDPOINT": "http://127.0.0.1:1",
            "CALLVAULT_S3_CONNECT_TIMEOUT_SECONDS": "3",
            "CALLVAULT_S3_READ_TIMEOUT_SECONDS": "7",
            "CALLVAULT_S3_MAX_ATTEMPTS": "4",
        }
    )
    # botocore's own name: total attempts, the first try included (its "max_attempts"
    # would mean retries: 4 of them made 5 attempts before)
    expected = (3, 7, {"total_max_attempts": 4, "mode": "standard"})
    landing = s3_client_factory(settings)()
    vault = make_s3_client(endpoint_url=settings.s3_endpoint, **s3_client_options(settings))
    assert _config(landing) == expected
    assert _config(vault) == expected
    kms = make_kms_client(endpoint_url="http://127.0.0.1:1")
    connect, read, retries = _config(kms)
    assert (read, retries["mode"]) == (30, "standard") and connect > 0


def test_no_module_builds_a_boto3_client_around_the_factory() -> None:
    direct = re.compile(
        r"boto3\.(client|resource)\(|Session\(\)\.client\(|\.client\(\s*\"(s3|kms)\""
    )
    allowed = {Path("storage/_aws.py"), Path("callvault/seaweed.py")}  # both set a Config
    found = []
    for package in ("callvault", "streams", "storage", "policies"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if relative not in allowed and direct.search(path.read_text()):
                found.append(str(relative))
    assert found == []
