"""A Container-Optimized OS VM, modelled on this host for the Compute Engine emulator.

What a real COS VM does at boot, and only that, from the instance's own metadata:

* **File system.** The VM's files live under a private root folder. ``/etc``, ``/tmp``,
  ``/run``, ``/var/lib/cloud`` and ``/mnt/disks`` are stateless (emptied at every boot),
  ``/var`` and ``/home`` keep their contents, as on COS. Absolute paths that commands on
  the VM name under those folders are mapped into the root.
* **cloud-init runs at every boot** (COS keeps ``/var/lib/cloud`` on a tmpfs) from the
  ``user-data`` metadata value: ``#cloud-config`` with ``write_files`` and ``runcmd``
  only. Any other module, an unknown ``write_files`` key, or a ``runcmd`` line the
  model does not know fails the boot (the serial port says why) instead of being skipped.
* **systemd** runs the units cloud-init writes to ``/etc/systemd/system``: ordering after
  ``network-online.target``, ``gcr-online.target`` and ``docker.service`` (which become
  active shortly after boot starts; Docker refuses commands until then),
  ``ExecStartPre``/``ExecStart`` with ``-`` prefixes, ``Environment``, ``$$`` escapes,
  ``Restart=on-failure``/``RestartSec``/``RestartPreventExitStatus`` and
  ``SuccessAction=poweroff``. Unknown unit keys fail the unit.
* **Host commands** are a fixed list of what COS ships (a shell, coreutils, curl, docker,
  docker-credential-gcr, systemctl; no openssl, no Python): anything else is "not found".
* **Docker** is this host's engine, reached through a shim that gives the VM's containers
  names of their own (so VMs and test runs can share one engine), maps bind-mount
  sources into the root, labels every container for clean-up, and uses only the Docker
  client configuration under the VM's ``$HOME``: no host login, no ``DOCKER_CONFIG``.
  ``docker pull`` by digest always asks the registry, so the pull path and its
  credentials are exercised even when the engine already holds the layers.
* **The metadata server** of each VM listens on its own loopback port; the VM's host
  processes reach ``metadata.google.internal`` through it (as their HTTP proxy, the one
  route this model has to that name). It serves instance attributes, the service
  account's access token (when the instance has a service account with scopes) and guest
  attributes (writable only when ``enable-guest-attributes`` is TRUE), and nothing else.
* **Power.** ``stop`` shuts the VM down (units get SIGTERM), ``reset`` cuts the power;
  both leave the containers' records as a real VM's Docker would keep them. ``start``
  boots again: the stateless folders are emptied and cloud-init runs again.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SHIMS = Path(__file__).with_name("cos_shims.py")
# What COS ships on its read-only root that commands may call (besides the shims).
COS_COMMANDS = (
    "bash",
    "sh",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "ls",
    "mkdir",
    "chmod",
    "chown",
    "touch",
    "stat",
    "sleep",
    "test",
    "[",
    "true",
    "false",
    "printf",
    "echo",
    "env",
    "id",
    "date",
    "head",
    "tail",
    "grep",
    "sed",
    "tr",
    "cut",
    "wc",
    "sort",
    "tee",
    "basename",
    "dirname",
    "mktemp",
    "timeout",
    "seq",
    "expr",
    "kill",
    "uname",
    "curl",
)
SHIM_COMMANDS = ("docker", "docker-credential-gcr", "systemctl")
COMMAND_FOLDERS = ("/bin", "/usr/bin", "/sbin", "/usr/sbin")
WRITABLE_ROOTS = ("etc", "var", "home", "tmp", "run", "mnt")
STATELESS = ("etc", "tmp", "run", "var/lib/cloud", "mnt/disks")
# Boot targets and when (seconds after the boot starts) each becomes active.
BOOT_TARGETS = {
    "network.target": 0.0,
    "network-online.target": 0.05,
    "gcr-online.target": 0.1,
    "docker.socket": 0.3,
    "docker.service": 0.3,
}
CLOUD_CONFIG_MODULES = ("write_files", "runcmd")
WRITE_FILES_KEYS = {"path", "content", "encoding", "permissions", "owner", "append", "defer"}
UNIT_KEYS = {
    "Unit": {
        "Description",
        "Documentation",
        "Wants",
        "Requires",
        "After",
        "Before",
        "StartLimitIntervalSec",
        "StartLimitBurst",
        "SuccessAction",
        "FailureAction",
    },
    "Service": {
        "Type",
        "Environment",
        "ExecStartPre",
        "ExecStart",
        "ExecStopPost",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStartSec",
        "TimeoutStopSec",
        "StandardOutput",
        "StandardError",
        "RemainAfterExit",
    },
    "Install": {"WantedBy"},
}
CONTAINER_LABEL = "gce-emulator.vm"


class BootFailure(Exception):
    """What cloud-init on this model cannot do; the boot stops there."""


@dataclass
class Identity:
    """What the metadata server knows about its VM (set by the API at insert)."""

    project: str
    zone: str
    name: str
    instance_id: str
    metadata: dict[str, str]
    scopes: tuple[str, ...]
    service_account: str | None
    access_token: str = ""
    network_ip: str = "10.128.0.2"
    external_ip: str | None = None


@dataclass
class Unit:
    """A parsed systemd service unit."""

    name: str
    keys: dict[str, dict[str, list[str]]]

    def get(self, section: str, key: str, default: str = "") -> str:
        values = self.keys.get(section, {}).get(key, [])
        return values[-1] if values else default

    def all(self, section: str, key: str) -> list[str]:
        return list(self.keys.get(section, {}).get(key, []))


def parse_unit(name: str, text: str) -> Unit:
    """systemd's INI dialect: sections, repeated keys, ``\\`` continuations, comments."""
    keys: dict[str, dict[str, list[str]]] = {}
    section = None
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            if section not in UNIT_KEYS:
                raise BootFailure(f"{name}: section [{section}] is not modelled")
            keys.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if section is None or not sep:
            raise BootFailure(f"{name}: cannot parse line {line!r}")
        if key not in UNIT_KEYS[section]:
            raise BootFailure(f"{name}: unknown key {section}.{key}")
        keys[section].setdefault(key, []).append(value.strip())
    return Unit(name, keys)


