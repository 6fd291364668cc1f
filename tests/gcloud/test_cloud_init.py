"""cloud-init user-data and its systemd unit: golden text, Debian's real ``cloud-init
schema`` and systemd's own ``systemd-analyze verify``, and no secret anywhere in it."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from golden_files import assert_golden
from specs import IMAGE, fixed_spec

from daskbox.errors import LaunchSpecError
from daskbox.gcloud import cloud_init
from daskbox.gcloud.cloud_init import render_user_data, unit_text
from daskbox.gcloud.local import local_argv
from daskbox.gcloud.tls import make_launch_tls

needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="Debian's cloud-init package is not installed"
)


def _schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path), "--annotate"],
        capture_output=True,
        text=True,
    )


def test_user_data_golden():
    assert_golden("user-data.yaml", render_user_data(fixed_spec()))


def test_user_data_holds_public_material_only():
    """The metadata anyone with project read access sees: no private key of any kind."""
    tls = make_launch_tls("daskbox-demo")
    text = render_user_data(fixed_spec(client_ca_pem=tls.client_ca_pem))
    assert "PRIVATE KEY" not in text
    assert tls.client.key_pem not in text and tls.client.cert_pem not in text
    files = {item["path"]: item for item in yaml.safe_load(text)["write_files"]}
    assert files["/etc/daskbox/client-ca.pem"]["content"] == tls.client_ca_pem
    assert {item["permissions"] for item in files.values()} == {"0644"}


@needs_cloud_init
def test_user_data_passes_cloud_init_schema(tmp_path):
    path = tmp_path / "user-data"
    path.write_text(render_user_data(fixed_spec(client_ca_pem=make_launch_tls("x").client_ca_pem)))
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


def _verify(
    tmp_path: Path, text: str, others: dict[str, str] | None = None, unit: str = "daskbox.service"
) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` in a root holding this host's units and COS's commands
    (``text`` as ``unit``, ``others`` beside it)."""
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for command in ("usr/bin/docker", "usr/bin/docker-credential-gcr", "usr/bin/curl", "bin/bash"):
        (root / command).parent.mkdir(parents=True, exist_ok=True)
        (root / command).write_text("#!/bin/sh\n")
        (root / command).chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name, content in {**(others or {}), unit: text}.items():
        (root / "etc/systemd/system" / name).write_text(content)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", unit],
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd on this host")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    result = _verify(tmp_path, unit_text(fixed_spec()))
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd on this host")
def test_systemd_analyze_flags_what_it_cannot_run(tmp_path):
    """The check above is a real one: a misspelt key is reported, a main command that
    does not exist fails."""
    text = unit_text(fixed_spec())
    misspelt = text.replace("RestartPreventExitStatus=", "RestartPreventExitCode=")
    assert "Unknown key" in _verify(tmp_path / "key", misspelt).stderr
    missing = text.replace("ExecStart=/bin/bash", "ExecStart=/usr/bin/no-such-command")
    assert _verify(tmp_path / "exec", missing).returncode != 0


def test_unit_order_restart_and_power_policy():
    lines = unit_text(fixed_spec()).splitlines()
    for target in ("network-online.target", "gcr-online.target", "docker.service"):
        assert any(line.startswith("After=") and target in line for line in lines)
        assert any(line.startswith("Wants=") and target in line for line in lines)
    assert "Restart=on-failure" in lines
    assert "RestartPreventExitStatus=2" in lines  # bad settings: not restarted
    assert "SuccessAction=poweroff" in lines  # the idle timeout's clean exit
    starts = [line for line in lines if line.startswith("ExecStart")]
    # The credential helper, the pull, the VM's own TLS, publishing its CA, the stale
    # container, then the cluster itself (in the foreground, watched by systemd). The pull
    # and the cluster report their failures (boot-step.sh).
    assert starts[0].startswith("ExecStartPre=/usr/bin/docker-credential-gcr configure-docker")
    assert starts[1].startswith("ExecStartPre=/bin/bash /etc/daskbox/boot-step.sh pull ")
    assert "docker pull" in starts[1] and "sleep" in starts[1]
    assert "/etc/daskbox/node-tls.sh" in starts[2] and "--network none" in starts[2]
    assert "guest-attributes/daskbox/cluster-ca" in starts[3]
    assert starts[4] == "ExecStartPre=-/usr/bin/docker rm --force daskbox"
    assert starts[5].startswith(
        "ExecStart=/bin/bash /etc/daskbox/boot-step.sh cluster /usr/bin/docker run --rm --name "
        "daskbox "
    )
    assert "--detach" not in starts[5] and "--restart" not in starts[5]


def test_credential_helper_only_for_google_registries():
    local = dataclasses.replace(IMAGE, reference="registry.example.com/demo@sha256:" + "c" * 64)
    assert "docker-credential-gcr" in unit_text(fixed_spec())
    assert "docker-credential-gcr" not in unit_text(fixed_spec(image=local))


