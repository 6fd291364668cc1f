"""The connection file: where ``launch`` tells ``connect`` how to reach a cluster.

Like ``dask scheduler --scheduler-file`` it is a small JSON file, but versioned,
written atomically with mode 0600 (it holds the client's private key), and it
records what is needed to prove the environments match (image, lock hash, groups).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from daskbox._files import write_atomically
from daskbox._tasks import Progress
from daskbox.contract import STATE_DIR
from daskbox.errors import ConnectionFileError, ImageRecordError
from daskbox.record import ImageRecord

if TYPE_CHECKING:  # distributed loads only when a client is made, not with the file
    from distributed.security import Security

FORMAT_VERSION = 2
CONNECTION_DIR = STATE_DIR

Target = Literal["gce", "local"]
# A real path, or a pure one (e.g. PureWindowsPath in tests): paths are built the same way.
AnyPath = TypeVar("AnyPath", bound=PurePath)
# "launching": recorded before anything is created, resources may exist; "ready": answering.
LaunchState = Literal["launching", "ready"]


@dataclass(frozen=True)
class ClientTLS:
    """PEM text of the CA and of the client's certificate and key (never paths)."""

    ca_pem: str
    cert_pem: str
    key_pem: str

    def security(self) -> Security:
        """distributed's ``Security`` for the client role, from the inline PEM text.

        ``Security`` takes PEM contents in place of file names (it tells them apart by the
        newlines), so the private key is never written next to the project.
        """
        from distributed.security import Security

        return Security(  # type: ignore[no-untyped-call]
            require_encryption=True,
            tls_ca_file=self.ca_pem,
            tls_client_cert=self.cert_pem,
            tls_client_key=self.key_pem,
        )

    def damage(self) -> str | None:
        """What is wrong with this PEM text, or None: each part loaded with ``cryptography``,
        the CA text checked to hold CA certificates and the key to be the certificate's.

        Checked before OpenSSL sees the text: OpenSSL says only "PEM lib" or "key values
        mismatch" (and takes a leaf certificate as a CA, so a handshake would fail as a
        cluster that does not answer). ``cryptography`` is loaded with this check only.
        """
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        parts = {
            "CA certificate": self.ca_pem,
            "client certificate": self.cert_pem,
            "client key": self.key_pem,
        }
        for part, text in parts.items():
            # Anything else would be read as a file name (distributed's rule), e.g.
            # ``ca_pem = "garbage"`` as the file ./garbage.
            if not isinstance(text, str) or "-----BEGIN " not in text or "\n" not in text:
                return f"its {part} is not a valid PEM {'key' if 'key' in part else 'certificate'}"
        try:
            authorities = x509.load_pem_x509_certificates(self.ca_pem.encode())
        except ValueError:
            return "its CA certificate is not a valid PEM certificate"
        for authority in authorities:
            try:
                is_ca = authority.extensions.get_extension_for_class(x509.BasicConstraints)
            except (x509.ExtensionNotFound, ValueError):
                return "its CA certificate is not a CA certificate"
            if not is_ca.value.ca:
                return "its CA certificate is not a CA certificate"
        try:
            certificate = x509.load_pem_x509_certificate(self.cert_pem.encode())
            public_key = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm):
            return "its client certificate is not a valid PEM certificate"
        try:
            # A changed byte in the key's algorithm identifier is an UnsupportedAlgorithm.
            key = load_pem_private_key(self.key_pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return "its client key is not a valid PEM key"
        if key.public_key() != public_key:
            return "its client key does not belong to its client certificate"
        return None


@dataclass(frozen=True)
class ConnectionFile:
    """Everything a client needs to reach one launched cluster and check it."""

    instance: str
    target: Target
    scheduler_address: str  # e.g. "tls://203.0.113.7:8786"
    dashboard_url: str
    image: str  # digest-pinned reference the cluster runs
    lock_hash: str  # content hash of the poetry.lock the image was built from
    groups: tuple[str, ...]  # Poetry dependency groups installed in the image
    tls: ClientTLS | None
    extras: tuple[str, ...] = ()  # the project's extras installed in the image
    project: str | None = None
    zone: str | None = None
    firewall_rules: tuple[str, ...] = ()  # the launch's own rules (one per IP family)
    state: LaunchState = "ready"
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # What build and push recorded about the image (None for an explicit --image).
    record: ImageRecord | None = None
    version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The file's text: every field, sorted keys."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<connection file>") -> ConnectionFile:
        """Parse a file's ``text``; ``source`` names it in the one-line ConnectionFileError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            message = f"{source} is not valid JSON ({error}): relaunch"
            raise ConnectionFileError(message) from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise ConnectionFileError(
                f"{source} has format version {found!r}, this daskbox reads {FORMAT_VERSION}: "
                "relaunch with this daskbox"
            )
        try:
            tls = ClientTLS(**data.pop("tls")) if data.get("tls") else None
            data.pop("tls", None)
            record = data.pop("record", None)
            data["groups"] = tuple(data["groups"])
            data["extras"] = tuple(data.get("extras", ()))
            data["firewall_rules"] = tuple(data.get("firewall_rules", ()))
            image = None if record is None else ImageRecord.from_dict(record, source)
            connection = cls(tls=tls, record=image, **data)
        except (TypeError, KeyError, ValueError, AttributeError, ImageRecordError) as error:
            raise ConnectionFileError(
                f"{source} is missing or has unknown fields ({error})"
            ) from None
        wrong = connection._wrong_fields()
        if wrong:
            raise ConnectionFileError(
                f"{source} is damaged: {', '.join(wrong)} "
                f"{'holds a value' if len(wrong) == 1 else 'hold values'} of the wrong type: "
                "relaunch (`invoke teardown`, then `invoke launch`)"
            )
        return connection

    def _wrong_fields(self) -> list[str]:
        """The fields whose JSON value is not of the field's type (teardown hands them to
        gcloud, connect to distributed). The scheduler address is checked where it is
        parsed (``connect.open_connection_file``)."""
        texts = {
            "instance": self.instance,
            "dashboard_url": self.dashboard_url,
            "image": self.image,
            "lock_hash": self.lock_hash,
            "created_at": self.created_at,
        }
        wrong = [name for name, value in texts.items() if not isinstance(value, str)]
        for name, items in (
            ("groups", self.groups),
            ("extras", self.extras),
            ("firewall_rules", self.firewall_rules),
        ):
            if not all(isinstance(item, str) for item in items):
                wrong.append(name)
        wrong += [
            name
            for name, value in (("project", self.project), ("zone", self.zone))
            if not isinstance(value, str | None)
        ]
        if self.target not in ("gce", "local"):
            wrong.append("target")
        if self.state not in ("launching", "ready"):
            wrong.append("state")
        if not isinstance(self.extra, dict):
            wrong.append("extra")
        return wrong


def connection_dir(project_root: AnyPath) -> AnyPath:
    """``<project>/.daskbox``, where the project's connection files live."""
    return project_root / CONNECTION_DIR


