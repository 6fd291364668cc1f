"""Every bad setting: ``python -m daskbox.entrypoint`` exits 2 with one line naming it, before
starting anything; good settings parse into the values the other stages use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from daskbox.entrypoint.settings import Override, TLSFiles, read_settings

from .certs import make_authority
from .cluster import entrypoint_environ


def run_entrypoint(**settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daskbox.entrypoint"],
        env=entrypoint_environ(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TLSFiles:
    server, _ = make_authority(tmp_path_factory.mktemp("tls"), "daskbox test CA")
    return TLSFiles(server.ca_file, server.cert_file, server.key_file)


BAD_SETTINGS = [
    ({"NUM_WORKERS": "four"}, "NUM_WORKERS='four' is invalid: expected a whole number"),
    ({"DASKBOX_WORKERS": "0"}, "DASKBOX_WORKERS='0' is invalid"),
    ({"DASKBOX_THREADS_PER_WORKER": "-2"}, "DASKBOX_THREADS_PER_WORKER='-2' is invalid"),
    ({"THREADS_PER_WORKER": "1.5"}, "THREADS_PER_WORKER='1.5' is invalid"),
    (
        {"MEMORY_PER_WORKER": "lots"},
        "MEMORY_PER_WORKER='lots' is invalid: expected a positive number of GB",
    ),
    ({"MEMORY_PER_WORKER": "0"}, "MEMORY_PER_WORKER='0' is invalid"),
    (
        {"DASKBOX_MEMORY_PER_WORKER": "3XB"},
        "DASKBOX_MEMORY_PER_WORKER='3XB' is invalid: expected a positive number of bytes or a "
        "size with a unit",
    ),
    ({"DASKBOX_MEMORY_PER_WORKER": "-1GiB"}, "DASKBOX_MEMORY_PER_WORKER='-1GiB' is invalid"),
    (
        {"NUM_WORKERS": "2", "MEMORY_PER_WORKER": "100000"},
        "MEMORY_PER_WORKER: 90.95 TiB x 2 worker(s) is more than the",
    ),
    (
        {"DASKBOX_SCHEDULER_PORT": "70000"},
        "DASKBOX_SCHEDULER_PORT='70000' is invalid: expected a port number from 1 to 65535",
    ),
    ({"DASKBOX_DASHBOARD_PORT": "0"}, "DASKBOX_DASHBOARD_PORT='0' is invalid"),
    ({"DASKBOX_DASHBOARD_PORT": "http"}, "DASKBOX_DASHBOARD_PORT='http' is invalid"),
    ({"DASKBOX_IDLE_TIMEOUT": "10 fortnights"}, "DASKBOX_IDLE_TIMEOUT='10 fortnights' is invalid"),
    ({"DASKBOX_IDLE_TIMEOUT": "-5"}, "DASKBOX_IDLE_TIMEOUT='-5' is invalid"),
    # numbers too large for an int made dask's parsers raise OverflowError (a traceback)
    ({"DASKBOX_IDLE_TIMEOUT": "1e400"}, "DASKBOX_IDLE_TIMEOUT='1e400' is invalid"),
    ({"DASKBOX_MEMORY_PER_WORKER": "1e400GB"}, "DASKBOX_MEMORY_PER_WORKER='1e400GB' is invalid"),
    ({"MEMORY_PER_WORKER": "inf"}, "MEMORY_PER_WORKER='inf' is invalid"),
    # rounds to 0 bytes, which distributed would read as "no memory limit"
    ({"MEMORY_PER_WORKER": "1e-12"}, "MEMORY_PER_WORKER='1e-12' is invalid"),
    (
        {"MEMORY_PER_WORKER": "0.1"},
        "MEMORY_PER_WORKER: 95.37 MiB per worker is below what a worker needs to start",
    ),
    (
        {"NUM_WORKERS": "1000"},
        "NUM_WORKERS=1000: ",  # the rest depends on this machine's memory
    ),
    (
        {"NUM_WORKERS": "2", "DASKBOX_WORKERS": "3"},
        "DASKBOX_WORKERS='3' and NUM_WORKERS='2' are both set to different values",
    ),
    (
        {"MEMORY_PER_WORKER": "3", "DASKBOX_MEMORY_PER_WORKER": "3GiB"},
        "DASKBOX_MEMORY_PER_WORKER='3GiB' and MEMORY_PER_WORKER='3' are both set to different",
    ),
    (
        {"DASKBOX_LISTEN_HOST": "localhost"},
        "DASKBOX_LISTEN_HOST='localhost' is invalid: expected an IP address such as 127.0.0.1",
    ),
    (
        {"DASKBOX_SCHEDULER_PORT": "9786", "DASKBOX_DASHBOARD_PORT": "9786"},
        "DASKBOX_SCHEDULER_PORT and DASKBOX_DASHBOARD_PORT are both 9786: expected two "
        "different port numbers",
    ),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS, ids=lambda value: str(value)[:40])
def test_bad_setting_exits_2_with_one_line(settings, message):
    result = run_entrypoint(**settings)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # nothing planned, nothing started
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"daskbox entrypoint: {message}"), result.stderr


def tls_environ(tls: TLSFiles, **changes: str) -> dict[str, str]:
    environ = {
        "DASKBOX_TLS_CA_FILE": str(tls.ca_file),
        "DASKBOX_TLS_CERT_FILE": str(tls.cert_file),
        "DASKBOX_TLS_KEY_FILE": str(tls.key_file),
    }
    environ.update(changes)
    return {name: value for name, value in environ.items() if value}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"DASKBOX_TLS_KEY_FILE": ""},
            "DASKBOX_TLS_CA_FILE, DASKBOX_TLS_CERT_FILE set but DASKBOX_TLS_KEY_FILE not",
        ),
        (
            {"DASKBOX_TLS_CA_FILE": "/nonexistent/ca.pem"},
            "DASKBOX_TLS_CA_FILE='/nonexistent/ca.pem' cannot be read (No such file or directory)",
        ),
        # running as root, a directory is the one thing that cannot be read
        (
            {"DASKBOX_TLS_CERT_FILE": "/"},
            "DASKBOX_TLS_CERT_FILE='/' cannot be read (Is a directory)",
        ),
        (
            {"DASKBOX_TLS_CA_FILE": "/etc/hostname"},
            "DASKBOX_TLS_CA_FILE='/etc/hostname' holds no CA certificate",
        ),
        ({"DASKBOX_TLS_KEY_FILE": "CA"}, "are not a matching PEM certificate and unencrypted"),
        # OpenSSL would prompt for the passphrase on a terminal; refused instead
        ({"DASKBOX_TLS_KEY_FILE": "ENCRYPTED"}, "are not a matching PEM certificate and unencr"),
    ],
    ids=["partial", "missing", "unreadable", "not-pem", "key-mismatch", "encrypted-key"],
)
def test_bad_tls_files_exit_2(tls_files, changes, message, tmp_path):
    if changes.get("DASKBOX_TLS_KEY_FILE") == "CA":
        changes = {"DASKBOX_TLS_KEY_FILE": str(tls_files.ca_file)}
    if changes.get("DASKBOX_TLS_KEY_FILE") == "ENCRYPTED":
        changes = {"DASKBOX_TLS_KEY_FILE": str(encrypted_copy(tls_files.key_file, tmp_path))}
    result = run_entrypoint(**tls_environ(tls_files, **changes))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr


def encrypted_copy(key_file: Path, directory: Path) -> Path:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    encrypted = directory / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return encrypted


def test_good_settings_from_the_recipe_names():
    settings = read_settings(
        {
            "NUM_WORKERS": "3",
            "THREADS_PER_WORKER": "2",
            "MEMORY_PER_WORKER": "2.5",
            "DASKBOX_IDLE_TIMEOUT": "30m",
            "DASKBOX_SCHEDULER_PORT": "9786",
        }
    )
    assert settings.overrides.workers == Override(3, "NUM_WORKERS")
    assert settings.overrides.threads_per_worker == Override(2, "THREADS_PER_WORKER")
    assert settings.overrides.memory_per_worker == Override(2_500_000_000, "MEMORY_PER_WORKER")
    assert (settings.scheduler_port, settings.dashboard_port) == (9786, 8787)
    assert settings.idle_timeout == 1800
    assert settings.tls is None


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({"NUM_WORKERS": "2", "DASKBOX_WORKERS": "2"}, "workers", Override(2, "DASKBOX_WORKERS")),
        (
            {"THREADS_PER_WORKER": "4", "DASKBOX_THREADS_PER_WORKER": "04"},
            "threads_per_worker",
            Override(4, "DASKBOX_THREADS_PER_WORKER"),
        ),
        (
            {"MEMORY_PER_WORKER": "3", "DASKBOX_MEMORY_PER_WORKER": "3GB"},
            "memory_per_worker",
            Override(3 * 10**9, "DASKBOX_MEMORY_PER_WORKER"),
        ),
    ],
)
def test_alias_and_own_name_may_both_be_set_to_the_same_value(environ, field, expected):
    assert getattr(read_settings(environ).overrides, field) == expected


@pytest.mark.parametrize(
    ("raw", "size"),
    [("3GiB", 3 * 2**30), ("3GB", 3 * 10**9), ("512MiB", 512 * 2**20), ("1000", 1000)],
)
def test_memory_units(raw, size):
    overrides = read_settings({"DASKBOX_MEMORY_PER_WORKER": raw}).overrides
    assert overrides.memory_per_worker == Override(size, "DASKBOX_MEMORY_PER_WORKER")


@pytest.mark.parametrize(("raw", "seconds"), [("0", None), ("", None), ("90", 90), ("2h", 7200)])
def test_idle_timeout_forms(raw, seconds):
    assert read_settings({"DASKBOX_IDLE_TIMEOUT": raw}).idle_timeout == seconds


def test_tls_files_are_read_when_all_three_are_set(tls_files):
    assert read_settings(tls_environ(tls_files)).tls == tls_files


def test_settings_error_is_a_value_error():
    with pytest.raises(ValueError, match="DASKBOX_WORKERS"):
        read_settings({"DASKBOX_WORKERS": "many"})
