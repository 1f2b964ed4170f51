"""callvault.inputfiles: files an operator names are read whole, bounded, and only when
they are regular files; and the readers of config, sources and receipts use it."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from callvault.errors import ConfigError, InputFileError
from callvault.inputfiles import read_input_file, read_input_text
from callvault.settings import load_settings
from streams.sources.config import load_sources


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 3_000_000)  # several reads of 1 MiB
    assert read_input_file(path, max_bytes=3_000_000) == b"x" * 3_000_000
    path.write_bytes("\ufeffk = 'ä'\n".encode())
    assert read_input_text(path, max_bytes=100, encoding="utf-8-sig") == "k = 'ä'\n"


@pytest.mark.parametrize("kind", ["fifo", "folder", "socket", "device", "missing"])
def test_what_is_no_regular_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "named"
    if kind == "fifo":
        os.mkfifo(path)  # opened for reading without O_NONBLOCK, this waits forever
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
    elif kind == "device":
        path = Path("/dev/zero")  # read, it never ends
    expected = {
        "socket": "No such device or address",  # open() of a socket: ENXIO
        "missing": "No such file or directory",
    }.get(kind, "is not a regular file (a folder, FIFO, socket or device)")
    with pytest.raises(InputFileError, match=re.escape(expected)) as raised:
        read_input_file(path, max_bytes=1 << 20, what="manifest")
    assert str(path) in str(raised.value) and "manifest" in str(raised.value)


def test_a_file_over_the_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as handle:
        handle.truncate(10 << 30)  # 10 GiB, sparse: reading it would take minutes
    with pytest.raises(InputFileError, match=f"has {10 << 30} bytes, more than the 1024"):
        read_input_file(path, max_bytes=1024)
    path.write_bytes(b"y" * 1025)
    with pytest.raises(InputFileError, match="more than the 1024"):
        read_input_file(path, max_bytes=1024)
    assert read_input_file(path, max_bytes=1025) == b"y" * 1025


def test_text_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes(b"ok\n\xff")
    with pytest.raises(InputFileError, match="not UTF-8 .* at byte 3"):
        read_input_text(path, max_bytes=100)


def test_config_and_sources_files_that_are_fifos_are_config_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "callvault.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="config file .* is not a regular file"):
        load_settings({"CALLVAULT_CONFIG": str(fifo)})
    with pytest.raises(ConfigError, match="sources file .* is not a regular file"):
        load_sources(fifo)
    secret = tmp_path / "sources.toml"
    secret.write_text(
        '[[twilio]]\ntenant = "acme"\naccount_sid = "AC' + "0" * 32 + '"\n'
        f'auth_token_file = "{fifo}"\n'
    )
    with pytest.raises(ConfigError, match="auth_token_file .* is not a regular file"):
        load_sources(secret)


def test_the_cli_refuses_a_fifo_request_and_an_endless_receipt(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from callvault.cli import cli

    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var")}
    fifo = tmp_path / "erase.json"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["privacy", "submit", str(fifo), "--by", "officer-7"], env=env)
    assert result.exit_code == 2 and "is not a regular file" in result.output, result.output
    receipt = tmp_path / "receipt.json"
    with receipt.open("wb") as handle:
        handle.truncate(10 << 30)
    result = CliRunner().invoke(cli, ["retention", "receipt", "verify", str(receipt)], env=env)
    assert result.exit_code == 2 and "more than the 1048576 allowed" in result.output


def test_a_receipt_file_nested_too_deep_is_not_a_receipt(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from callvault.cli import cli

    receipt = tmp_path / "receipt.json"
    receipt.write_text("[" * 60_000)  # past the JSON parser's recursion: was a traceback
    result = CliRunner().invoke(
        cli, ["retention", "receipt", "verify", str(receipt)],
        env={"CALLVAULT_DATA_DIR": str(tmp_path / "var")},
    )  # fmt: skip
    assert result.exit_code == 2 and "receipt is not JSON: nested too deep" in result.output


def test_config_and_sources_files_nested_too_deep_are_config_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")  # tomllib recurses: was a traceback
    with pytest.raises(ConfigError, match="config file .* nested too deep"):
        load_settings({"CALLVAULT_CONFIG": str(deep)})
    with pytest.raises(ConfigError, match="sources file .* nested too deep"):
        load_sources(deep)
