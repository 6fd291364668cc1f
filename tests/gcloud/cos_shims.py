"""The commands an emulated Container-Optimized OS VM gets in place of its own (see cos_vm.py).

``python cos_shims.py docker|docker-credential-gcr|systemctl ARGS...``, started by small
wrappers in the VM's command folder with the VM's host environment (``COS_EMU_*``).

* ``docker``: this host's Docker CLI with the VM's view: refused until the VM's
  docker.service is up, container names given a per-VM prefix, bind-mount sources mapped
  into the VM's root folder, every container labelled for clean-up, and only the client
  configuration under the VM's ``$HOME`` (so credentials are what the VM configured).
* ``docker-credential-gcr``: Google's credential helper as COS ships it:
  ``configure-docker [--registries=...]`` writes ``credHelpers`` to
  ``$HOME/.docker/config.json``; ``get`` answers with the access token of the VM's service
  account from the metadata server (through ``http_proxy``, the VM's route to it).
* ``systemctl``: ``poweroff`` and ``is-active``, as processes on a VM use them.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

# docker run/create options that take a value (the next argument unless written --x=v).
RUN_VALUE_OPTIONS = {
    "--name",
    "-v",
    "--volume",
    "--mount",
    "-e",
    "--env",
    "--env-file",
    "-l",
    "--label",
    "--network",
    "--net",
    "--restart",
    "-u",
    "--user",
    "--entrypoint",
    "-w",
    "--workdir",
    "-m",
    "--memory",
    "--cpus",
    "--log-driver",
    "--log-opt",
    "--add-host",
    "-p",
    "--publish",
    "-h",
    "--hostname",
    "--stop-timeout",
    "--stop-signal",
    "--pull",
    "--platform",
    "--ulimit",
    "--tmpfs",
    "--device",
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "--shm-size",
    "--pid",
    "--ipc",
    "--health-cmd",
    "--health-interval",
}
NAME_COMMANDS = {"rm", "stop", "kill", "wait", "logs", "inspect", "start", "restart", "top"}
NAME_VALUE_OPTIONS = {
    "-t",
    "--time",
    "-s",
    "--signal",
    "--tail",
    "--since",
    "--until",
    "-f",
    "--format",
    "--type",
}
WRITABLE_ROOTS = {"etc", "var", "home", "tmp", "run", "mnt"}  # as cos_vm.WRITABLE_ROOTS
GCR_DEFAULT_REGISTRIES = ("gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io", "marketplace.gcr.io")


def _host_path(path: str) -> str:
    if path.startswith(os.environ["COS_EMU_ROOT"] + "/"):
        # Already mapped: a host command (a script run by bash) handed it on to docker.
        return path
    parts = path.split("/")
    if path.startswith("/") and len(parts) > 1 and parts[1] in WRITABLE_ROOTS:
        return os.environ["COS_EMU_ROOT"] + path
    return path


def _volume(value: str) -> str:
    source, sep, rest = value.partition(":")
    return f"{_host_path(source)}{sep}{rest}" if source.startswith("/") else value


def _mount(value: str) -> str:
    fields = []
    for item in value.split(","):
        key, sep, setting = item.partition("=")
        if key in {"source", "src"} and setting.startswith("/"):
            setting = _host_path(setting)
        fields.append(f"{key}{sep}{setting}")
    return ",".join(fields)


def _host_network(args: list[str]) -> bool:
    """Whether ``docker run`` options (up to the image) ask for the host's network."""
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            return False
        if arg in {"--network=host", "--net=host"}:
            return True
        if arg in {"--network", "--net"} and args[index + 1 : index + 2] == ["host"]:
            return True
    return False


