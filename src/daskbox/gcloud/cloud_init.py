"""LaunchSpec -> ``#cloud-config`` user-data for Container-Optimized OS (the default method).

The VM's cloud-init writes the server's TLS files, lets Docker pull from Google's
registries with the VM's service account, runs the one ``docker run`` from
``spec.docker_run_argv``, and starts a watcher that powers the VM off once the container
exits 0 (the entrypoint's idle timeout). Pure: text out, nothing touched.
"""

from __future__ import annotations

from typing import Any

import yaml

from daskbox.gcloud.spec import CONTAINER_NAME, TLS_DIR, LaunchSpec, docker_run_argv, tls_files

# COS mounts / read-only, so Docker's client config (credential helpers) lives under /var.
DOCKER_HOME = "/var/lib/daskbox"
WATCHER_PATH = "/etc/daskbox/poweroff-when-idle.sh"
WATCHER_UNIT = "daskbox-poweroff-when-idle"

# `docker wait` returns the exit code of each stop; a crash (non-zero) is restarted by the
# restart policy and waited for again, a clean stop (idle timeout, exit 0) powers off.
WATCHER_SCRIPT = f"""\
#!/bin/bash
# Power the VM off when the daskbox container stops cleanly (its idle timeout).
until [ "$(docker wait {CONTAINER_NAME} 2>/dev/null)" = 0 ]; do sleep 10; done
systemctl poweroff
"""


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


def cloud_config(spec: LaunchSpec) -> dict[str, Any]:
    """The cloud-config as data (what ``render_user_data`` serializes)."""
    write_files: list[dict[str, str]] = [
        # The container runs as a non-root user whose uid the host does not know, so the
        # files are world-readable on this single-purpose VM (only root can log in).
        {"path": f"{TLS_DIR}/{name}", "permissions": "0644", "owner": "root:root", "content": pem}
        for name, pem in tls_files(spec)
    ]
    write_files.append({"path": WATCHER_PATH, "permissions": "0755", "content": WATCHER_SCRIPT})
    runcmd: list[list[str]] = [["mkdir", "-p", DOCKER_HOME]]
    if google_registry(spec.image.registry):
        runcmd.append(
            _with_docker_home(
                ["docker-credential-gcr", "configure-docker", "--registries", spec.image.registry]
            )
        )
    runcmd.append(_with_docker_home(docker_run_argv(spec)))
    runcmd.append(["systemd-run", "--unit", WATCHER_UNIT, "/bin/bash", WATCHER_PATH])
    return {"write_files": write_files, "runcmd": runcmd}


def render_user_data(spec: LaunchSpec) -> str:
    """``#cloud-config`` text for the instance's ``user-data`` metadata."""
    body = yaml.dump(cloud_config(spec), Dumper=_Dumper, sort_keys=False, width=1000)
    return f"#cloud-config\n{body}"


def render_tls_user_data(spec: LaunchSpec) -> str:
    """User-data that only writes the TLS files (the container-declaration method runs the
    container itself; the entrypoint's restart policy covers the moment before they exist)."""
    files = cloud_config(spec)["write_files"][: len(tls_files(spec))]
    body = yaml.dump({"write_files": files}, Dumper=_Dumper, sort_keys=False, width=1000)
    return f"#cloud-config\n{body}"
