"""cloud-init user-data: golden text, validated by Debian's real ``cloud-init schema``."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from golden_files import assert_golden
from specs import fixed_spec

from daskbox.contract import IMAGE_UID as USER_ID
from daskbox.gcloud.cloud_init import render_user_data
from daskbox.gcloud.local import local_argv
from daskbox.gcloud.spec import docker_run_argv
from daskbox.gcloud.tls import make_tls_material

needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="Debian's cloud-init package is not installed"
)


def _schema(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path), "--annotate"],
        capture_output=True,
        text=True,
    )


def test_user_data_golden():
    assert_golden("user-data.yaml", render_user_data(fixed_spec()))


@needs_cloud_init
@pytest.mark.parametrize("method", ["cloud-init", "container-declaration"])
def test_user_data_passes_cloud_init_schema(tmp_path, method):
    spec = fixed_spec(make_tls_material("daskbox-demo").server, method=method)
    path = tmp_path / "user-data"
    path.write_text(render_user_data(spec))
    result = _schema(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


@needs_cloud_init
def test_schema_check_catches_a_broken_user_data(tmp_path):
    """The validator the test above relies on does reject bad user-data."""
    data = yaml.safe_load(render_user_data(fixed_spec()))
    data["write_files"][0]["permissions"] = ["not", "a", "mode"]
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\n" + yaml.safe_dump(data))
    assert _schema(path).returncode != 0


def test_vm_and_local_run_the_same_container(tmp_path):
    """The local target differs from the VM only in the TLS folder's host path and name,
    and in listening on loopback only (host networking would put its ports on the LAN)."""
    spec = fixed_spec()
    vm = docker_run_argv(spec)
    local = local_argv(tmp_path, spec)
    assert local[-3:-1] == ["--env", "DASKBOX_LISTEN_HOST=127.0.0.1"]
    del local[-3:-1]
    runcmd = yaml.safe_load(render_user_data(spec))["runcmd"]
    [run] = [line for line in runcmd if line[2:4] == ["docker", "run"]]
    assert run[2:] == vm  # after `env HOME=...`
    differences = [(a, b) for a, b in zip(vm, local, strict=True) if a != b]
    assert differences == [
        ("daskbox", "daskbox-demo"),
        (
            "/etc/daskbox/tls:/etc/daskbox/tls:ro",
            f"{tmp_path}/.daskbox/daskbox-demo.tls/server:/etc/daskbox/tls:ro",
        ),
    ]


def test_credential_helper_only_for_google_registries():
    from dataclasses import replace

    spec = fixed_spec()
    local_registry = replace(spec, image=replace(spec.image, reference="localhost:5000/demo:abc"))
    assert "docker-credential-gcr" in render_user_data(spec)
    assert "docker-credential-gcr" not in render_user_data(local_registry)


@pytest.mark.parametrize("method", ["cloud-init", "container-declaration"])
def test_server_key_is_readable_by_the_image_user_only(method):
    """Written root-only 0600, then handed to the image's uid before the container starts."""
    spec = fixed_spec(method=method)
    data = yaml.safe_load(render_user_data(spec))
    modes = {item["path"]: item["permissions"] for item in data["write_files"]}
    assert modes["/etc/daskbox/tls/server-key.pem"] == "0600"
    assert modes["/etc/daskbox/tls/ca.pem"] == "0644"
    chown = ["chown", f"{USER_ID}:{USER_ID}", "/etc/daskbox/tls/server-key.pem"]
    assert data["runcmd"][0] == chown  # before docker run / the watcher


@pytest.mark.parametrize(
    ("method", "pattern"),
    [("cloud-init", "name=^daskbox$"), ("container-declaration", "name=^klt-daskbox-demo-")],
)
def test_both_methods_start_the_idle_watcher_on_their_container(method, pattern):
    spec = fixed_spec(method=method)
    data = yaml.safe_load(render_user_data(spec))
    [script] = [item["content"] for item in data["write_files"] if item["path"].endswith(".sh")]
    assert f"--filter '{pattern}'" in script and "systemctl poweroff" in script
    assert data["runcmd"][-1][:1] == ["systemd-run"]


def test_container_declaration_user_data_leaves_the_container_to_konlet():
    """konlet runs the container: a second `docker run` from cloud-init would clash with it."""
    runcmd = yaml.safe_load(render_user_data(fixed_spec(method="container-declaration")))["runcmd"]
    assert not any("docker" in command for argv in runcmd for command in argv)
    assert any("run" in argv for argv in yaml.safe_load(render_user_data(fixed_spec()))["runcmd"])