def connection_path(project_root: AnyPath, instance: str) -> AnyPath:
    """``<project>/.daskbox/<instance>.json``."""
    return connection_dir(project_root) / f"{instance}.json"


def write_connection_file(path: Path, connection: ConnectionFile) -> Path:
    """Write atomically, readable by the owner only (it holds the client's key)."""
    return write_atomically(path, connection.to_json(), private=True)


def keep_private(path: Path, echo: Progress | None = None) -> None:
    """Make a connection file that other users can read owner-only again, saying so.

    It holds the client's key, so anyone who can read it can run code on the cluster. POSIX
    mode bits only: on Windows the file lives in the user's profile, whose access list
    already keeps it private, and ``chmod`` there sets only the read-only flag.
    """
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    try:
        path.chmod(0o600)
    except PermissionError:
        raise ConnectionFileError(
            f"{path} is readable by other users (mode {mode:04o}) and holds your client key, "
            f"and it is not yours to change: ask its owner to run `chmod 600 {path}`"
        ) from None
    (echo or _to_stderr)(
        f"daskbox: {path} was readable by other users (mode {mode:04o}); made it 0600 "
        "(it holds your client key: relaunch if someone may have copied it)"
    )


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_connection_file(path: Path, echo: Progress | None = None) -> ConnectionFile:
    """Read ``path``; a missing or malformed file is a one-line ConnectionFileError.

    A file other users can read is made private first (``keep_private``).
    """
    try:
        keep_private(path, echo)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectionFileError(
            f"no connection file at {path}: run `invoke launch` (or `invoke launch --local`) first"
        ) from None
    except UnicodeDecodeError:
        raise ConnectionFileError(
            f"{path} is damaged: it is not UTF-8 text: relaunch (`invoke teardown`, then "
            "`invoke launch`)"
        ) from None
    return ConnectionFile.from_json(text, source=str(path))


def find_connection_file(project_root: Path, instance: str | None = None) -> Path:
    """The file for ``instance``, or the only one in the project; refuse when ambiguous."""
    if instance is not None:
        return connection_path(project_root, instance)
    candidates = sorted(connection_dir(project_root).glob("*.json"))
    if not candidates:
        raise ConnectionFileError(
            f"no connection file in {connection_dir(project_root)}: run `invoke launch` first"
        )
    if len(candidates) > 1:
        names = ", ".join(p.stem for p in candidates)
        raise ConnectionFileError(
            f"several clusters are launched ({names}): name one, connect('NAME')"
        )
    return candidates[0]
