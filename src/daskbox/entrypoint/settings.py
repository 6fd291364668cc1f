"""Environment variables -> validated ``Settings``; the only place that reads them.

Runs inside the image before anything is started: every value is checked here, and a
bad one raises ``SettingsError`` whose message names the variable and the accepted
form (``__main__`` turns it into one line and exit code 2).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dask.utils import parse_bytes, parse_timedelta

from daskbox.contract import (
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_NODE_NAME,
    DEFAULT_ORPHAN_TIMEOUT_SECONDS,
    DEFAULT_SCHEDULER_PORT,
    ENV_DASHBOARD_PORT,
    ENV_IDLE_TIMEOUT,
    ENV_LISTEN_HOST,
    ENV_MEMORY_PER_WORKER,
    ENV_NODE_NAME,
    ENV_ORPHAN_TIMEOUT,
    ENV_SCHEDULER_ADDRESS,
    ENV_SCHEDULER_PORT,
    ENV_THREADS_PER_WORKER,
    ENV_TLS_CA_FILE,
    ENV_TLS_CERT_FILE,
    ENV_TLS_KEY_FILE,
    ENV_WORKERS,
    LEGACY_ENV_MEMORY_PER_WORKER,
    LEGACY_ENV_THREADS_PER_WORKER,
    LEGACY_ENV_WORKERS,
)

_GB = 10**9  # the original recipe passed MEMORY_PER_WORKER to dask as "<n>GB", i.e. 10**9


class SettingsError(ValueError):
    """A setting is malformed or impossible; ``str(error)`` is the one-line message."""


@dataclass(frozen=True)
class Override:
    """A sizing value the user set, with the variable it came from (shown in the plan)."""

    value: int
    variable: str


@dataclass(frozen=True)
class Overrides:
    """Sizing values set by environment variable; ``None`` means "decide from the machine"."""

    workers: Override | None = None
    threads_per_worker: Override | None = None
    memory_per_worker: Override | None = None


@dataclass(frozen=True)
class TLSFiles:
    """Server-side TLS material: scheduler and workers present ``cert_file``/``key_file``
    and accept only peers whose certificate is signed by ``ca_file``."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Settings:
    """Everything the entrypoint reads from its environment, validated."""

    overrides: Overrides
    scheduler_port: int = DEFAULT_SCHEDULER_PORT
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    idle_timeout: float | None = None  # seconds; None = never
    tls: TLSFiles | None = None
    listen_host: str = ""  # "" = every interface
    # Worker mode: the scheduler to join ("" = run the scheduler here too).
    scheduler_address: str = ""
    node_name: str = DEFAULT_NODE_NAME  # workers are named <node_name>-0, -1, ...
    # Worker mode: seconds without reaching the scheduler before exiting 0; None = never.
    orphan_timeout: float | None = DEFAULT_ORPHAN_TIMEOUT_SECONDS

    @property
    def worker_mode(self) -> bool:
        """Only nannies and workers, joining ``scheduler_address``."""
        return bool(self.scheduler_address)


def read_settings(environ: Mapping[str, str]) -> Settings:
    """Validate ``environ`` into ``Settings``; raise ``SettingsError`` on the first bad value."""
    settings = Settings(
        overrides=Overrides(
            workers=_pick(environ, ENV_WORKERS, LEGACY_ENV_WORKERS, _parse_count),
            threads_per_worker=_pick(
                environ, ENV_THREADS_PER_WORKER, LEGACY_ENV_THREADS_PER_WORKER, _parse_count
            ),
            memory_per_worker=_pick(
                environ, ENV_MEMORY_PER_WORKER, LEGACY_ENV_MEMORY_PER_WORKER, _parse_memory
            ),
        ),
        scheduler_port=_port(environ, ENV_SCHEDULER_PORT, DEFAULT_SCHEDULER_PORT),
        dashboard_port=_port(environ, ENV_DASHBOARD_PORT, DEFAULT_DASHBOARD_PORT),
        idle_timeout=_duration(environ, ENV_IDLE_TIMEOUT, None),
        orphan_timeout=_duration(environ, ENV_ORPHAN_TIMEOUT, DEFAULT_ORPHAN_TIMEOUT_SECONDS),
        tls=_tls(environ),
        listen_host=_listen_host(environ),
        node_name=_node_name(environ),
    )
    address = _scheduler_address(environ, tls=settings.tls is not None)
    if address:
        settings = dataclasses.replace(settings, scheduler_address=address)
    if settings.scheduler_port == settings.dashboard_port:
        raise SettingsError(
            f"{ENV_SCHEDULER_PORT} and {ENV_DASHBOARD_PORT} are both "
            f"{settings.scheduler_port}: expected two different port numbers"
        )
    return settings


