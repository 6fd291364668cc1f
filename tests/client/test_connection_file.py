"""A connection file others can read, and a damaged key: each said in one line, with the fix."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daskbox import connect
from daskbox.client.connection import ConnectionFile, read_connection_file, write_connection_file
from daskbox.errors import ConnectionFileError
from daskbox.gcloud.tls import make_tls_material
from daskbox_services import free_port

DASKBOX_CLI = Path(sys.executable).parent / "daskbox"


def connection_file(folder: Path, **tls_changes: str) -> Path:
    """What a launch writes, for a scheduler that is not running, TLS parts changed."""
    tls = dataclasses.replace(make_tls_material("connection-file").client, **tls_changes)
    connection = ConnectionFile(
        instance="file-test",
        target="local",
        scheduler_address=f"tls://127.0.0.1:{free_port()}",
        dashboard_url="",
        image="x",
        lock_hash="0" * 64,
        groups=("main",),
        tls=tls,
    )
    return write_connection_file(folder / ".daskbox" / "file-test.json", connection)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX mode bits")
def test_a_file_others_can_read_is_made_private_in_one_line(tmp_path, capsys):
    path = connection_file(tmp_path)
    path.chmod(0o644)
    read_connection_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert capsys.readouterr().err.splitlines() == [
        f"daskbox: {path} was readable by other users (mode 0644); made it 0600 (it holds your "
        "client key: relaunch if someone may have copied it)"
    ]
    read_connection_file(path)  # private now: nothing more to say
    assert capsys.readouterr().err == ""


def damaged(pem: str) -> str:
    """The PEM text with a run of its base64 body overwritten (a damaged copy)."""
    lines = pem.splitlines()
    lines[2] = "A" * len(lines[2])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("key", "its client key is not a valid PEM key"),
        ("other key", "its client key does not belong to its client certificate"),
        ("ca", "its CA certificate is not a valid PEM certificate"),
        # OpenSSL takes a leaf as a CA: the handshake failed as a cluster that did not answer.
        ("leaf as ca", "its CA certificate is not a CA certificate"),
    ],
)
def test_a_damaged_certificate_or_key_is_reported_as_such(tmp_path, part, message):
    client = make_tls_material("connection-file").client
    changes = {
        "key": {"key_pem": damaged(client.key_pem)},
        "other key": {"key_pem": make_tls_material("another launch").client.key_pem},
        "ca": {"ca_pem": damaged(client.ca_pem)},
        "leaf as ca": {"ca_pem": client.cert_pem},
    }[part]
    path = connection_file(tmp_path, **changes)
    with pytest.raises(ConnectionFileError) as raised:
        connect(path=path, timeout=2)
    assert str(raised.value) == (
        f"{path} is damaged: {message}: relaunch (`invoke teardown`, then `invoke launch`) for "
        "new certificates"
    )
    checked = subprocess.run(
        [DASKBOX_CLI, "check", "--path", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 1
    assert checked.stderr == f"error: {raised.value}\n"


def _one_character_changed(pem: str, position: int) -> str:
    """``pem`` with one base64 character of its body replaced by another one."""
    lines = pem.splitlines()
    body = list("".join(lines[1:-1]))
    body[position] = "B" if body[position] != "B" else "C"
    text = "".join(body)
    return "\n".join([lines[0], *(text[i : i + 64] for i in range(0, len(text), 64)), lines[-1]])


def _check_says(path: Path) -> str:
    checked = subprocess.run(
        [DASKBOX_CLI, "check", "--path", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 1, checked.stdout
    assert len(checked.stderr.splitlines()) == 1, checked.stderr
    return checked.stderr.strip()


def test_one_changed_character_anywhere_in_the_key_is_damage(tmp_path):
    """The issue's case: one base64 character changed in the key gave cryptography's
    UnsupportedAlgorithm from `invoke check` and ssl.SSLError from connect()."""
    key = make_tls_material("connection-file").client.key_pem
    length = len("".join(key.splitlines()[1:-1]))
    for position in range(length):
        path = connection_file(tmp_path, key_pem=_one_character_changed(key, position))
        with pytest.raises(ConnectionFileError, match=r" is damaged: .*: relaunch"):
            connect(path=path, timeout=2)
    assert " is damaged: its client key " in _check_says(path)


@pytest.mark.parametrize("part", ["ca_pem", "cert_pem", "key_pem"])
def test_a_part_that_is_no_pem_at_all_is_damage(tmp_path, part):
    """``ca_pem = "garbage"`` was taken for a file name by distributed (FileNotFoundError)."""
    path = connection_file(tmp_path, **{part: "garbage"})
    with pytest.raises(ConnectionFileError, match=f"^{path} is damaged: its .* is not a valid"):
        connect(path=path, timeout=2)
    assert _check_says(path).startswith(f"error: {path} is damaged: its ")


@pytest.mark.parametrize(
    "text",
    [b"\xff\xfe\x00garbage", b'{"version": 2, "instance": "\xe9"}'],
    ids=["binary", "latin-1"],
)
def test_a_file_that_is_not_utf8_is_damage(tmp_path, text):
    path = connection_file(tmp_path)
    path.write_bytes(text)
    with pytest.raises(ConnectionFileError) as raised:
        connect(path=path, timeout=2)
    assert str(raised.value) == (
        f"{path} is damaged: it is not UTF-8 text: relaunch (`invoke teardown`, then "
        "`invoke launch`)"
    )
    assert _check_says(path) == f"error: {raised.value}"


@pytest.mark.parametrize(
    "address", ["tls://127.0.0.1:notaport", "tls://[::1", "nonsense", "tls://", 8786]
)
def test_a_scheduler_address_that_is_no_address_is_damage(tmp_path, address):
    """distributed's ValueError (or TypeError) for an address it cannot parse escaped."""
    path = connection_file(tmp_path)
    path.write_text(
        path.read_text().replace(
            f'"scheduler_address": "{read_connection_file(path).scheduler_address}"',
            f'"scheduler_address": {json.dumps(address)}',
        )
    )
    with pytest.raises(ConnectionFileError) as raised:
        connect(path=path, timeout=2)
    assert str(raised.value).startswith(
        f"{path} is damaged: its scheduler address {address!r} is not an address ("
    )
    assert str(raised.value).endswith("): relaunch (`invoke teardown`, then `invoke launch`)")
