"""A Compute Engine API emulator for the real gcloud CLI, on loopback only.

Point gcloud at it with ``CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`` (``base``) and
``CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true``. It is a generic model of Compute Engine and
Container-Optimized OS, as strict as the real API where a client could go wrong:

* **Every request is checked against Google's published discovery document**
  (discovery.py): the method must exist, path parameters match their patterns, query
  parameters are declared, and request bodies are validated recursively (field names and
  JSON types). Batch requests (``/batch/compute/v1``) are unpacked and checked part by part.
* **Zones, machine types and images come from a catalogue table** (gce_catalogue.py) with
  x86_64 and arm64 families and per-zone offers; an image whose architecture differs from
  the machine type's is refused as the API does.
* **Operations are asynchronous**: inserts, deletes, stops and starts answer RUNNING and
  finish a moment later; ``operations.wait`` blocks until then. A failure can be injected
  inside the operation (``fail_operation``), as quota and stock-out errors arrive, or as
  the HTTP answer (``fail``).
* **The external IP appears only after some ``instances.get`` calls** (``ip_after_gets``),
  or never (``external_ip = False``).
* **Firewall rules** validate their source ranges (IPv4 and IPv6 cannot share a rule).
* **Instances boot** as Container-Optimized OS VMs (cos_vm.py): cloud-init from
  ``user-data`` at every boot, systemd units, the metadata server with the service
  account's token and guest attributes, Docker with only the credentials the VM
  configured; ``stop``/``start``/``reset`` model reboots, and deleting stops everything.

Run standalone (``python tests/gcloud/emulator.py``) to poke at it by hand.
"""

from __future__ import annotations

import argparse
import email.parser
import http.server
import ipaddress
import itertools
import json
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cos_vm import CONTAINER_LABEL, CosVm, Identity
from discovery import Call, DiscoveryError, compute_v1
from gce_catalogue import COS_IMAGES, IMAGE_PROJECT, ZONES, PublicImage, machine_type

PREFIX = "/compute/v1/"
BATCH_PATH = "/batch/compute/v1"
LABEL_KEY = re.compile(r"[a-z][-_a-z0-9]{0,62}")
LABEL_VALUE = re.compile(r"[-_a-z0-9]{0,63}")
TAG = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
RESOURCE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,127}")
MAX_RUN_DURATION_SECONDS = (30, 120 * 24 * 3600)
SCOPE_ALIASES = {"default": "default"}