def _set(environ: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``, or None when unset or empty (as Docker's ``-e X=``)."""
    value = environ.get(name, "").strip()
    return value or None


def _pick(
    environ: Mapping[str, str], name: str, alias: str, parse: Callable[[str, str], int]
) -> Override | None:
    """The parsed value of daskbox's ``name`` or the original recipe's ``alias``.

    Both may be set (a launcher writes ``name``, an old run script ``alias``) as long as
    they mean the same value.
    """
    own, legacy = _set(environ, name), _set(environ, alias)
    if own is None and legacy is None:
        return None
    if legacy is None:
        return Override(parse(name, str(own)), name)
    if own is None:
        return Override(parse(alias, legacy), alias)
    value = parse(name, own)
    if parse(alias, legacy) != value:
        raise SettingsError(
            f"{name}={own!r} and {alias}={legacy!r} are both set to different values: "
            "set only one of them"
        )
    return Override(value, name)


def _parse_count(variable: str, raw: str) -> int:
    """A whole number of at least 1 (workers, threads per worker)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(
            f"{variable}={raw!r} is invalid: expected a whole number of at least 1, e.g. 4"
        )
    return value


def _parse_memory(variable: str, raw: str) -> int:
    """Bytes from daskbox's variable (a size with units) or the recipe's plain GB number."""
    if variable == LEGACY_ENV_MEMORY_PER_WORKER:
        form = "a positive number of GB (10**9 bytes), e.g. 4 or 2.5"
        try:
            size = int(float(raw) * _GB)
        except (ValueError, OverflowError):  # "lots", "inf", "nan"
            size = 0
    else:
        form = 'a positive number of bytes or a size with a unit, e.g. "3GiB", "3GB", "512MiB"'
        try:
            size = parse_bytes(raw)
        except (ValueError, TypeError, OverflowError):  # "3XB", "1e400GB"
            size = 0
    # Checked after conversion: "1e-12" GB is 0 bytes, which distributed reads as "no limit".
    if size <= 0:
        raise SettingsError(f"{variable}={raw!r} is invalid: expected {form}")
    return size


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    """A port number from 1 to 65535, or ``default`` when unset."""
    raw = _set(environ, name)
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name}={raw!r} is invalid: expected a port number from 1 to 65535")
    return port


def _duration(environ: Mapping[str, str], name: str, default: float | None) -> float | None:
    """Seconds of the timeout ``name``, ``default`` when unset, None for "never" (0)."""
    raw = _set(environ, name)
    if raw is None:
        return default
    unset = "0 or unset: never" if default is None else f"0: never; unset: {default:g}s"
    form = f'seconds or a duration such as "30m" or "2h" ({unset})'
    try:
        seconds = parse_timedelta(raw, default="seconds")
    except (ValueError, KeyError, TypeError, OverflowError):  # "10 fortnights", "1e400"
        raise SettingsError(f"{name}={raw!r} is invalid: expected {form}") from None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise SettingsError(f"{name}={raw!r} is invalid: expected {form}")
    return seconds or None


def _listen_host(environ: Mapping[str, str]) -> str:
    """An IP address of this machine to listen on, or "" (unset) for every interface."""
    raw = _set(environ, ENV_LISTEN_HOST)
    if raw is None:
        return ""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise SettingsError(
            f"{ENV_LISTEN_HOST}={raw!r} is invalid: expected an IP address such as 127.0.0.1 "
            "(unset: every interface)"
        ) from None


_NODE_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}")


def _node_name(environ: Mapping[str, str]) -> str:
    """The workers' name prefix: letters, digits, '-', '_', '.' (a VM's name fits)."""
    raw = _set(environ, ENV_NODE_NAME)
    if raw is None:
        return DEFAULT_NODE_NAME
    if not _NODE_NAME.fullmatch(raw):
        raise SettingsError(
            f"{ENV_NODE_NAME}={raw!r} is invalid: expected up to 63 letters, digits, '-', '_' "
            "or '.', starting with a letter or digit (e.g. the VM's name)"
        )
    return raw


def _scheduler_address(environ: Mapping[str, str], *, tls: bool) -> str:
    """The scheduler a worker-mode entrypoint joins: ``tls://HOST:PORT`` (``tcp://``
    without TLS files), or "" when unset (run the scheduler here)."""
    raw = _set(environ, ENV_SCHEDULER_ADDRESS)
    if raw is None:
        return ""
    scheme = "tls" if tls else "tcp"
    form = f"an address such as {scheme}://10.128.0.2:8786"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if (
        parts.scheme not in {"tls", "tcp"}
        or not parts.hostname
        or port is None
        or (parts.path not in {"", "/"})
    ):
        raise SettingsError(f"{ENV_SCHEDULER_ADDRESS}={raw!r} is invalid: expected {form}")
    if parts.scheme != scheme:
        why = "the TLS files are set" if tls else "no TLS files are set"
        raise SettingsError(
            f"{ENV_SCHEDULER_ADDRESS}={raw!r} uses {parts.scheme}:// but {why}: expected {form}"
        )
    return f"{parts.scheme}://{parts.netloc}"


_TLS_VARIABLES = (ENV_TLS_CA_FILE, ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE)


def _tls(environ: Mapping[str, str]) -> TLSFiles | None:
    """The three TLS files, checked readable and matching, or None when none is set."""
    values = {name: _set(environ, name) for name in _TLS_VARIABLES}
    given = [name for name, value in values.items() if value is not None]
    if not given:
        return None
    if len(given) != len(_TLS_VARIABLES):
        missing = ", ".join(name for name in _TLS_VARIABLES if name not in given)
        raise SettingsError(
            f"{', '.join(given)} set but {missing} not: set all three TLS files or none"
        )
    paths = {name: Path(str(value)) for name, value in values.items()}
    for name, path in paths.items():
        try:
            path.read_bytes()
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise SettingsError(
                f"{name}={str(path)!r} cannot be read ({reason}): expected a readable PEM file"
            ) from None
    tls = TLSFiles(
        ca_file=paths[ENV_TLS_CA_FILE],
        cert_file=paths[ENV_TLS_CERT_FILE],
        key_file=paths[ENV_TLS_KEY_FILE],
    )
    _check_pem(tls)
    return tls


def _check_pem(tls: TLSFiles) -> None:
    """Load the files the way distributed will, so a wrong file fails now, not in a child.

    The same two calls as ``distributed.security.Security._get_tls_context`` (a default
    context with the CA, then the certificate chain); Security itself is not used because
    importing distributed here would add ~0.3 s before anything starts.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_verify_locations(cafile=tls.ca_file)
    except (ssl.SSLError, ValueError):
        raise SettingsError(
            f"{ENV_TLS_CA_FILE}={str(tls.ca_file)!r} holds no CA certificate: "
            "expected a PEM certificate file"
        ) from None
    try:
        # An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
        context.load_cert_chain(certfile=tls.cert_file, keyfile=tls.key_file, password=b"")
    except (ssl.SSLError, ValueError):
        raise SettingsError(
            f"{ENV_TLS_CERT_FILE}={str(tls.cert_file)!r} and "
            f"{ENV_TLS_KEY_FILE}={str(tls.key_file)!r} are not a matching PEM "
            "certificate and unencrypted private key"
        ) from None