def _run_arguments(args: list[str]) -> list[str]:
    prefix = os.environ["COS_EMU_PREFIX"]
    out = ["--label", os.environ["COS_EMU_LABEL"]]
    if _host_network(args):
        # metadata.google.internal answers on the VM's network: in this model, through the
        # VM's metadata server as HTTP proxy (the route the VM's host processes use too).
        out += [
            "--env",
            f"http_proxy={os.environ['http_proxy']}",
            "--env",
            "no_proxy=127.0.0.1,localhost",
        ]
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            return out + args[index:]  # the image and the container's command: untouched
        option, equals, value = arg.partition("=")
        if option in RUN_VALUE_OPTIONS and not equals:
            index += 1
            value = args[index]
        if option == "--name":
            value = prefix + value
        elif option in {"-v", "--volume"}:
            value = _volume(value)
        elif option == "--mount":
            value = _mount(value)
        elif option == "--env-file":
            value = _host_path(value)
        out += [option, value] if option in RUN_VALUE_OPTIONS else [arg]
        index += 1
    return out


def _name_arguments(args: list[str]) -> list[str]:
    prefix = os.environ["COS_EMU_PREFIX"]
    out: list[str] = []
    expect_value = False
    for arg in args:
        if expect_value:
            out.append(arg)
            expect_value = False
        elif arg.startswith("-"):
            out.append(arg)
            expect_value = arg in NAME_VALUE_OPTIONS
        else:
            out.append(prefix + arg)
    return out


def docker(args: list[str]) -> int:
    root = Path(os.environ["COS_EMU_ROOT"])
    if not (root / "run" / "docker.sock").exists():
        print(
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
            "Is the docker daemon running?",
            file=sys.stderr,
        )
        return 1
    if not args or args[0].startswith("-"):
        print("docker: global options are not modelled", file=sys.stderr)
        return 125
    command, rest = args[0], args[1:]
    if command in {"run", "create"}:
        rest = _run_arguments(rest)
    elif command in NAME_COMMANDS:
        rest = _name_arguments(rest)
    elif command not in {"pull", "images", "version", "info"}:
        print(f"docker {command}: not modelled on the emulated VM", file=sys.stderr)
        return 125
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_CONFIG"}
    real = os.environ["COS_EMU_DOCKER"]
    os.execve(real, [real, command, *rest], env)
    return 0  # not reached


def _metadata(path: str) -> bytes:
    request = urllib.request.Request(
        f"http://metadata.google.internal/computeMetadata/v1/{path}",
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def credential_helper(args: list[str]) -> int:
    if args[:1] == ["configure-docker"]:
        registries: list[str] = []
        rest = iter(args[1:])
        for arg in rest:
            if arg.startswith("--registries="):
                registries += arg.split("=", 1)[1].split(",")
            elif arg == "--registries":
                registries += next(rest).split(",")
            else:
                print(f"docker-credential-gcr: unknown flag {arg}", file=sys.stderr)
                return 1
        config_path = Path(os.environ["HOME"]) / ".docker" / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        helpers = config.setdefault("credHelpers", {})
        for registry in registries or GCR_DEFAULT_REGISTRIES:
            helpers[registry.strip()] = "gcr"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config, indent=2))
        print(f"{config_path} configured to use this credential helper for GCR registries")
        return 0
    if args[:1] == ["get"]:
        sys.stdin.read()
        try:
            token = json.loads(_metadata("instance/service-accounts/default/token"))
        except (urllib.error.URLError, ValueError, OSError) as error:
            print(
                f"docker-credential-gcr: no access token from the metadata server: {error}",
                file=sys.stderr,
            )
            return 1
        print(json.dumps({"Username": "_dcgcloud_token", "Secret": token["access_token"]}))
        return 0
    print(f"docker-credential-gcr: {' '.join(args)}: not modelled", file=sys.stderr)
    return 1


def systemctl(args: list[str]) -> int:
    root = Path(os.environ["COS_EMU_ROOT"])
    if args == ["poweroff"]:
        (root / "run" / "systemd").mkdir(parents=True, exist_ok=True)
        (root / "run" / "systemd" / "poweroff-requested").touch()
        return 0
    print(f"systemctl {' '.join(args)}: not modelled", file=sys.stderr)
    return 1


def main() -> int:
    command, args = sys.argv[1], sys.argv[2:]
    handlers = {
        "docker": docker,
        "docker-credential-gcr": credential_helper,
        "systemctl": systemctl,
    }
    return handlers[command](args)


if __name__ == "__main__":
    raise SystemExit(main())
