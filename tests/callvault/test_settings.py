"""Settings: defaults under the data dir, env over TOML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.errors import ConfigError
from callvault.settings import FIELDS, load_settings


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"CALLVAULT_DATA_DIR": str(tmp_path)})
    assert settings.vault == f"file://{tmp_path / 'vault'}"
    assert settings.catalog == f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    assert settings.keyring.startswith(f"file://{tmp_path}")
    assert settings.landing_roots == (f"file://{tmp_path / 'landing'}",)
    assert settings.broker is None and settings.web_port == 8080


def test_environment_wins_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "callvault.toml"
    config.write_text('web_port = 9000\nvault = "s3://from-file"\nlanding_roots = ["s3://b/in/"]\n')
    settings = load_settings(
        {
            "CALLVAULT_CONFIG": str(config),
            "CALLVAULT_WEB_PORT": "9100",
            "CALLVAULT_DATA_DIR": str(tmp_path),
        }
    )
    assert settings.web_port == 9100
    assert settings.vault == "s3://from-file"
    assert settings.landing_roots == ("s3://b/in/",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLVAULT_WEB_PORT": "eighty"}, "not a whole number"),
        ({"CALLVAULT_WEB_PORT": "-1"}, "must not be negative"),
        ({"CALLVAULT_VAULT": "ftp://x"}, "CALLVAULT_VAULT"),
        ({"CALLVAULT_CATALOG": "mysql://x"}, "CALLVAULT_CATALOG"),
        ({"CALLVAULT_KEYRING": "vault://x"}, "CALLVAULT_KEYRING"),
        ({"CALLVAULT_BROKER": "localhost:9092"}, "kafka://"),
        ({"CALLVAULT_LANDING_ROOTS": "/var/spool"}, "must start with"),
        # the worker id names actors, lease holders and metrics: was a UnicodeEncodeError
        # at the first audit record, or 5000 characters in every one
        ({"CALLVAULT_WORKER_ID": "w\udced\udca0\udc80"}, "CALLVAULT_WORKER_ID"),
        ({"CALLVAULT_WORKER_ID": "w" * 129}, "must be 1-128 letters"),
        ({"CALLVAULT_WORKER_ID": "w 1;x"}, "must be 1-128 letters"),
        ({"CALLVAULT_WORKER_ID": "../w"}, "must be 1-128 letters"),
        ({"CALLVAULT_WORKER_ID": "w\n"}, "must be 1-128 letters"),
    ],
)
def test_bad_values_get_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_unknown_key_in_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('vualt = "s3://typo"\n')
    with pytest.raises(ConfigError, match="unknown setting 'vualt'"):
        load_settings({}, config_file=config)


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, config_file=config)


def test_every_field_documents_itself() -> None:
    for field in FIELDS:
        assert {"help", "example", "default_doc"} <= set(field.metadata), field.name


def test_a_host_name_an_id_may_not_hold_makes_a_worker_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    real = os.uname()
    fake = type(real)((real.sysname, "host name;1", real.release, real.version, real.machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert load_settings({"CALLVAULT_DATA_DIR": str(tmp_path)}).worker_id == "host-name-1"
    assert load_settings({"CALLVAULT_WORKER_ID": "pod-7.cv_a"}).worker_id == "pod-7.cv_a"