@dataclass
class Recorded:
    """One request gcloud sent (batch parts are recorded one by one)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Instance:
    """An instance resource and the VM that runs it (None until its insert finishes)."""

    resource: dict[str, Any]
    vm: CosVm | None = None
    gets: int = 0


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def _not_found(resource: str) -> ApiError:
    return ApiError(404, f"The resource '{resource}' was not found", "notFound")


def _already_exists(resource: str) -> ApiError:
    return ApiError(409, f"The resource '{resource}' already exists", "alreadyExists")


def _invalid(field: str, value: Any, why: str) -> ApiError:
    return ApiError(400, f"Invalid value for field '{field}': '{value}'. {why}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


class ComputeEmulator:
    """The API's state and behaviour; the HTTP handler only decodes and routes."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        boot: bool = True,
        operation_seconds: float = 0.1,
        ip_after_gets: int = 2,
    ) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gce-emulator-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.boot = boot
        self.operation_seconds = operation_seconds
        self.ip_after_gets = ip_after_gets
        self.external_ip = True
        # What the metadata server hands the VMs' service accounts (registries in the tests
        # accept it as Artifact Registry accepts a real one).
        self.access_token = f"ya29.emulated-{uuid.uuid4().hex}"
        self.requests: list[Recorded] = []
        self.failures: dict[str, tuple[int, str]] = {}
        self.operation_failures: dict[str, tuple[str, str]] = {}
        self.instances: dict[tuple[str, str, str], Instance] = {}
        self.firewalls: dict[tuple[str, str], dict[str, Any]] = {}
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._internal_ips = itertools.count(2)
        self.operations: dict[str, dict[str, Any]] = {}
        self._done: dict[str, threading.Event] = {}
        self.lock = threading.RLock()
        # Ids (and so the VMs' container names, vm<id>-...) unique per emulator: each one
        # numbers from its own random 8 hex digits, so emulators sharing a Docker engine
        # (parallel test runs) never clash; 19 digits at most, like Compute Engine's.
        self._ids = itertools.count(int(self.id, 16) * 1_000_000 + 1000)
        self._stop = threading.Event()
        self.discovery = compute_v1()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}{PREFIX}"
        self._handlers: dict[str, Callable[[dict[str, str], dict[str, list[str]], Any], Any]] = {
            "compute.projects.get": self._project,
            "compute.zones.get": lambda p, q, b: self._zone(p["project"], p["zone"]),
            "compute.zones.list": self._zones,
            "compute.machineTypes.get": self._machine_type,
            "compute.machineTypes.list": self._machine_types,
            "compute.images.getFromFamily": self._image_from_family,
            "compute.images.get": self._image,
            "compute.networks.get": self._network,
            "compute.instances.insert": self._insert_instance,
            "compute.instances.get": self._get_instance,
            "compute.instances.list": self._list_instances,
            "compute.instances.aggregatedList": self._aggregated_instances,
            "compute.instances.delete": self._delete_instance,
            "compute.instances.stop": lambda p, q, b: self._power(p, "stop"),
            "compute.instances.start": lambda p, q, b: self._power(p, "start"),
            "compute.instances.reset": lambda p, q, b: self._power(p, "reset"),
            "compute.instances.getGuestAttributes": self._guest_attributes,
            "compute.instances.getSerialPortOutput": self._serial_port,
            "compute.firewalls.insert": self._insert_firewall,
            "compute.firewalls.get": lambda p, q, b: self._firewall(p["project"], p["firewall"]),
            "compute.firewalls.list": self._list_firewalls,
            "compute.firewalls.delete": self._delete_firewall,
            "compute.firewalls.patch": self._patch_firewall,
            "compute.instanceTemplates.insert": self._insert_template,
            "compute.instanceTemplates.get": lambda p, q, b: self._template(
                p["project"], p["instanceTemplate"]
            ),
            "compute.instanceTemplates.list": self._list_templates,
            "compute.instanceTemplates.aggregatedList": self._aggregated_templates,
            "compute.instanceTemplates.delete": self._delete_template,
            "compute.instanceGroupManagers.insert": self._insert_group,
            "compute.instanceGroupManagers.get": lambda p, q, b: self._group(
                p["project"], p["zone"], p["instanceGroupManager"]
            ),
            "compute.instanceGroupManagers.list": self._list_groups,
            "compute.instanceGroupManagers.aggregatedList": self._aggregated_groups,
            "compute.instanceGroupManagers.resize": self._resize_group,
            "compute.instanceGroupManagers.listManagedInstances": self._managed_instances,
            "compute.instanceGroupManagers.delete": self._delete_group,
            # The plain instance-group view of each managed group (gcloud lists sizes so).
            "compute.instanceGroups.list": self._list_instance_groups,
            "compute.instanceGroups.aggregatedList": self._aggregated_instance_groups,
            # No autoscalers are modelled: gcloud asks before it deletes a group.
            "compute.autoscalers.list": lambda p, q, b: {
                "kind": "compute#autoscalerList",
                "items": [],
            },
            "compute.autoscalers.aggregatedList": lambda p, q, b: {
                "kind": "compute#autoscalerAggregatedList",
                "items": {},
            },
            "compute.zoneOperations.get": self._get_operation,
            "compute.zoneOperations.wait": self._wait_operation,
            "compute.globalOperations.get": self._get_operation,
            "compute.globalOperations.wait": self._wait_operation,
        }

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ComputeEmulator:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._watch_power, daemon=True).start()
        threading.Thread(target=self._reconcile_groups, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.groups.clear()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            instances = list(self.instances.values())
            self.instances.clear()
        for instance in instances:
            if instance.vm is not None:
                instance.vm.destroy()
        for container in self.containers():
            _docker_rm(container)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ComputeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------
    def fail(self, call: str, code: int, message: str) -> None:
        """Answer ``call`` (``instances.insert`` or ``compute.instances.insert``) with an
        HTTP error ``code`` and ``message``."""
        self.failures[_method_id(call)] = (code, message)

    def fail_operation(self, call: str, error_code: str, message: str) -> None:
        """Accept ``call`` but finish its operation with ``error_code`` (e.g.
        ``ZONE_RESOURCE_POOL_EXHAUSTED``) and ``message``: nothing is created."""
        self.operation_failures[_method_id(call)] = (error_code, message)

    def bodies(self, method: str, pattern: str) -> list[Any]:
        """Recorded bodies of requests whose path matches ``pattern`` (regex)."""
        return [r.body for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def containers(self) -> list[str]:
        """Names of the containers this emulator's VMs started that still exist."""
        found = _docker(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={CONTAINER_LABEL}"
        )
        ours = []
        for name in found.stdout.split():
            labels = _docker("inspect", "--format", "{{json .Config.Labels}}", name).stdout
            if json.loads(labels or "{}").get(CONTAINER_LABEL, "").startswith(f"{self.id}."):
                ours.append(name)
        return ours

    def vm(self, name: str) -> CosVm:
        """The running VM of the only instance called ``name``."""
        [found] = [i.vm for (_, _, n), i in self.instances.items() if n == name and i.vm]
        return found

    # -- routing -----------------------------------------------------------------------
    def handle(self, http_method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """Validate one request against the discovery document and answer it."""
        try:
            call: Call = self.discovery.route(http_method, path, query)
            self.discovery.validate(call.request_schema, body)
        except DiscoveryError as error:
            raise ApiError(error.code, error.message, error.reason) from None
        if call.method_id in self.failures:
            code, message = self.failures[call.method_id]
            raise ApiError(code, message, "injected")
        handler = self._handlers.get(call.method_id)
        if handler is None:
            raise ApiError(501, f"the emulator does not model {call.method_id}", "notImplemented")
        return handler(call.params, query, body)

    # -- catalogue ---------------------------------------------------------------------
    def _project(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project = params["project"]
        return {
            "kind": "compute#project",
            "name": project,
            "id": str(abs(hash(project)) % 10**12),
            "commonInstanceMetadata": {"kind": "compute#metadata", "items": []},
            "defaultServiceAccount": self._default_account(project),
            "selfLink": f"{self.base}projects/{project}",
        }

    def _default_account(self, project: str) -> str:
        return f"123456789012-compute@{project}.iam.gserviceaccount.com"

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

    def _zones(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        items = [self._zone(params["project"], zone) for zone in ZONES]
        return {"kind": "compute#zoneList", "items": items}

    def _machine_resource(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self._zone(project, zone)
        found = machine_type(zone, name)
        if found is None:
            raise _not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        return {
            "kind": "compute#machineType",
            "name": found.name,
            "guestCpus": found.vcpus,
            "memoryMb": found.memory_mb,
            "architecture": found.architecture,
            "zone": zone,
            "selfLink": f"{self.base}projects/{project}/zones/{zone}/machineTypes/{name}",
        }

    def _machine_type(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        return self._machine_resource(params["project"], params["zone"], params["machineType"])

    def _machine_types(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        from gce_catalogue import machine_types

        zone = params["zone"]
        self._zone(params["project"], zone)
        items = [
            self._machine_resource(params["project"], zone, m.name) for m in machine_types(zone)
        ]
        return {"kind": "compute#machineTypeList", "items": items}

    def _image_resource(self, image: PublicImage) -> dict[str, Any]:
        return {
            "kind": "compute#image",
            "name": image.name,
            "family": image.family,
            "architecture": image.architecture,
            "status": "READY",
            "creationTimestamp": "2026-11-01T00:00:00.000-00:00",
            "selfLink": f"{self.base}projects/{IMAGE_PROJECT}/global/images/{image.name}",
        }

    def _image_from_family(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        found = self._find_image(params["project"], family=params["family"])
        return self._image_resource(found)

    def _image(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        return self._image_resource(self._find_image(params["project"], name=params["image"]))

    def _find_image(
        self, project: str, *, family: str | None = None, name: str | None = None
    ) -> PublicImage:
        for image in COS_IMAGES if project == IMAGE_PROJECT else ():
            if (family and image.family == family) or (name and image.name == name):
                return image
        what = f"family/{family}" if family else str(name)
        raise _not_found(f"projects/{project}/global/images/{what}")

    def _source_image(self, url: str) -> PublicImage:
        match = re.search(
            r"projects/([^/]+)/(?:global/images/family/|zones/[^/]+/imageFamilyViews/)([^/]+)$",
            url,
        )
        if match:
            return self._find_image(match[1], family=match[2])
        match = re.search(r"projects/([^/]+)/global/images/([^/]+)$", url)
        if match:
            return self._find_image(match[1], name=match[2])
        raise _invalid("resource.disks[0].initializeParams.sourceImage", url, "Not an image.")

    def _network(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        if params["network"] != "default":
            raise _not_found(f"projects/{params['project']}/global/networks/{params['network']}")
        return {"kind": "compute#network", "name": "default", "autoCreateSubnetworks": True}

    # -- operations --------------------------------------------------------------------
    def _operation(
        self,
        project: str,
        zone: str | None,
        kind: str,
        target: str,
        method_id: str,
        work: Callable[[], None],
        undo: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """A RUNNING operation that performs ``work`` shortly after, or fails with the error
        injected for ``method_id`` (then ``undo`` removes what the request reserved)."""
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
        scope = f"projects/{project}/zones/{zone}" if zone else f"projects/{project}/global"
        operation: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": kind,
            "status": "RUNNING",
            "progress": 0,
            "targetLink": target,
            "selfLink": f"{self.base}{scope}/operations/{name}",
            "insertTime": _now(),
            "startTime": _now(),
        }
        if zone:
            operation["zone"] = f"{self.base}projects/{project}/zones/{zone}"
        done = threading.Event()
        with self.lock:
            self.operations[name] = operation
            self._done[name] = done
        failure = self.operation_failures.get(method_id)

        def finish() -> None:
            time.sleep(self.operation_seconds)
            if failure is not None:
                code, message = failure
                if undo is not None:
                    undo()
                operation["error"] = {"errors": [{"code": code, "message": message}]}
                operation["httpErrorStatusCode"] = 400
                operation["httpErrorMessage"] = "BAD REQUEST"
            else:
                work()
            operation.update(status="DONE", progress=100, endTime=_now())
            done.set()

        threading.Thread(target=finish, daemon=True).start()
        return dict(operation)

    def _get_operation(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        operation = self.operations.get(params["operation"])
        if operation is None:
            raise _not_found(f"projects/{params['project']}/operations/{params['operation']}")
        return dict(operation)

    def _wait_operation(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        """Like the API's wait: return once DONE, or after a while with the current state."""
        done = self._done.get(params["operation"])
        if done is not None:
            done.wait(timeout=30)
        return self._get_operation(params, query, body)

    # -- instances ---------------------------------------------------------------------
    def _instance(self, project: str, zone: str, name: str) -> Instance:
        self._zone(project, zone)  # as the API: an unknown zone is reported as such
        instance = self.instances.get((project, zone, name))
        if instance is None:
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return instance

    def _check_instance(self, project: str, zone: str, body: dict[str, Any]) -> PublicImage:
        """What the API refuses synchronously in ``instances.insert``."""
        name = body.get("name", "")
        if not RESOURCE_NAME.fullmatch(name):
            raise _invalid(
                "resource.name", name, f"Must be a match of regex '{RESOURCE_NAME.pattern}'"
            )
        wanted = _last(body.get("machineType", ""))
        machine = machine_type(zone, wanted)
        if machine is None:
            raise _invalid(
                "resource.machineType",
                body.get("machineType"),
                f"Machine type with name '{wanted}' does not exist in zone '{zone}'.",
            )
        disks = body.get("disks") or []
        boot = [disk for disk in disks if disk.get("boot")]
        if len(boot) != 1:
            raise ApiError(400, "Invalid value for field 'resource.disks': exactly one boot disk")
        image = self._source_image(boot[0].get("initializeParams", {}).get("sourceImage", ""))
        if image.architecture != machine.architecture:
            raise ApiError(
                400,
                f"Invalid resource usage: 'Requested boot disk architecture ({image.architecture})"
                f" is not compatible with machine type architecture ({machine.architecture}).'",
            )
        for interface in body.get("networkInterfaces") or []:
            network = _last(interface.get("network", "default"))
            if network != "default":
                raise _not_found(f"projects/{project}/global/networks/{network}")
        labels = body.get("labels") or {}
        if len(labels) > 64:
            raise ApiError(400, "Invalid value for field 'resource.labels': at most 64 labels")
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
                raise _invalid(
                    f"resource.labels.{key}",
                    value,
                    "Label keys and values must "
                    "be lowercase letters, digits, '-' or '_' (keys start with a "
                    "letter), at most 63 characters.",
                )
        for tag in (body.get("tags") or {}).get("items", []):
            if not TAG.fullmatch(tag):
                raise _invalid(
                    "resource.tags.items", tag, f"Must be a match of regex '{TAG.pattern}'"
                )
        items = (body.get("metadata") or {}).get("items", [])
        total = 0
        for item in items:
            if not METADATA_KEY.fullmatch(item.get("key", "")):
                raise _invalid("resource.metadata.items.key", item.get("key"), "Bad key.")
            size = len(item.get("value", "").encode())
            if size > 256 * 1024:
                raise _invalid("resource.metadata", item["key"], "Value exceeds 256 KiB.")
            total += size + len(item["key"])
        if total >= 512 * 1024:
            raise ApiError(400, "Invalid value for field 'resource.metadata': over 512 KB total")
        deadline = (body.get("scheduling") or {}).get("terminationTime")
        if deadline is not None and _timestamp(deadline) <= time.time():
            raise _invalid(
                "resource.scheduling.terminationTime",
                deadline,
                "Termination time must be in the future.",
            )
        duration = ((body.get("scheduling") or {}).get("maxRunDuration") or {}).get("seconds")
        if duration is not None:
            low, high = MAX_RUN_DURATION_SECONDS
            if not low <= int(duration) <= high:
                raise _invalid(
                    "resource.scheduling.maxRunDuration.seconds",
                    duration,
                    f"Must be between {low} and {high} seconds.",
                )
        return image

    def _insert_instance(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        return self._create_instance(params["project"], params["zone"], body)

    def _create_instance(self, project: str, zone: str, body: Any) -> dict[str, Any]:
        self._zone(project, zone)
        image = self._check_instance(project, zone, body)
        name = body["name"]
        key = (project, zone, name)
        link = f"{self.base}projects/{project}/zones/{zone}/instances/{name}"
        with self.lock:
            if key in self.instances:
                raise _already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
            resource = json.loads(json.dumps(body))
            resource.update(
                kind="compute#instance",
                id=str(next(self._ids)),
                status="PROVISIONING",
                zone=f"{self.base}projects/{project}/zones/{zone}",
                selfLink=link,
                creationTimestamp=_now(),
                cpuPlatform="Intel Broadwell" if image.architecture == "X86_64" else "ARM",
            )
            for index, interface in enumerate(resource.get("networkInterfaces", [])):
                # Each VM's internal address is one of this host's loopback addresses, so
                # VMs (containers on this host) reach each other by it, as in one VPC.
                number = next(self._internal_ips)
                interface["networkIP"] = f"127.1.{number // 250}.{number % 250 + 2}"
                interface["name"] = f"nic{index}"
            for account in resource.get("serviceAccounts", []):
                if account.get("email") == "default":
                    account["email"] = self._default_account(project)
            instance = Instance(resource)
            self.instances[key] = instance

        def created() -> None:
            resource.update(status="RUNNING", lastStartTimestamp=_now())
            if self.boot:
                self._start_vm(key, instance)

        def removed() -> None:
            with self.lock:
                self.instances.pop(key, None)

        return self._operation(
            project, zone, "insert", link, "compute.instances.insert", created, removed
        )

    def _identity(self, key: tuple[str, str, str], resource: dict[str, Any]) -> Identity:
        items = (resource.get("metadata") or {}).get("items", [])
        accounts = resource.get("serviceAccounts") or []
        return Identity(
            project=key[0],
            zone=key[1],
            name=key[2],
            instance_id=resource["id"],
            metadata={item["key"]: item.get("value", "") for item in items},
            scopes=tuple(accounts[0].get("scopes", [])) if accounts else (),
            service_account=accounts[0]["email"] if accounts else None,
            access_token=self.access_token,
            network_ip=resource["networkInterfaces"][0]["networkIP"]
            if resource.get("networkInterfaces")
            else "10.128.0.2",
        )

    def _start_vm(self, key: tuple[str, str, str], instance: Instance) -> None:
        if instance.vm is None:
            instance.vm = CosVm(
                self._identity(key, instance.resource),
                self.workdir / f"{key[2]}-{instance.resource['id']}",
                emulator_id=self.id,
                on_power_off=lambda: self._powered_off(key),
            )
            instance.vm.identity.external_ip = _nat_ip(instance.resource)
        threading.Thread(target=instance.vm.boot, daemon=True).start()

    def _powered_off(self, key: tuple[str, str, str]) -> None:
        instance = self.instances.get(key)
        if instance is None or instance.resource["status"] != "RUNNING":
            return
        instance.resource.update(status="STOPPING")
        if instance.vm is not None:
            instance.vm.halt(graceful=True)
        instance.resource.update(status="TERMINATED", lastStopTimestamp=_now())

    def _get_instance(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        instance = self._instance(params["project"], params["zone"], params["instance"])
        with self.lock:
            instance.gets += 1
            if self.external_ip and instance.gets >= self.ip_after_gets:
                for interface in instance.resource.get("networkInterfaces", []):
                    for access in interface.get("accessConfigs", []):
                        access["natIP"] = "127.0.0.1"
                if instance.vm is not None:
                    instance.vm.identity.external_ip = "127.0.0.1"
        return instance.resource

    def _list_instances(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, zone = params["project"], params["zone"]
        self._zone(project, zone)
        items = [i.resource for (p, z, _), i in self.instances.items() if (p, z) == (project, zone)]
        return {"kind": "compute#instanceList", "items": items}

    def _aggregated_instances(
        self, params: dict[str, str], query: Any, body: Any
    ) -> dict[str, Any]:
        grouped: dict[str, Any] = {}
        for (project, zone, _), instance in list(self.instances.items()):
            if project == params["project"]:
                scope = grouped.setdefault(f"zones/{zone}", {"instances": []})
                scope["instances"].append(instance.resource)
        return {"kind": "compute#instanceAggregatedList", "items": grouped}

    def _delete_instance(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, zone, name = params["project"], params["zone"], params["instance"]
        instance = self._instance(project, zone, name)
        instance.resource["status"] = "STOPPING"

        def deleted() -> None:
            with self.lock:
                self.instances.pop((project, zone, name), None)
            if instance.vm is not None:
                instance.vm.destroy()

        return self._operation(
            project,
            zone,
            "delete",
            instance.resource["selfLink"],
            "compute.instances.delete",
            deleted,
        )

    def _power(self, params: dict[str, str], action: str) -> dict[str, Any]:
        project, zone, name = params["project"], params["zone"], params["instance"]
        key = (project, zone, name)
        instance = self._instance(project, zone, name)

        def act() -> None:
            vm = instance.vm
            if action in {"stop", "reset"} and vm is not None:
                vm.halt(graceful=action == "stop")
            if action == "stop":
                instance.resource.update(status="TERMINATED", lastStopTimestamp=_now())
                return
            instance.resource.update(status="RUNNING", lastStartTimestamp=_now())
            if self.boot:
                self._start_vm(key, instance)

        return self._operation(
            project, zone, action, instance.resource["selfLink"], f"compute.instances.{action}", act
        )

    def _guest_attributes(
        self, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        instance = self._instance(params["project"], params["zone"], params["instance"])
        path = (query.get("queryPath") or [""])[0]
        namespace, _, key = path.partition("/")
        stored = instance.vm.guest_attributes if instance.vm is not None else {}
        items = [
            {"namespace": ns, "key": k, "value": value}
            for (ns, k), value in sorted(stored.items())
            if (not namespace or ns == namespace) and (not key or k == key)
        ]
        resource = (
            f"projects/{params['project']}/zones/{params['zone']}/instances/"
            f"{params['instance']}/guestAttributes/{path}"
        )
        if not items:
            raise _not_found(resource)
        return {
            "kind": "compute#guestAttributes",
            "queryPath": path,
            "queryValue": {"items": items},
            "selfLink": f"{self.base}{resource}",
        }

    def _serial_port(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        instance = self._instance(params["project"], params["zone"], params["instance"])
        text = instance.vm.serial_output() if instance.vm is not None else ""
        return {
            "kind": "compute#serialPortOutput",
            "contents": text,
            "start": "0",
            "next": str(len(text)),
        }

    # -- instance templates -------------------------------------------------------------
    def _template(self, project: str, name: str) -> dict[str, Any]:
        template = self.templates.get((project, name))
        if template is None:
            raise _not_found(f"projects/{project}/global/instanceTemplates/{name}")
        return template

    def _insert_template(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        """Checked as an instance would be (in the catalogue's first zone offering the machine
        type), since every VM of a group is made from it."""
        project, name = params["project"], body.get("name", "")
        if not RESOURCE_NAME.fullmatch(name):
            raise _invalid(
                "resource.name", name, f"Must be a match of regex '{RESOURCE_NAME.pattern}'"
            )
        properties = body.get("properties") or {}
        machine = properties.get("machineType", "")
        if "/" in machine:
            raise _invalid(
                "resource.properties.machineType",
                machine,
                "Must be a machine type name, not a URL, in a template.",
            )
        zone = next((z for z in ZONES if machine_type(z, machine) is not None), None)
        if zone is None:
            raise _invalid("resource.properties.machineType", machine, "Unknown machine type.")
        self._check_instance(
            project, zone, {**properties, "name": "template-check", "machineType": machine}
        )
        link = f"{self.base}projects/{project}/global/instanceTemplates/{name}"
        with self.lock:
            if (project, name) in self.templates:
                raise _already_exists(f"projects/{project}/global/instanceTemplates/{name}")
            self.templates[(project, name)] = {
                **json.loads(json.dumps(body)),
                "kind": "compute#instanceTemplate",
                "id": str(next(self._ids)),
                "selfLink": link,
                "creationTimestamp": _now(),
            }

        def removed() -> None:
            with self.lock:
                self.templates.pop((project, name), None)

        return self._operation(
            project, None, "insert", link, "compute.instanceTemplates.insert", lambda: None, removed
        )

    def _list_templates(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        items = [t for (p, _), t in self.templates.items() if p == params["project"]]
        return {"kind": "compute#instanceTemplateList", "items": _filtered(items, query)}

    def _aggregated_templates(
        self, params: dict[str, str], query: Any, body: Any
    ) -> dict[str, Any]:
        items = self._list_templates(params, query, body)["items"]
        return {
            "kind": "compute#instanceTemplateAggregatedList",
            "items": {"global": {"instanceTemplates": items}},
        }

    def _delete_template(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, name = params["project"], params["instanceTemplate"]
        template = self._template(project, name)
        users = [
            g["name"]
            for (p, _, _), g in self.groups.items()
            if p == project and _last(g["instanceTemplate"]) == name
        ]
        if users:
            raise ApiError(
                400,
                f"The instance_template resource '{template['selfLink']}' is already being used "
                f"by 'projects/{project}/zones/.../instanceGroupManagers/{users[0]}'",
                "resourceInUseByAnotherResource",
            )

        def deleted() -> None:
            with self.lock:
                self.templates.pop((project, name), None)

        return self._operation(
            project,
            None,
            "delete",
            template["selfLink"],
            "compute.instanceTemplates.delete",
            deleted,
        )

    # -- managed instance groups ----------------------------------------------------------
    def _group(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self._zone(project, zone)
        group = self.groups.get((project, zone, name))
        if group is None:
            raise _not_found(f"projects/{project}/zones/{zone}/instanceGroupManagers/{name}")
        return group

    def _insert_group(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, zone, name = params["project"], params["zone"], body.get("name", "")
        self._zone(project, zone)
        if not RESOURCE_NAME.fullmatch(name):
            raise _invalid(
                "resource.name", name, f"Must be a match of regex '{RESOURCE_NAME.pattern}'"
            )
        template_url = body.get("instanceTemplate", "")
        match = re.search(r"projects/([^/]+)/global/instanceTemplates/([^/]+)$", template_url)
        if not match:
            raise _invalid("resource.instanceTemplate", template_url, "Not a template URL.")
        self._template(match[1], match[2])
        base = body.get("baseInstanceName") or name[:58]
        if not re.fullmatch(r"[a-z][-a-z0-9]{0,57}", base):
            raise _invalid(
                "resource.baseInstanceName",
                base,
                "At most 58 characters, lowercase letters, digits and hyphens.",
            )
        size = int(body.get("targetSize", 0))
        if not 0 <= size <= 2000:
            raise _invalid("resource.targetSize", size, "Must be 0 to 2000.")
        link = f"{self.base}projects/{project}/zones/{zone}/instanceGroupManagers/{name}"
        with self.lock:
            if (project, zone, name) in self.groups:
                raise _already_exists(
                    f"projects/{project}/zones/{zone}/instanceGroupManagers/{name}"
                )
            group = {
                **json.loads(json.dumps(body)),
                "kind": "compute#instanceGroupManager",
                "id": str(next(self._ids)),
                "baseInstanceName": base,
                "targetSize": size,
                "zone": f"{self.base}projects/{project}/zones/{zone}",
                "selfLink": link,
                "instanceGroup": link.replace("/instanceGroupManagers/", "/instanceGroups/"),
                "creationTimestamp": _now(),
                "members": {},  # instance name -> what the group last did with it
                "active": False,  # the group acts once its insert operation is DONE
            }
            self.groups[(project, zone, name)] = group

        def created() -> None:
            group["active"] = True

        def removed() -> None:
            with self.lock:
                self.groups.pop((project, zone, name), None)

        method = "compute.instanceGroupManagers.insert"
        return self._operation(project, zone, "insert", link, method, created, removed)

    def _public_group(self, group: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in group.items() if k not in {"members", "active"}}

    def _list_groups(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        items = [
            self._public_group(g)
            for (p, z, _), g in self.groups.items()
            if (p, z) == (params["project"], params["zone"])
        ]
        return {"kind": "compute#instanceGroupManagerList", "items": _filtered(items, query)}

    def _aggregated_groups(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        grouped: dict[str, Any] = {}
        for (project, zone, _), group in list(self.groups.items()):
            if project == params["project"] and _filtered([group], query):
                scope = grouped.setdefault(f"zones/{zone}", {"instanceGroupManagers": []})
                scope["instanceGroupManagers"].append(self._public_group(group))
        return {"kind": "compute#instanceGroupManagerAggregatedList", "items": grouped}

    def _instance_group(self, project: str, zone: str, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "compute#instanceGroup",
            "name": group["name"],
            "zone": group["zone"],
            "size": sum(1 for m in group["members"] if (project, zone, m) in self.instances),
            "selfLink": group["instanceGroup"],
        }

    def _list_instance_groups(
        self, params: dict[str, str], query: Any, body: Any
    ) -> dict[str, Any]:
        project, zone = params["project"], params["zone"]
        items = [
            self._instance_group(p, z, g)
            for (p, z, _), g in self.groups.items()
            if (p, z) == (project, zone)
        ]
        return {"kind": "compute#instanceGroupList", "items": _filtered(items, query)}

    def _aggregated_instance_groups(
        self, params: dict[str, str], query: Any, body: Any
    ) -> dict[str, Any]:
        grouped: dict[str, Any] = {}
        for (project, zone, _), group in list(self.groups.items()):
            if project == params["project"]:
                scope = grouped.setdefault(f"zones/{zone}", {"instanceGroups": []})
                scope["instanceGroups"].append(self._instance_group(project, zone, group))
        return {"kind": "compute#instanceGroupAggregatedList", "items": grouped}

    def _resize_group(
        self, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        group = self._group(params["project"], params["zone"], params["instanceGroupManager"])
        size = int((query.get("size") or ["-1"])[0])
        if not 0 <= size <= 2000:
            raise _invalid("size", size, "Must be 0 to 2000.")

        def resized() -> None:
            group["targetSize"] = size

        return self._operation(
            params["project"],
            params["zone"],
            "resize",
            group["selfLink"],
            "compute.instanceGroupManagers.resize",
            resized,
        )

    def _managed_instances(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, zone = params["project"], params["zone"]
        group = self._group(project, zone, params["instanceGroupManager"])
        listed = []
        for name, action in sorted(group["members"].items()):
            instance = self.instances.get((project, zone, name))
            entry = {
                "instance": f"{self.base}projects/{project}/zones/{zone}/instances/{name}",
                "currentAction": action if instance is None else "NONE",
            }
            if instance is not None:
                entry |= {
                    "id": instance.resource["id"],
                    "instanceStatus": instance.resource["status"],
                }
            listed.append(entry)
        return {"managedInstances": listed}

    def _delete_group(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, zone, name = params["project"], params["zone"], params["instanceGroupManager"]
        group = self._group(project, zone, name)

        def deleted() -> None:
            with self.lock:
                self.groups.pop((project, zone, name), None)
                members = [self.instances.pop((project, zone, m), None) for m in group["members"]]
            for instance in members:
                if instance is not None and instance.vm is not None:
                    instance.vm.destroy()

        return self._operation(
            project,
            zone,
            "delete",
            group["selfLink"],
            "compute.instanceGroupManagers.delete",
            deleted,
        )

    def _reconcile_groups(self) -> None:
        """What a group does on its own: keep ``targetSize`` VMs, recreating (same name) one
        that was deleted, removing extra ones; a VM that stopped is left stopped with the
        ``DO_NOTHING`` failure action, recreated otherwise. VMs past their termination time
        are deleted (their template's absolute deadline covers recreated ones too)."""
        while not self._stop.wait(0.5):
            self._expire_instances()
            for key, group in list(self.groups.items()):
                if group.get("active"):
                    try:
                        self._reconcile(key, group)
                    except ApiError as error:  # e.g. a termination time now in the past
                        group["lastError"] = error.message

    def _reconcile(self, key: tuple[str, str, str], group: dict[str, Any]) -> None:
        project, zone, _ = key
        members: dict[str, str] = group["members"]
        policy = (group.get("instanceLifecyclePolicy") or {}).get("defaultActionOnFailure")
        for name in list(members):
            instance = self.instances.get((project, zone, name))
            if instance is None and members[name] == "DELETING":
                members.pop(name)
            elif instance is None or (
                instance.resource["status"] == "TERMINATED" and policy != "DO_NOTHING"
            ):
                if instance is not None:  # REPAIR: recreate the failed VM
                    with self.lock:
                        self.instances.pop((project, zone, name), None)
                    if instance.vm is not None:
                        instance.vm.destroy()
                members[name] = "RECREATING"
                self._create_member(key, group, name)
        while len(members) > group["targetSize"]:
            name = sorted(members)[-1]
            members[name] = "DELETING"
            with self.lock:
                instance = self.instances.pop((project, zone, name), None)
            if instance is not None and instance.vm is not None:
                instance.vm.destroy()
            members.pop(name)
        while len(members) < group["targetSize"]:
            name = f"{group['baseInstanceName']}-{uuid.uuid4().hex[:4]}"
            members[name] = "CREATING"
            self._create_member(key, group, name)

    def _create_member(self, key: tuple[str, str, str], group: dict[str, Any], name: str) -> None:
        project, zone, _ = key
        template = self._template(*_template_key(group["instanceTemplate"]))
        body = json.loads(json.dumps(template["properties"]))
        body["name"] = name
        body["machineType"] = f"zones/{zone}/machineTypes/{body['machineType']}"
        items = (body.setdefault("metadata", {})).setdefault("items", [])
        items.append({"key": "created-by", "value": _link_path(group["selfLink"])})
        self._create_instance(project, zone, body)

    def _expire_instances(self) -> None:
        for key, instance in list(self.instances.items()):
            deadline = (instance.resource.get("scheduling") or {}).get("terminationTime")
            if deadline and _timestamp(deadline) <= time.time():
                with self.lock:
                    self.instances.pop(key, None)
                if instance.vm is not None:
                    instance.vm.destroy()

    # -- firewalls ---------------------------------------------------------------------
    def _check_firewall(self, body: dict[str, Any]) -> None:
        name = body.get("name", "")
        if not RESOURCE_NAME.fullmatch(name):
            raise _invalid(
                "resource.name", name, f"Must be a match of regex '{RESOURCE_NAME.pattern}'"
            )
        if _last(body.get("network", "default")) != "default":
            raise _not_found(f"global/networks/{_last(body['network'])}")
        families = set()
        for index, item in enumerate(body.get("sourceRanges", [])):
            try:
                families.add(ipaddress.ip_network(item, strict=False).version)
            except ValueError:
                raise _invalid(
                    f"resource.sourceRanges[{index}]", item, "Invalid IPCidrRange."
                ) from None
        if len(families) > 1:
            raise ApiError(
                400,
                "Invalid value for field 'resource.sourceRanges': IPv4 and IPv6 source ranges "
                "cannot be mixed in one firewall rule.",
            )
        for tag in [*body.get("targetTags", []), *body.get("sourceTags", [])]:
            if not TAG.fullmatch(tag):
                raise _invalid(
                    "resource.targetTags", tag, f"Must be a match of regex '{TAG.pattern}'"
                )
        for allowed in body.get("allowed", []):
            for ports in allowed.get("ports", []):
                if not re.fullmatch(r"[0-9]{1,5}(-[0-9]{1,5})?", ports) or any(
                    not 0 <= int(port) <= 65535 for port in ports.split("-")
                ):
                    raise _invalid("resource.allowed.ports", ports, "Invalid port range.")

    def _insert_firewall(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project = params["project"]
        self._check_firewall(body)
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

        def removed() -> None:
            with self.lock:
                self.firewalls.pop(key, None)

        return self._operation(
            project, None, "insert", link, "compute.firewalls.insert", lambda: None, removed
        )

    def _firewall(self, project: str, name: str) -> dict[str, Any]:
        rule = self.firewalls.get((project, name))
        if rule is None:
            raise _not_found(f"projects/{project}/global/firewalls/{name}")
        return rule

    def _list_firewalls(
        self, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        rules = [r for (p, _), r in self.firewalls.items() if p == params["project"]]
        match = re.fullmatch(r'(\w+) (eq|ne) "?(.*?)"?', (query.get("filter") or [""])[0])
        if match:  # the API's server-side filter: FIELD eq|ne REGEX (a full match)
            field, operator, pattern = match.groups()
            rules = [
                rule
                for rule in rules
                if bool(re.fullmatch(pattern, str(rule.get(field, "")))) == (operator == "eq")
            ]
        return {"kind": "compute#firewallList", "items": rules}

    def _delete_firewall(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, name = params["project"], params["firewall"]
        rule = self._firewall(project, name)

        def deleted() -> None:
            with self.lock:
                self.firewalls.pop((project, name), None)

        return self._operation(
            project, None, "delete", rule["selfLink"], "compute.firewalls.delete", deleted
        )

    def _patch_firewall(self, params: dict[str, str], query: Any, body: Any) -> dict[str, Any]:
        project, name = params["project"], params["firewall"]
        rule = self._firewall(project, name)
        self._check_firewall({**rule, **body, "name": name})

        def patched() -> None:
            rule.update({k: v for k, v in body.items() if k != "name"})

        return self._operation(
            project, None, "patch", rule["selfLink"], "compute.firewalls.patch", patched
        )

    # -- power watch -------------------------------------------------------------------
    def _watch_power(self) -> None:
        """``systemctl poweroff`` run by a process on a VM turns the instance off."""
        while not self._stop.wait(0.2):
            for instance in list(self.instances.values()):
                if instance.vm is not None and instance.resource["status"] == "RUNNING":
                    instance.vm.poll_power()


def _timestamp(text: str) -> float:
    """An RFC 3339 time (``2026-11-27T20:00:00Z``) as seconds since the epoch."""
    import datetime

    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _template_key(url: str) -> tuple[str, str]:
    match = re.search(r"projects/([^/]+)/global/instanceTemplates/([^/]+)$", url)
    assert match is not None
    return match[1], match[2]


def _link_path(url: str) -> str:
    return url.split(PREFIX, 1)[-1]


def _filtered(items: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
    """The API's server-side filter as gcloud sends it: ``FIELD eq|ne REGEX``."""
    match = re.fullmatch(r'(\w+) (eq|ne) "?(.*?)"?', ((query or {}).get("filter") or [""])[0])
    if not match:
        return items
    field, operator, pattern = match.groups()
    wanted = operator == "eq"
    return [i for i in items if bool(re.fullmatch(pattern, str(i.get(field, "")))) == wanted]


def _nat_ip(resource: dict[str, Any]) -> str | None:
    for interface in resource.get("networkInterfaces", []):
        for access in interface.get("accessConfigs", []):
            if access.get("natIP"):
                return str(access["natIP"])
    return None


def _method_id(call: str) -> str:
    return call if call.startswith("compute.") else f"compute.{call}"


def _docker(*argv: str) -> Any:
    import subprocess

    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)


def _docker_rm(container: str) -> None:
    _docker("rm", "--force", container)


def _error_payload(error: ApiError) -> dict[str, Any]:
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "errors": [{"domain": "global", "reason": error.reason, "message": error.message}],
        }
    }


def _answer(emulator: ComputeEmulator, method: str, target: str, raw: bytes) -> tuple[int, Any]:
    """One API request (plain or a batch part) -> (status, JSON payload)."""
    url = urlsplit(target)
    path = url.path.removeprefix(PREFIX)
    query = parse_qs(url.query)
    try:
        body = json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError:
        return 400, _error_payload(ApiError(400, "Invalid JSON payload received."))
    with emulator.lock:
        emulator.requests.append(Recorded(method, path, query, body))
    try:
        return 200, emulator.handle(method, path, query, body)
    except ApiError as error:
        return error.code, _error_payload(error)


def _batch(emulator: ComputeEmulator, content_type: str, raw: bytes) -> tuple[bytes, str]:
    """``multipart/mixed`` of ``application/http`` requests -> the same of responses."""
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    boundary = f"batch_{uuid.uuid4().hex}"
    parts = []
    for part in message.get_payload():
        request = part.get_payload(decode=False)
        head, _, body = request.replace("\r\n", "\n").partition("\n\n")
        method, target, _ = head.splitlines()[0].split(" ", 2)
        code, payload = _answer(emulator, method, target, body.encode())
        content_id = part["Content-ID"].strip("<>")
        parts.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            f"Content-ID: <response-{content_id}>\r\n\r\n"
            f"HTTP/1.1 {code} {http.HTTPStatus(code).phrase}\r\n"
            f"Content-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(payload)}\r\n"
        )
    text = "".join(parts) + f"--{boundary}--\r\n"
    return text.encode(), f"multipart/mixed; boundary={boundary}"


def _handler_for(emulator: ComputeEmulator) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            token = self.headers.get("Authorization")
            if token is not None and token != f"Bearer {emulator.access_token}":
                # gcloud here sends none (credentials disabled); a VM sends its account's.
                code, payload = (
                    401,
                    _error_payload(ApiError(401, "Invalid Credentials", "authError")),
                )
                data, content_type = json.dumps(payload).encode(), "application/json"
            elif urlsplit(self.path).path == BATCH_PATH:
                data, content_type = _batch(emulator, self.headers["Content-Type"], raw)
                code = 200
            else:
                code, payload = _answer(emulator, self.command, self.path, raw)
                data, content_type = json.dumps(payload).encode(), "application/json"
            self.send_response(code)
            self.send_header(
                "Content-Type",
                f"{content_type}; charset=UTF-8"
                if "multipart" not in content_type
                else content_type,
            )
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