def test_arguments_systemd_would_read_differently_are_refused():
    with pytest.raises(LaunchSpecError, match="cannot be passed through a systemd unit"):
        unit_text(fixed_spec(memory_per_worker="3GiB'; rm -rf /"))


def test_vm_and_local_run_the_same_container(tmp_path):
    """The local target differs from the VM only in how it is started and restarted, the
    TLS folder's host path, the container's name, and in listening on loopback only (host
    networking would put its ports on the LAN)."""
    spec = fixed_spec()
    vm = cloud_init.cluster_argv(spec)
    # On a VM the workers are named after it (names stay unique across worker VMs).
    assert vm[-3:-1] == ["--env", "DASKBOX_NODE_NAME=daskbox-demo"]
    del vm[-3:-1]
    local = local_argv(tmp_path, spec)
    assert local[-3:-1] == ["--env", "DASKBOX_LISTEN_HOST=127.0.0.1"]
    del local[-3:-1]
    assert vm[:3] == ["/usr/bin/docker", "run", "--rm"]
    assert local[:5] == ["docker", "run", "--detach", "--restart", "on-failure:5"]
    differences = [(a, b) for a, b in zip(vm[3:], local[5:], strict=True) if a != b]
    assert differences == [
        ("daskbox", "daskbox-demo"),
        (
            "type=bind,source=/var/lib/daskbox/tls,target=/etc/daskbox/tls,readonly",
            f"type=bind,source={tmp_path}/.daskbox/daskbox-demo.tls/server,"
            "target=/etc/daskbox/tls,readonly",
        ),
    ]


# -- worker VMs ----------------------------------------------------------------------------
CLUSTER_CA = "-----BEGIN CERTIFICATE-----\nCLUSTER CA\n-----END CERTIFICATE-----\n"


def _with_workers(**overrides: object):
    return fixed_spec(worker_vms=2, spot_workers=True, **overrides)


def test_worker_user_data_golden():
    spec = _with_workers()
    assert_golden("user-data-with-workers.yaml", render_user_data(spec))
    assert_golden(
        "worker-user-data.yaml", cloud_init.render_worker_user_data(spec, CLUSTER_CA, "10.128.0.5")
    )


def test_worker_user_data_holds_public_material_only():
    """The template anyone with project read access sees: the two CA certificates and a
    unit, no private key; the worker VM makes its own key at boot."""
    tls = make_launch_tls("daskbox-demo")
    spec = _with_workers(client_ca_pem=tls.client_ca_pem)
    text = cloud_init.render_worker_user_data(spec, CLUSTER_CA, "10.128.0.5")
    assert "PRIVATE KEY" not in text and tls.client.key_pem not in text
    files = {item["path"]: item["content"] for item in yaml.safe_load(text)["write_files"]}
    assert files["/etc/daskbox/client-ca.pem"] == tls.client_ca_pem
    assert files["/etc/daskbox/cluster-ca.pem"] == CLUSTER_CA
    unit = files["/etc/systemd/system/daskbox.service"]
    assert "DASKBOX_SCHEDULER_ADDRESS=tls://10.128.0.5:8786" in unit
    assert "-m daskbox.entrypoint.enroll join" in unit and "--scheduler daskbox-demo" in unit


@needs_cloud_init
def test_worker_user_data_passes_cloud_init_schema(tmp_path):
    path = tmp_path / "user-data"
    spec = _with_workers(client_ca_pem=make_launch_tls("x").client_ca_pem)
    for text in (
        render_user_data(spec),
        cloud_init.render_worker_user_data(spec, CLUSTER_CA, "10.128.0.5"),
    ):
        path.write_text(text)
        result = _schema(path)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd on this host")
def test_worker_and_signer_units_pass_systemd_analyze_verify(tmp_path):
    spec = _with_workers()
    worker = _verify(tmp_path / "worker", cloud_init.worker_unit_text(spec, "10.128.0.5"))
    assert worker.returncode == 0 and worker.stderr == "", worker.stderr
    signer = _verify(
        tmp_path / "signer",
        cloud_init.signer_unit_text(spec),
        {"daskbox.service": unit_text(spec)},
        "daskbox-signer.service",
    )
    assert signer.returncode == 0 and signer.stderr == "", signer.stderr


def test_only_the_signer_sees_the_cluster_ca_key():
    """The CA folder is mounted (read-only) into the signer alone: neither the cluster's
    container nor anything on a worker VM gets it."""
    spec = _with_workers()
    ca_mount = "source=/var/lib/daskbox/ca,target=/var/lib/daskbox/ca,readonly"
    assert any(ca_mount in arg for arg in cloud_init.signer_argv(spec))
    assert not any("/var/lib/daskbox/ca" in arg for arg in cloud_init.cluster_argv(spec))
    assert not any("/var/lib/daskbox/ca" in arg for arg in cloud_init.worker_argv(spec, "10.0.0.2"))
    # The worker VM's own key and request live in its state folder (its own boot disk).
    assert "--state" in cloud_init.join_argv(spec)
