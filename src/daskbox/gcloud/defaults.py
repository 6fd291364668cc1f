"""The launch's defaults: what ``LaunchSettings`` starts from and ``invoke --help launch``
shows, written once.

Light on purpose (no dask): the task module imports it, and ``invoke --list`` stays fast.
"""

from __future__ import annotations

from typing import Final

from daskbox import contract

ZONE: Final = "us-central1-a"
MACHINE_TYPE: Final = "e2-highcpu-16"
BOOT_DISK_SIZE_GB: Final = 20
NETWORK: Final = "default"
NETWORK_TAG: Final = "daskbox"
# A forgotten VM deletes itself after this long; "" or "0" turns it off.
MAX_RUN_DURATION: Final = "8h"
# The entrypoint stops after this long without work, and the VM powers off with it.
IDLE_TIMEOUT: Final = "1h"
SCHEDULER_PORT: Final = contract.DEFAULT_SCHEDULER_PORT
DASHBOARD_PORT: Final = contract.DEFAULT_DASHBOARD_PORT
# Least privilege: write logs, read Cloud Storage (which also pulls from Artifact
# Registry and GCR). Nothing else, whatever roles the account holds.
SCOPES: Final = ("logging-write", "storage-ro")
# Seconds to wait for the scheduler.
TIMEOUT: Final = 600.0
# 0: the scheduler VM alone.
WORKER_VMS: Final = 0
# A managed instance group holds at most 2000 VMs.
MAX_WORKER_VMS: Final = 2000
