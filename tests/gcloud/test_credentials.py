"""Data without secrets in the image: the VM's own identity, or on the local target the
user's application-default credentials, mounted read-only only when asked. And the VM's
dashboard, served to the launch's client certificate only.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import daskbox
from daskbox.client.connection import connection_path, read_connection_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CALLER = "203.0.113.7/32"
ACCOUNT = "data-reader@test-project.iam.gserviceaccount.com"
GOOGLE_MOUNT = "/etc/daskbox/google"


def _instance(project: Path) -> str:
    return next(
        line.split('"')[1]
        for line in (project / "pyproject.toml").read_text().splitlines()
        if line.startswith("instance")
    )


def curl_dashboard(url: str, *certificate: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "--silent", "--insecure", "--max-time", "30", *certificate, url],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_vm_runs_as_the_given_account_and_shows_its_dashboard_to_the_launch_only(
    project, vm_image, emulator, gcloud_env, tmp_path
):
    launched = daskbox(
        project,
        gcloud_env,
        "launch",
        "--image",
        vm_image.reference,
        "--source-range",
        CALLER,
        "--service-account",
        ACCOUNT,
        "--scopes",
        "storage-ro,logging-write,bigquery",
    )
    try:
        assert f"--service-account {ACCOUNT}" in launched.stdout
        [body] = emulator.bodies("POST", r"zones/us-central1-a/instances$")
        [account] = body["serviceAccounts"]
        assert account["email"] == ACCOUNT
        assert sorted(account["scopes"]) == [
            "https://www.googleapis.com/auth/bigquery",
            "https://www.googleapis.com/auth/devstorage.read_only",
            "https://www.googleapis.com/auth/logging.write",
        ]
        # The VM's dashboard: refused without the launch's client certificate, served with it.
        connection = read_connection_file(connection_path(project, _instance(project)))
        url = connection.dashboard_url.replace("/status", "/health")
        refused = curl_dashboard(url)
        assert refused.returncode in {35, 55, 56} and refused.stdout == "", refused
        cert, key = tmp_path / "client.pem", tmp_path / "client-key.pem"
        cert.write_text(connection.tls.cert_pem)
        key.write_text(connection.tls.key_pem)
        answered = curl_dashboard(url, "--cert", str(cert), "--key", str(key))
        assert (answered.returncode, answered.stdout) == (0, "ok"), answered.stderr
    finally:
        daskbox(project, gcloud_env, "teardown", check=False)


def container(name: str) -> dict:
    inspected = subprocess.run(
        ["docker", "container", "inspect", name], capture_output=True, text=True, check=True
    )
    return json.loads(inspected.stdout)[0]


def test_the_local_target_mounts_application_credentials_only_when_asked(
    project, cluster_image, tmp_path
):
    instance = _instance(project)
    gcloud_config = tmp_path / "gcloud"
    gcloud_config.mkdir()
    credentials = gcloud_config / "application_default_credentials.json"
    # What `gcloud auth application-default login` writes (with made-up values), mode 0600.
    credentials.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "made-up.apps.googleusercontent.com",
                "client_secret": "made-up",
                "refresh_token": "made-up-refresh-token",
            }
        )
    )
    credentials.chmod(0o600)
    env = {**os.environ, "CLOUDSDK_CONFIG": str(gcloud_config)}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)

    daskbox(project, env, "launch", "--local", "--image", cluster_image.reference)
    try:
        plain = container(instance)
        assert not [m for m in plain["Mounts"] if m["Destination"] == GOOGLE_MOUNT]
        assert not [v for v in plain["Config"]["Env"] if v.startswith("GOOGLE_APPLICATION")]
    finally:
        daskbox(project, env, "teardown", "--local")

    launched = daskbox(
        project,
        env,
        "launch",
        "--local",
        "--image",
        cluster_image.reference,
        "--application-credentials",
    )
    try:
        assert f"target={GOOGLE_MOUNT},readonly" in launched.stdout  # the printed docker run
        asked = container(instance)
        [mount] = [m for m in asked["Mounts"] if m["Destination"] == GOOGLE_MOUNT]
        assert mount["RW"] is False
        variables = dict(item.split("=", 1) for item in asked["Config"]["Env"])
        file_inside = f"{GOOGLE_MOUNT}/application_default_credentials.json"
        assert variables["GOOGLE_APPLICATION_CREDENTIALS"] == file_inside
        # The image's non-root user reads exactly the user's credentials, and cannot write.
        read = subprocess.run(
            ["docker", "exec", instance, "cat", file_inside],
            capture_output=True,
            text=True,
            check=True,
        )
        assert read.stdout == credentials.read_text()
        write = subprocess.run(
            ["docker", "exec", instance, "touch", file_inside],
            capture_output=True,
            text=True,
            check=False,
        )
        assert write.returncode != 0
    finally:
        daskbox(project, env, "teardown", "--local")
    assert not (project / ".daskbox" / f"{instance}.tls").exists()  # the copy went with it


def test_application_credentials_are_refused_for_a_vm_and_when_missing(
    project, gcloud_env, cluster_image, tmp_path
):
    for_vm = daskbox(
        project,
        gcloud_env,
        "launch",
        "--application-credentials",
        "--source-range",
        CALLER,
        check=False,
    )
    assert for_vm.returncode == 1
    assert for_vm.stderr.startswith("error: --application-credentials is for --local")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "empty-gcloud")}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    missing = daskbox(
        project,
        env,
        "launch",
        "--local",
        "--application-credentials",
        "--image",
        cluster_image.reference,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no application-default credentials at ")
    assert "gcloud auth application-default login" in missing.stderr
    assert not (project / ".daskbox" / f"{_instance(project)}.tls").exists()
