"""A small Compute Engine API emulator for the real gcloud CLI, on loopback only.

It answers the calls ``gcloud compute`` makes for daskbox (zones, instances
insert/get/list/delete, serial port output, zone and global operations, firewalls) and
records every request body. On ``instances.insert`` it boots the "VM" from what a real
Container-Optimized OS VM would execute, not from a side channel:

* cloud-init ``user-data``: ``write_files`` land under a per-instance temporary root
  (with their modes), then the ``runcmd`` lines run: ``chown``/``mkdir`` on the remapped
  paths, ``docker run`` for real on the local engine (absolute host paths remapped into
  the root, the container renamed to something unique) and ``systemd-run`` units as
  background processes, with ``docker``/``systemctl`` shims so the idle watcher's
  ``systemctl poweroff`` marks the instance TERMINATED;
* ``gce-container-declaration``: the container spec (image, env, args, host-path mounts,
  restart policy) becomes the equivalent ``docker run``, as konlet does, under a name
  like konlet's ``klt-<instance>-<random>``.

The external IP is 127.0.0.1 (containers use host networking). Failures are injectable:
``emulator.fail("firewalls.insert", 403, "...")``, ``boot=False`` for a VM whose
container never starts, ``external_ip=False`` for a VM that never gets an address.

Run standalone (``python tests/gcloud/emulator.py --port 8080``) to poke at it by hand.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

PREFIX = "/compute/v1/"
ZONES = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-c",
    "us-central1-f",
    "us-east1-b",
    "europe-west1-b",
    "europe-west1-c",
    "europe-west4-a",
)
MACHINE_TYPE = re.compile(
    r"(e2-(micro|small|medium))|((e2|n1|n2|n2d|c2|c3|t2d)-(standard|highcpu|highmem)-(1|2|4|8|16|32|64|96))"
)
EMULATOR_LABEL = "dev.daskbox.gcloud-emulator"


@dataclass
class Recorded:
    """One request gcloud sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Vm:
    """An emulated instance: its resource, its temporary root and what it started."""

    resource: dict[str, Any]
    root: Path
    container: str | None = None
    executed: list[list[str]] = field(default_factory=list)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def _not_found(resource: str) -> ApiError:
    return ApiError(404, f"The resource '{resource}' was not found", "notFound")


def _already_exists(resource: str) -> ApiError:
    return ApiError(409, f"The resource '{resource}' already exists", "alreadyExists")


def _docker(*argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=check)


