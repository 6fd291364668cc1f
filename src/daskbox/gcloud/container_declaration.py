"""LaunchSpec -> the ``--container-*`` flags of the legacy ``create-with-container`` method.

Compute Engine's container startup agent (konlet) reads the resulting
``gce-container-declaration`` metadata. Google deprecated it and refuses new
container-declaration VMs from 31 July 2026, so this method is kept only for projects
that still rely on it; the TLS files still arrive through cloud-init ``write_files``.
"""

from __future__ import annotations

from daskbox.contract import TLS_DIR
from daskbox.gcloud.spec import LaunchSpec, container_env

DEPRECATION_WARNING = (
    "warning: --method container-declaration uses Compute Engine's deprecated container "
    "startup agent; Google stopped allowing new container-declaration VMs on 31 July 2026. "
    "Use the default cloud-init method."
)


def container_flags(spec: LaunchSpec) -> list[str]:
    """Image, restart policy, environment and the read-only TLS mount as gcloud flags."""
    flags = [
        "--container-image",
        spec.image.reference,
        "--container-restart-policy",
        "on-failure",
        "--container-mount-host-path",
        f"host-path={TLS_DIR},mount-path={TLS_DIR},mode=ro",
    ]
    for key, value in container_env(spec):
        flags += ["--container-env", f"{key}={value}"]
    return flags