def _words(value: str) -> list[str]:
    return value.split()


def expand_exec(line: str, env: dict[str, str]) -> tuple[bool, list[str]]:
    """One ``Exec*=`` value -> (ignore failure, argv), with systemd's ``$$`` and ``${X}``."""
    ignore = line.startswith("-")
    line = line.lstrip("-")
    if line[:1] in {"@", "+", "!", ":"}:
        raise BootFailure(f"the {line[0]!r} prefix of {line!r} is not modelled")
    placeholder, percent = "\x00", "\x01"
    line = line.replace("$$", placeholder).replace("%%", percent)
    if "%" in line:
        raise BootFailure(f"systemd specifiers in {line!r} are not modelled: write %% for %")
    line = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m[1], ""), line)
    if "$" in line:
        raise BootFailure(f"unbraced $VARIABLE in {line!r} is not modelled: use ${{X}} or $$")
    words = shlex.split(line)
    return ignore, [word.replace(placeholder, "$").replace(percent, "%") for word in words]


class _UnitRun:
    """One started unit: its thread, its current process, its state."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.state = "activating"
        self.process: subprocess.Popen[bytes] | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.attempts = 0


class CosVm:
    """One emulated VM: its root folder, metadata server, boots, units and containers."""

    def __init__(
        self,
        identity: Identity,
        root: Path,
        *,
        emulator_id: str,
        on_power_off: Callable[[], None],
    ) -> None:
        self.identity = identity
        self.root = root
        self.bin = root.parent / f"{root.name}.cos-bin"
        self.key = f"{emulator_id}.{identity.instance_id}"
        self.prefix = f"vm{identity.instance_id}-"
        self.on_power_off = on_power_off
        self.guest_attributes: dict[tuple[str, str], str] = {}
        self.serial: list[str] = []
        self.boots = 0
        self.active: set[str] = set()
        self.units: dict[str, _UnitRun] = {}
        self.lock = threading.RLock()
        self._halting = False
        self._timers: list[threading.Timer] = []
        root.mkdir(parents=True, exist_ok=True)
        self._install_commands()
        self.metadata = _MetadataServer(self)

    # -- set-up ------------------------------------------------------------------------
    def _install_commands(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        for command in COS_COMMANDS:
            found = shutil.which(command)
            if found is not None and not (self.bin / command).exists():
                (self.bin / command).symlink_to(found)
        for command in SHIM_COMMANDS:
            shim = self.bin / command
            shim.write_text(
                f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(SHIMS))} "
                f'{command} "$@"\n'
            )
            shim.chmod(0o755)

    def host_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of the VM's host processes: COS's commands, the metadata server
        as the route to metadata.google.internal, and what the shims need to know."""
        env = {
            "PATH": str(self.bin),
            "LANG": "C.UTF-8",
            "HOME": self.host_path("/root"),
            "http_proxy": self.metadata.url,
            "COS_EMU_ROOT": str(self.root),
            "COS_EMU_PREFIX": self.prefix,
            "COS_EMU_LABEL": f"{CONTAINER_LABEL}={self.key}",
            "COS_EMU_DOCKER": shutil.which("docker") or "docker",
        }
        for key, value in (extra or {}).items():
            env[key] = self.host_path(value) if value.startswith("/") else value
        return env

    def host_path(self, path: str) -> str:
        """An absolute path on the VM -> where it lives on this host (a command COS ships,
        e.g. ``/usr/bin/docker`` handed to a script: this model's command of that name)."""
        folder, _, command = path.rpartition("/")
        if folder in COMMAND_FOLDERS and command in COS_COMMANDS + SHIM_COMMANDS:
            return str(self.bin / command)
        parts = path.split("/")
        if path.startswith("/") and len(parts) > 1 and parts[1] in WRITABLE_ROOTS:
            return str(self.root / path.lstrip("/"))
        return path

    def log(self, line: str) -> None:
        with self.lock:
            self.serial.append(line)

    # -- power -------------------------------------------------------------------------
    def boot(self) -> None:
        """Power on: empty the stateless folders, bring the targets up, run cloud-init."""
        with self.lock:
            self._halting = False
            self.boots += 1
            self.active = set()
            for folder in STATELESS:
                shutil.rmtree(self.root / folder, ignore_errors=True)
            for folder in WRITABLE_ROOTS:
                (self.root / folder).mkdir(parents=True, exist_ok=True)
            self.log(f"[    0.000000] Booting Container-Optimized OS (boot {self.boots})")
            for target, delay in BOOT_TARGETS.items():
                timer = threading.Timer(delay, self._activate, (target, self.boots))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
        try:
            self._cloud_init()
        except BootFailure as error:
            self.log(f"cloud-init[1]: boot failed: {error}")

    def _activate(self, target: str, boot: int) -> None:
        with self.lock:
            if self._halting or boot != self.boots:
                return
            self.active.add(target)
            if target == "docker.service":
                (self.root / "run" / "docker.sock").touch()
            self.log(f"systemd[1]: Reached {target}.")

    def halt(self, *, graceful: bool) -> None:
        """Shut down (graceful: units get SIGTERM first) or cut the power."""
        with self.lock:
            self._halting = True
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            runs = list(self.units.values())
            self.units = {}
            self.active = set()
        for run in runs:
            run.stop.set()
            _signal(run.process, signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + (10 if graceful else 0)
        for run in runs:
            if run.process is not None:
                try:
                    run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(run.process, signal.SIGKILL)
                    run.process.wait()
        # The machine is off: its containers stop; Docker keeps their records.
        for container in self.containers(running_only=True):
            _docker("kill", container)
        (self.root / "run" / "docker.sock").unlink(missing_ok=True)

    def destroy(self) -> None:
        """The instance is deleted: power off, remove its containers and its disk."""
        self.halt(graceful=False)
        for container in self.containers():
            _docker("rm", "--force", container)
        self.metadata.close()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.bin, ignore_errors=True)

    def containers(self, *, running_only: bool = False) -> list[str]:
        """Names of the containers this VM started that Docker still has."""
        argv = ["ps", "--format", "{{.Names}}", "--filter", f"label={CONTAINER_LABEL}={self.key}"]
        if not running_only:
            argv.insert(1, "--all")
        return _docker(*argv).stdout.split()

    def poll_power(self) -> None:
        """``systemctl poweroff`` from a process on the VM (the shim leaves a mark)."""
        mark = self.root / "run" / "systemd" / "poweroff-requested"
        if mark.exists():
            mark.unlink(missing_ok=True)
            self._request_power_off("systemctl poweroff")

    def _request_power_off(self, why: str) -> None:
        with self.lock:
            if self._halting:
                return
        self.log(f"systemd[1]: {why}: powering off.")
        threading.Thread(target=self.on_power_off, daemon=True).start()

    # -- cloud-init --------------------------------------------------------------------
    def _cloud_init(self) -> None:
        user_data = self.identity.metadata.get("user-data")
        if user_data is None:
            self.log("cloud-init[1]: no user-data")
            return
        if not user_data.startswith("#cloud-config"):
            raise BootFailure("user-data is not #cloud-config")
        config = yaml.safe_load(user_data) or {}
        for module in config:
            if module not in CLOUD_CONFIG_MODULES:
                raise BootFailure(f"cloud-config module {module!r} is not modelled")
        for item in config.get("write_files", []):
            self._write_file(item)
        for line in config.get("runcmd", []):
            self._runcmd(line)
        self.log("cloud-init[1]: Cloud-init finished")

    def _write_file(self, item: dict[str, Any]) -> None:
        unknown = set(item) - WRITE_FILES_KEYS
        if unknown:
            raise BootFailure(f"write_files keys {sorted(unknown)} are not modelled")
        if item.get("owner", "root:root") not in {"root", "root:root"}:
            raise BootFailure(f"write_files owner {item['owner']!r}: the COS host has no such user")
        target = Path(self.host_path(item["path"]))
        if not str(target).startswith(str(self.root)):
            raise BootFailure(f"write_files: {item['path']} is on COS's read-only root")
        target.parent.mkdir(parents=True, exist_ok=True)
        content = item.get("content", "")
        encoding = item.get("encoding")
        if encoding in {"b64", "base64"}:
            data = base64.b64decode(content)
        elif encoding is None:
            data = str(content).encode()
        else:
            raise BootFailure(f"write_files encoding {encoding!r} is not modelled")
        with target.open("ab" if item.get("append") else "wb") as stream:
            stream.write(data)
        target.chmod(int(str(item.get("permissions", "0644")), 8))

    def _runcmd(self, line: str | list[Any]) -> None:
        argv = shlex.split(line) if isinstance(line, str) else [str(part) for part in line]
        self.log(f"cloud-init[1]: runcmd: {shlex.join(argv)}")
        match argv:
            case ["systemctl", "daemon-reload"]:
                return
            case ["systemctl", ("start" | "restart"), *units]:
                block = "--no-block" not in units
                for unit in (name for name in units if not name.startswith("-")):
                    self.start_unit(unit, block=block)
            case [("mkdir" | "chmod" | "chown"), *_]:
                result = subprocess.run(
                    [argv[0], *(self.host_path(arg) for arg in argv[1:])],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    raise BootFailure(f"{shlex.join(argv)} failed: {result.stderr.strip()}")
            case _:
                raise BootFailure(f"runcmd line {shlex.join(argv)!r} is not modelled")

    # -- systemd -----------------------------------------------------------------------
    def start_unit(self, name: str, *, block: bool) -> None:
        path = self.root / "etc" / "systemd" / "system" / name
        if not path.is_file():
            raise BootFailure(f"Failed to start {name}: Unit {name} not found.")
        unit = parse_unit(name, path.read_text())
        run = _UnitRun(unit)
        with self.lock:
            previous = self.units.get(name)
            if previous is not None and previous.state in {"activating", "active"}:
                return
            self.units[name] = run
        run.thread = threading.Thread(target=self._run_unit, args=(run,), daemon=True)
        run.thread.start()
        if block:
            while run.state == "activating" and not run.stop.is_set():
                time.sleep(0.05)

    def _run_unit(self, run: _UnitRun) -> None:
        unit = run.unit
        ordered_after = [
            name
            for value in unit.all("Unit", "After")
            for name in _words(value)
            if name in BOOT_TARGETS
        ]
        # Ordered after another unit started in the same boot: wait until its start job is
        # done (a simple unit: its ExecStartPre steps ran and ExecStart began), or it failed.
        after_units = [
            name
            for value in unit.all("Unit", "After")
            for name in _words(value)
            if name not in BOOT_TARGETS
        ]

        def others_started() -> bool:
            with self.lock:
                runs = [self.units.get(name) for name in after_units]
            return all(other is None or other.state != "activating" for other in runs)

        while not set(ordered_after) <= self.active or not others_started():
            if run.stop.wait(0.05):
                return
        prevent = {
            int(code)
            for value in unit.all("Service", "RestartPreventExitStatus")
            for code in _words(value)
        }
        restart_seconds = float(unit.get("Service", "RestartSec", "0.1").rstrip("s") or 0)
        while not run.stop.is_set():
            run.attempts += 1
            code = self._attempt(run)
            if run.stop.is_set():
                return
            if code == 0:
                run.state = "inactive"
                self.log(f"systemd[1]: {unit.name}: Deactivated successfully.")
                if unit.get("Unit", "SuccessAction") in {"poweroff", "poweroff-force"}:
                    self._request_power_off(f"{unit.name} finished")
                return
            run.state = "failed"
            self.log(f"systemd[1]: {unit.name}: Failed with result 'exit-code' ({code}).")
            policy = unit.get("Service", "Restart", "no")
            if policy not in {"on-failure", "always"} or code in prevent:
                return
            if run.stop.wait(restart_seconds):
                return
            run.state = "activating"
            self.log(f"systemd[1]: {unit.name}: Scheduled restart job.")

    def _attempt(self, run: _UnitRun) -> int:
        unit = run.unit
        env = self.host_env(
            dict(
                word.split("=", 1)
                for value in unit.all("Service", "Environment")
                for word in shlex.split(value)
            )
        )
        for line in unit.all("Service", "ExecStartPre"):
            ignore, argv = expand_exec(line, env)
            code = self._exec(run, argv, env)
            if code != 0 and not ignore:
                return code
        [line] = unit.all("Service", "ExecStart") or [""]
        _, argv = expand_exec(line, env)
        run.state = "active"
        return self._exec(run, argv, env)

    def _exec(self, run: _UnitRun, argv: list[str], env: dict[str, str]) -> int:
        """Run one command on the VM's host; its output goes to the serial port."""
        command = Path(argv[0]).name
        if command not in COS_COMMANDS + SHIM_COMMANDS or not (self.bin / command).exists():
            self.log(f"{run.unit.name}: Failed to locate executable {argv[0]}: No such file")
            return 203
        # Docker bind mounts are mapped by its shim: its arguments mix host and container paths.
        args = argv[1:] if command == "docker" else [self.host_path(arg) for arg in argv[1:]]
        with self.lock:
            if run.stop.is_set():
                return 143
            run.process = subprocess.Popen(
                [str(self.bin / command), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert run.process.stdout is not None
        for raw in run.process.stdout:
            self.log(f"{run.unit.name}[{run.process.pid}]: {raw.decode(errors='replace').rstrip()}")
        return run.process.wait()

    def serial_output(self) -> str:
        with self.lock:
            return "\n".join(self.serial) + "\n"


def _signal(process: subprocess.Popen[bytes] | None, signum: int) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _docker(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)


class _MetadataServer:
    """The VM's metadata server on its own loopback port, reached as an HTTP proxy."""

    HOSTS = frozenset({"metadata.google.internal", "169.254.169.254", "metadata"})

    def __init__(self, vm: CosVm) -> None:
        self.vm = vm
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, url: str, headers: Any, body: bytes) -> tuple[int, str]:
        parts = urlsplit(url)
        if parts.hostname and parts.hostname not in self.HOSTS:
            return 502, f"the VM's network does not reach {parts.hostname} in this model"
        if headers.get("Metadata-Flavor") != "Google":
            return 403, "Missing Metadata-Flavor:Google header."
        path = parts.path.removeprefix("/computeMetadata/v1/")
        identity = self.vm.identity
        guest = re.fullmatch(r"instance/guest-attributes/([\w-]+)/([\w-]+)", path)
        if guest:
            return self._guest_attribute(method, (guest[1], guest[2]), body)
        if method != "GET":
            return 405, "method not allowed"
        simple = {
            "instance/name": identity.name,
            "instance/id": identity.instance_id,
            "instance/zone": f"projects/{identity.project}/zones/{identity.zone}",
            "instance/hostname": f"{identity.name}.{identity.zone}.c.{identity.project}.internal",
            "instance/network-interfaces/0/ip": identity.network_ip,
            "project/project-id": identity.project,
        }
        if path in simple:
            return 200, simple[path]
        if path == "instance/network-interfaces/0/access-configs/0/external-ip":
            return (200, identity.external_ip) if identity.external_ip else (404, "not found")
        if path.startswith("instance/attributes/"):
            key = path.removeprefix("instance/attributes/")
            value = identity.metadata.get(key)
            return (200, value) if value is not None else (404, "not found")
        if path.startswith("instance/service-accounts/default/"):
            return self._service_account(path.rsplit("/", 1)[-1])
        return 404, "not found"

    def _service_account(self, what: str) -> tuple[int, str]:
        identity = self.vm.identity
        if identity.service_account is None:
            return 404, "not found"
        if what == "email":
            return 200, identity.service_account
        if what == "scopes":
            return 200, "\n".join(identity.scopes)
        if what == "token" and identity.scopes:
            token = {
                "access_token": identity.access_token,
                "expires_in": 3599,
                "token_type": "Bearer",
            }
            return 200, json.dumps(token)
        return 404, "not found"

    def _guest_attribute(self, method: str, key: tuple[str, str], body: bytes) -> tuple[int, str]:
        enabled = self.vm.identity.metadata.get("enable-guest-attributes", "").lower() == "true"
        if not enabled:
            return 403, "Guest attributes endpoint access is disabled."
        if method == "PUT":
            self.vm.guest_attributes[key] = body.decode()
            return 200, ""
        if method == "DELETE":
            self.vm.guest_attributes.pop(key, None)
            return 200, ""
        value = self.vm.guest_attributes.get(key)
        return (200, value) if value is not None else (404, "not found")

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, text = server.answer(self.command, self.path, self.headers, body)
                data = text.encode()
                self.send_response(code)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "application/text")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
