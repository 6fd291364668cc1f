"""LaunchSpec -> ``#cloud-config`` user-data for Container-Optimized OS.

For the default method the VM's cloud-init writes the server's TLS files, lets Docker pull
from Google's registries with the VM's service account, runs the one ``docker run`` from
``spec.docker_run_argv``, and starts a watcher that powers the VM off once the container
exits 0 (the entrypoint's idle timeout). For the legacy container-declaration method,
konlet runs the container; the user-data then writes the TLS files and starts the same
watcher, pointed at konlet's container name. Pure: text out, nothing touched.
"""

from __future__ import annotations

from typing import Any

import yaml

from daskbox.contract import CONTAINER_NAME, IMAGE_UID, TLS_DIR, TLS_KEY_FILE
from daskbox.gcloud.spec import LaunchSpec, docker_run_argv, tls_files
from daskbox.image_ref import ImageRef

# COS mounts / read-only, so Docker's client config (credential helpers) lives under /var.
DOCKER_HOME = "/var/lib/daskbox"
WATCHER_PATH = "/etc/daskbox/poweroff-when-idle.sh"
WATCHER_UNIT = "daskbox-poweroff-when-idle"

# `docker wait` returns the exit code of each stop; a crash (non-zero) is restarted by the
# restart policy and waited for again, a clean stop (idle timeout, exit 0) powers off.
# The container is looked up by a name pattern each round (konlet picks a random suffix,
# and may recreate it); a container still in "created" state is skipped, since
# `docker wait` would report 0 for it before it ever ran.
WATCHER_SCRIPT = """\
#!/bin/bash
# Power the VM off when the daskbox container stops cleanly (its idle timeout).
while true; do
  container=$(docker ps --all --quiet --filter 'name={pattern}' \\
    --filter status=running --filter status=restarting --filter status=exited | head -n 1)
  if [ -n "$container" ] && [ "$(docker wait "$container" 2>/dev/null)" = 0 ]; then
    systemctl poweroff
    exit 0
  fi
  sleep 10
done
"""


def container_name_pattern(spec: LaunchSpec) -> str:
    """How the watcher finds the container: ours is ``daskbox``; konlet names its
    container ``klt-<instance>-<random suffix>``."""
    if spec.method == "cloud-init":
        return f"^{CONTAINER_NAME}$"
    return f"^klt-{spec.instance}-"


def google_registry(registry: str) -> bool:
    """Artifact Registry (*-docker.pkg.dev) and Container Registry (gcr.io) need the helper."""
    return registry.endswith(".pkg.dev") or registry == "gcr.io" or registry.endswith(".gcr.io")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM, scripts) as ``|`` blocks, each argv on one ``[...]`` line."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list_presenter(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    argv = all(isinstance(item, str) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=argv)


_Dumper.add_representer(str, _str_presenter)
_Dumper.add_representer(list, _list_presenter)


def _with_docker_home(argv: list[str]) -> list[str]:
    return ["env", f"HOME={DOCKER_HOME}", *argv]


def _tls_write_files(spec: LaunchSpec) -> list[dict[str, str]]:
    # cloud-init's `owner` takes only names the host knows, and the image's user exists only
    # in the image, so the private key is written root-only and handed to its uid by
    # `_tls_runcmd`. The CA and the certificate are public.
    return [
        {
            "path": f"{TLS_DIR}/{name}",
            "permissions": "0600" if name == TLS_KEY_FILE else "0644",
            "owner": "root:root",
            "content": pem,
        }
        for name, pem in tls_files(spec)
    ]


def _tls_runcmd() -> list[list[str]]:
    """Give the server key to the image's non-root user (numeric: the host has no such user)."""
    return [["chown", f"{IMAGE_UID}:{IMAGE_UID}", f"{TLS_DIR}/{TLS_KEY_FILE}"]]


def _watcher(spec: LaunchSpec) -> tuple[dict[str, str], list[str]]:
    script = WATCHER_SCRIPT.format(pattern=container_name_pattern(spec))
    write = {"path": WATCHER_PATH, "permissions": "0755", "content": script}
    return write, ["systemd-run", "--unit", WATCHER_UNIT, "/bin/bash", WATCHER_PATH]


def cloud_config(spec: LaunchSpec) -> dict[str, Any]:
    """The cloud-config as data (what ``render_user_data`` serializes).

    Both methods write the TLS files and start the idle watcher; with the default method
    the VM also runs the container itself (with container-declaration, konlet does, and
    the restart policy covers the moment before the TLS files exist).
    """
    watcher_file, watcher_command = _watcher(spec)
    runcmd: list[list[str]] = _tls_runcmd()
    if spec.method == "cloud-init":
        runcmd.append(["mkdir", "-p", DOCKER_HOME])
        registry = ImageRef.parse(spec.image.reference).registry
        if google_registry(registry):
            runcmd.append(
                _with_docker_home(
                    ["docker-credential-gcr", "configure-docker", "--registries", registry]
                )
            )
        runcmd.append(_with_docker_home(docker_run_argv(spec)))
    runcmd.append(watcher_command)
    return {"write_files": [*_tls_write_files(spec), watcher_file], "runcmd": runcmd}


def render_user_data(spec: LaunchSpec) -> str:
    """``#cloud-config`` text for the instance's ``user-data`` metadata (either method)."""
    body = yaml.dump(cloud_config(spec), Dumper=_Dumper, sort_keys=False, width=1000)
    return f"#cloud-config\n{body}"