class ComputeEmulator:
    """The emulator's state and behaviour; ``Handler`` only routes HTTP to it."""

    def __init__(self, workdir: Path | None = None, boot: bool = True) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="daskbox-gce-emulator-"))
        self.boot = boot
        self.external_ip = True
        self.requests: list[Recorded] = []
        self.failures: dict[str, tuple[int, str]] = {}
        self.instances: dict[tuple[str, str, str], Vm] = {}
        self.firewalls: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._stop = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}{PREFIX}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ComputeEmulator:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._watch_power, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for vm in self.instances.values():
                self._power_off(vm)
        leftovers = _docker("ps", "-aq", "--filter", f"label={EMULATOR_LABEL}={self.id}")
        for container in leftovers.stdout.split():
            _docker("rm", "--force", container)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ComputeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(self, call: str, code: int, message: str) -> None:
        """Make ``call`` (e.g. "firewalls.insert") answer ``code`` with ``message``."""
        self.failures[call] = (code, message)

    def bodies(self, method: str, pattern: str) -> list[Any]:
        """Recorded bodies of requests whose path matches ``pattern`` (regex)."""
        return [r.body for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def containers(self) -> list[str]:
        """Names of the containers this emulator started that still exist."""
        found = _docker(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={EMULATOR_LABEL}={self.id}"
        )
        return found.stdout.split()

    # -- resources ---------------------------------------------------------------------
    def _operation(self, project: str, kind: str, target: str, zone: str | None) -> dict[str, Any]:
        name = f"operation-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        scope = f"projects/{project}/zones/{zone}" if zone else f"projects/{project}/global"
        operation = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": kind,
            "status": "DONE",
            "progress": 100,
            "targetLink": target,
            "selfLink": f"{self.base}{scope}/operations/{name}",
            "insertTime": _now(),
            "startTime": _now(),
            "endTime": _now(),
        }
        if zone:
            operation["zone"] = f"{self.base}projects/{project}/zones/{zone}"
        self.operations[name] = operation
        return operation

    def _check_failure(self, call: str) -> None:
        if call in self.failures:
            code, message = self.failures[call]
            raise ApiError(code, message, "injected")

    def _cos_image(self, family: str) -> dict[str, Any]:
        name = f"{family}-125-19216-0-1"
        return {
            "kind": "compute#image",
            "name": name,
            "family": family,
            "status": "READY",
            "creationTimestamp": "2026-11-01T00:00:00.000-00:00",
            "selfLink": f"{self.base}projects/cos-cloud/global/images/{name}",
        }

    def _zone(self, project: str, zone: str) -> dict[str, Any]:
        if zone not in ZONES:
            raise _not_found(f"projects/{project}/zones/{zone}")
        return {
            "kind": "compute#zone",
            "name": zone,
            "status": "UP",
            "region": f"{self.base}projects/{project}/regions/{zone.rsplit('-', 1)[0]}",
            "selfLink": f"{self.base}projects/{project}/zones/{zone}",
        }

    def insert_instance(self, project: str, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_failure("instances.insert")
        self._zone(project, zone)
        name = body["name"]
        machine_type = body["machineType"].rsplit("/", 1)[-1]
        if not MACHINE_TYPE.fullmatch(machine_type):
            raise ApiError(
                400,
                f"Invalid value for field 'resource.machineType': '{body['machineType']}'. "
                f"Machine type with name '{machine_type}' does not exist in zone '{zone}'.",
            )
        key = (project, zone, name)
        link = f"{self.base}projects/{project}/zones/{zone}/instances/{name}"
        with self.lock:
            if key in self.instances:
                raise _already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
            resource = json.loads(json.dumps(body))
            resource.update(
                kind="compute#instance",
                id=str(next(self._ids)),
                status="RUNNING",
                zone=f"{self.base}projects/{project}/zones/{zone}",
                selfLink=link,
                creationTimestamp=_now(),
                lastStartTimestamp=_now(),
            )
            for index, interface in enumerate(resource.get("networkInterfaces", [])):
                interface["networkIP"] = f"10.128.0.{index + 2}"
                for access in interface.get("accessConfigs", []):
                    if self.external_ip:
                        access["natIP"] = "127.0.0.1"
            vm = Vm(resource, self.workdir / f"{name}-{uuid.uuid4().hex[:6]}")
            vm.root.mkdir(parents=True)
            self.instances[key] = vm
        if self.boot:
            self._boot(vm)
        return self._operation(project, "insert", link, zone)

    def _instance(self, project: str, zone: str, name: str) -> Vm:
        self._zone(project, zone)  # as the API: an unknown zone is reported as such
        vm = self.instances.get((project, zone, name))
        if vm is None:
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return vm

    def delete_instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self._check_failure("instances.delete")
        with self.lock:
            vm = self._instance(project, zone, name)
            del self.instances[(project, zone, name)]
        self._power_off(vm)
        shutil.rmtree(vm.root, ignore_errors=True)
        return self._operation(project, "delete", vm.resource["selfLink"], zone)

    def insert_firewall(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_failure("firewalls.insert")
        key = (project, body["name"])
        link = f"{self.base}projects/{project}/global/firewalls/{body['name']}"
        with self.lock:
            if key in self.firewalls:
                raise _already_exists(f"projects/{project}/global/firewalls/{body['name']}")
            self.firewalls[key] = {
                **body,
                "kind": "compute#firewall",
                "id": str(next(self._ids)),
                "selfLink": link,
                "creationTimestamp": _now(),
            }
        return self._operation(project, "insert", link, None)

    def _firewall(self, project: str, name: str) -> dict[str, Any]:
        rule = self.firewalls.get((project, name))
        if rule is None:
            raise _not_found(f"projects/{project}/global/firewalls/{name}")
        return rule

    def patch_firewall(self, project: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_failure("firewalls.patch")
        with self.lock:
            rule = self._firewall(project, name)
            rule.update({k: v for k, v in body.items() if k != "name"})
        return self._operation(project, "patch", rule["selfLink"], None)

    def delete_firewall(self, project: str, name: str) -> dict[str, Any]:
        self._check_failure("firewalls.delete")
        with self.lock:
            rule = self._firewall(project, name)
            del self.firewalls[(project, name)]
        return self._operation(project, "delete", rule["selfLink"], None)

    # -- booting -----------------------------------------------------------------------
    def _boot(self, vm: Vm) -> None:
        items = _metadata(vm)
        user_data = items.get("user-data")
        if user_data is not None:
            self._run_cloud_init(vm, user_data)
        declaration = items.get("gce-container-declaration")
        if declaration is not None:
            self._run_container_declaration(vm, declaration)

    def _container_name(self, vm: Vm) -> str:
        if _metadata(vm).get("gce-container-declaration") is not None:
            # konlet's naming; instance names are unique per test, the suffix per boot.
            return f"klt-{vm.resource['name']}-{vm.root.name[-6:]}"
        return f"daskbox-gce-emu-{self.id}-{vm.resource['name']}"[:120]

    def _remap(self, vm: Vm, path: str) -> str:
        return str(vm.root / path.lstrip("/")) if path.startswith("/") else path

    def _run_cloud_init(self, vm: Vm, user_data: str) -> None:
        if not user_data.startswith("#cloud-config"):
            return
        config = yaml.safe_load(user_data) or {}
        for item in config.get("write_files", []):
            target = Path(self._remap(vm, item["path"]))
            target.parent.mkdir(parents=True, exist_ok=True)
            content = item.get("content", "")
            data = (
                base64.b64decode(content)
                if item.get("encoding") in {"b64", "base64"}
                else content.encode()
            )
            target.write_bytes(data)
            target.chmod(int(str(item.get("permissions", "0644")), 8))
        for line in config.get("runcmd", []):
            argv = shlex.split(line) if isinstance(line, str) else [str(part) for part in line]
            vm.executed.append(argv)
            while argv and (argv[0] == "env" or re.fullmatch(r"[A-Z_]+=.*", argv[0])):
                argv = argv[1:]
            if argv[:2] == ["docker", "run"]:
                self._docker_run(vm, argv[2:])
            elif argv[:1] == ["systemd-run"]:
                self._systemd_run(vm, argv[1:])
            elif argv[:1] in (["chown"], ["mkdir"]):
                result = subprocess.run(
                    [argv[0], *(self._remap(vm, arg) for arg in argv[1:])],
                    capture_output=True,
                    text=True,
                )
                if result.returncode != 0:
                    vm.executed.append([f"{argv[0]}-failed:", *result.stderr.split()])

    def _docker_run(self, vm: Vm, args: list[str]) -> None:
        remapped: list[str] = []
        iterator = iter(args)
        for arg in iterator:
            if arg in {"--name", "--volume", "-v", "--env-file"}:
                value = next(iterator)
                if arg == "--name":
                    value = self._container_name(vm)
                elif arg in {"--volume", "-v"}:
                    source, _, rest = value.partition(":")
                    value = f"{self._remap(vm, source)}:{rest}"
                else:
                    value = self._remap(vm, value)
                remapped += [arg, value]
            else:
                remapped.append(arg)
        vm.container = self._container_name(vm)
        started = _docker("run", "--label", f"{EMULATOR_LABEL}={self.id}", *remapped)
        if started.returncode != 0:  # as on a VM: the instance runs, its serial port says why
            vm.executed.append(["docker-run-failed:", *started.stderr.split()])

    def _systemd_run(self, vm: Vm, args: list[str]) -> None:
        """Run a transient unit's command in the background, with shims for docker/systemctl."""
        iterator = iter(args)
        command: list[str] = []
        for arg in iterator:
            if command:
                command.append(self._remap(vm, arg) if Path(self._remap(vm, arg)).exists() else arg)
            elif arg in {"--unit", "-u", "--property", "-p"}:
                next(iterator)
            elif not arg.startswith("-"):
                command.append(arg)
        shims = vm.root / "emulator-shims"
        shims.mkdir(exist_ok=True)
        (shims / "systemctl").write_text(
            f'#!/bin/sh\n[ "$1" = poweroff ] && touch {vm.root}/powered-off\n'
        )
        # The VM's container is called "daskbox"; here it has a unique name.
        name = self._container_name(vm)
        (shims / "docker").write_text(
            "#!/bin/sh\n"
            'for a in "$@"; do shift; case "$a" in\n'
            f"  daskbox) a={name};;\n"
            f"  'name=^daskbox$') a='name=^{name}$';;\n"
            'esac; set -- "$@" "$a"; done\n'
            f'exec {shutil.which("docker")} "$@"\n'
        )
        for shim in shims.iterdir():
            shim.chmod(0o755)
        env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
        vm.background.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    def _run_container_declaration(self, vm: Vm, declaration: str) -> None:
        spec = yaml.safe_load(declaration)["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in spec.get("volumes", [])}
        policy = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}[
            spec.get("restartPolicy", "Always")
        ]
        args = ["--detach", "--name", "daskbox", "--network", "host", "--restart", policy]
        for mount in container.get("volumeMounts", []):
            mode = "ro" if mount.get("readOnly") else "rw"
            args += ["--volume", f"{volumes[mount['name']]}:{mount['mountPath']}:{mode}"]
        for variable in container.get("env", []):
            args += ["--env", f"{variable['name']}={variable['value']}"]
        if container.get("command"):
            args += ["--entrypoint", container["command"][0]]
        args += [container["image"], *container.get("command", [])[1:], *container.get("args", [])]
        vm.executed.append(["konlet", *args])
        self._docker_run(vm, args)

    def _power_off(self, vm: Vm) -> None:
        for process in vm.background:
            process.kill()
            process.wait()
        vm.background.clear()
        if vm.container:
            _docker("rm", "--force", vm.container)
            vm.container = None

    def _watch_power(self) -> None:
        """``systemctl poweroff`` inside the VM (our shim) turns the instance off."""
        while not self._stop.wait(0.5):
            with self.lock:
                for vm in self.instances.values():
                    if vm.resource["status"] == "RUNNING" and (vm.root / "powered-off").exists():
                        vm.resource["status"] = "TERMINATED"
                        self._power_off(vm)

    def serial_output(self, vm: Vm) -> str:
        lines = [f"[cloud-init] runcmd: {shlex.join(argv)}" for argv in vm.executed]
        if vm.container:
            logs = _docker("logs", vm.container)
            lines += (logs.stdout + logs.stderr).splitlines()
        return "\n".join(lines) + "\n"

    # -- routing -----------------------------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        match parts:
            case ["projects", project] if method == "GET":
                return 200, {
                    "kind": "compute#project",
                    "name": project,
                    "commonInstanceMetadata": {"items": []},
                    "defaultServiceAccount": f"123456789-compute@{project}.iam.gserviceaccount.com",
                }
            case ["projects", "cos-cloud", "global", "images"] if method == "GET":
                # create-with-container lists COS images and picks the newest cos-stable one.
                return 200, {"kind": "compute#imageList", "items": [self._cos_image("cos-stable")]}
            case ["projects", "cos-cloud", "global", "images", "family", family] if method == "GET":
                return 200, self._cos_image(family)
            case ["projects", project, "zones", zone] if method == "GET":
                return 200, self._zone(project, zone)
            case ["projects", project, "zones", zone, "instances"] if method == "POST":
                return 200, self.insert_instance(project, zone, body)
            case ["projects", project, "zones", zone, "instances"] if method == "GET":
                self._zone(project, zone)
                items = [
                    vm.resource
                    for (p, z, _), vm in self.instances.items()
                    if (p, z) == (project, zone)
                ]
                return 200, {"kind": "compute#instanceList", "items": items}
            case ["projects", project, "aggregated", "instances"] if method == "GET":
                grouped: dict[str, Any] = {}
                for (p, z, _), vm in self.instances.items():
                    if p == project:
                        grouped.setdefault(f"zones/{z}", {"instances": []})["instances"].append(
                            vm.resource
                        )
                return 200, {"kind": "compute#instanceAggregatedList", "items": grouped}
            case ["projects", project, "zones", zone, "instances", name] if method == "GET":
                return 200, self._instance(project, zone, name).resource
            case ["projects", project, "zones", zone, "instances", name] if method == "DELETE":
                return 200, self.delete_instance(project, zone, name)
            case ["projects", project, "zones", zone, "instances", name, "serialPort"] if (
                method == "GET"
            ):
                vm = self._instance(project, zone, name)
                return 200, {
                    "kind": "compute#serialPortOutput",
                    "contents": self.serial_output(vm),
                    "start": "0",
                    "next": "1",
                }
            case ["projects", _, *rest] if "operations" in rest:  # get or wait, zonal or global
                name = rest[rest.index("operations") + 1]
                if name not in self.operations:
                    raise ApiError(404, f"operation {name} was not found", "notFound")
                return 200, self.operations[name]
            case ["projects", project, "global", "firewalls"] if method == "POST":
                return 200, self.insert_firewall(project, body)
            case ["projects", project, "global", "firewalls"] if method == "GET":
                return 200, {
                    "kind": "compute#firewallList",
                    "items": [r for (p, _), r in self.firewalls.items() if p == project],
                }
            case ["projects", project, "global", "firewalls", name] if method == "GET":
                return 200, self._firewall(project, name)
            case ["projects", project, "global", "firewalls", name] if method in {"PATCH", "PUT"}:
                return 200, self.patch_firewall(project, name, body)
            case ["projects", project, "global", "firewalls", name] if method == "DELETE":
                return 200, self.delete_firewall(project, name)
        raise ApiError(404, f"the emulator does not know {method} {PREFIX}{path}", "notFound")


def _metadata(vm: Vm) -> dict[str, str]:
    return {item["key"]: item["value"] for item in vm.resource.get("metadata", {}).get("items", [])}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


def _handler_for(emulator: ComputeEmulator) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = url.path.removeprefix(PREFIX)
            with emulator.lock:
                emulator.requests.append(Recorded(self.command, path, parse_qs(url.query), body))
            try:
                code, payload = emulator.handle(self.command, path, body)
            except ApiError as error:
                code = error.code
                payload = {
                    "error": {
                        "code": error.code,
                        "message": error.message,
                        "errors": [
                            {"domain": "global", "reason": error.reason, "message": error.message}
                        ],
                    }
                }
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fail", action="append", default=[], help="CALL=CODE, e.g. firewalls.insert=403"
    )
    args = parser.parse_args()
    emulator = ComputeEmulator().start()
    for item in args.fail:
        call, code = item.split("=")
        emulator.fail(call, int(code), f"injected failure of {call}")
    print(f"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE={emulator.base}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
