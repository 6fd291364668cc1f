"""Every parser of user input, fuzzed (Hypothesis): any input either works or raises daskbox's
own error, a ``DaskboxError`` (inside the image: the entrypoint's ``SettingsError``), never
another exception.

Parsers: the entrypoint's environment variables, ``[tool.daskbox]`` with the build flags,
``[tool.daskbox.gcloud]`` with the launch flags, the connection-file reader (up to the
network: the checks ``connect()`` makes before it dials) and the image record reader. Each
is called as the task or ``connect()`` calls it, in process: no Docker, no subprocess. The
examples Hypothesis found are kept as ``@example``s. The profile is in tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import event, example, given
from hypothesis import strategies as st
from invoke.config import Config
from invoke.context import Context

from daskbox import contract
from daskbox.client.check import EnvironmentReport
from daskbox.client.connect import open_connection_file, security_for
from daskbox.client.connection import ConnectionFile, write_connection_file
from daskbox.client.local import local_environment
from daskbox.entrypoint.environment import environment_report
from daskbox.entrypoint.limits import Reading, ResourceLimits
from daskbox.entrypoint.settings import SettingsError, read_settings
from daskbox.entrypoint.sizing import plan_sizing
from daskbox.errors import DaskboxError
from daskbox.gcloud import commands
from daskbox.gcloud.checks import check_launch
from daskbox.gcloud.machines import machine_platform
from daskbox.gcloud.scale import scale
from daskbox.gcloud.settings import _CONFIG_KEYS, resolve_settings
from daskbox.gcloud.spec import LaunchImage, build_spec, source_ranges
from daskbox.gcloud.tasks import _tri_state
from daskbox.gcloud.teardown import read_targets
from daskbox.gcloud.tls import certificate_validity, make_launch_tls, make_tls_material
from daskbox.image_ref import ImageRef
from daskbox.images.cache import CacheLimits
from daskbox.images.settings import KEYS, load_settings
from daskbox.images.tasks import _overrides
from daskbox.record import ImageRecord, LockedDistribution, read_record, record_path

# --- strategies -----------------------------------------------------------------------------

# Text an environment variable or a command-line flag can hold (no NUL byte).
shell_text = st.text(st.characters(blacklist_characters="\x00"), max_size=40)
# Numbers, sizes and durations spelled in every way a user might, and their near misses.
numberish = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A[-+]?[0-9.eE+]{1,8}[ ]?(|[kMGTP]i?B|[kMGTP]|B|s|ms|m|h|d|w|days?|GB)\Z"),
)
values = st.one_of(numberish, shell_text)
# Text a TOML file can hold: UTF-8, so no lone surrogate.
toml_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    toml_text,
    st.datetimes(),
    numberish,
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(toml_text, inner, max_size=3),
    ),
    max_leaves=8,
)


def tables(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Tables of mostly known keys (else nothing gets past the unknown-key check)."""
    key = st.one_of(*[st.sampled_from(keys)] * 4, toml_text)
    return st.dictionaries(key, st.one_of(toml_values, numberish), max_size=6)


def _owns_error(call: Callable[[], object], *owned: type[BaseException]) -> None:
    """``call()`` works or raises one of ``owned``: anything else fails the test."""
    try:
        call()
        event("works")
    except owned as error:
        event(f"refused: {type(error).__name__}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder whose pyproject.toml each example rewrites."""
    root = tmp_path_factory.mktemp("fuzz-project")
    (root / "pyproject.toml").write_text('[project]\nname = "fuzz"\n')
    return root


def _write_pyproject(root: Path, daskbox: Mapping[str, Any]) -> None:
    document = {"project": {"name": "fuzz"}, "tool": {"daskbox": dict(daskbox)}}
    (root / "pyproject.toml").write_text(tomlkit.dumps(document), encoding="utf-8")


# --- the entrypoint's environment variables ------------------------------------------------

ENTRYPOINT_VARIABLES = [
    contract.ENV_WORKERS,
    contract.ENV_THREADS_PER_WORKER,
    contract.ENV_MEMORY_PER_WORKER,
    contract.LEGACY_ENV_WORKERS,
    contract.LEGACY_ENV_THREADS_PER_WORKER,
    contract.LEGACY_ENV_MEMORY_PER_WORKER,
    contract.ENV_IDLE_TIMEOUT,
    contract.ENV_SCHEDULER_PORT,
    contract.ENV_DASHBOARD_PORT,
    contract.ENV_LISTEN_HOST,
    contract.ENV_SCHEDULER_ADDRESS,
    contract.ENV_NODE_NAME,
]
TLS_VARIABLES = [contract.ENV_TLS_CA_FILE, contract.ENV_TLS_CERT_FILE, contract.ENV_TLS_KEY_FILE]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Paths a TLS variable may name: the right files, wrong ones, garbage, none at all."""
    folder = tmp_path_factory.mktemp("fuzz-tls")
    server = make_tls_material("fuzz").server
    contents = {
        "ca.pem": server.ca_pem,
        "cert.pem": server.cert_pem,
        "key.pem": server.key_pem,
        "garbage.pem": "garbage",
        "empty.pem": "",
        "binary.pem": "\udcff",
    }
    for name, text in contents.items():
        (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    return [str(folder / name) for name in contents] + [str(folder), str(folder / "missing")]


@given(
    environ=st.dictionaries(st.sampled_from(ENTRYPOINT_VARIABLES), values, max_size=6),
    tls=st.lists(st.integers(0, 7), min_size=3, max_size=3) | st.none(),
    cpus=st.floats(0.5, 256),
    memory_gib=st.floats(0.25, 1024),
)
def test_the_entrypoint_settings_work_or_are_a_settings_error(
    tls_files, environ, tls, cpus, memory_gib
):
    if tls is not None:
        environ |= {name: tls_files[i] for name, i in zip(TLS_VARIABLES, tls, strict=True)}
    try:
        settings = read_settings(environ)
    except SettingsError:
        event("refused: SettingsError")
        return
    limits = ResourceLimits((Reading(cpus, "fuzz"),), (Reading(memory_gib * 2**30, "fuzz"),))
    _owns_error(lambda: plan_sizing(limits, settings.overrides), SettingsError)


# --- [tool.daskbox] and the build flags ----------------------------------------------------


BUILD_FLAGS = ["with_", "extras", "base_image", "repository", "platform"]


def _build_settings(root: Path, config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    """What `invoke build` parses before Docker and Poetry are asked anything."""
    context = Context(Config(overrides={"daskbox": dict(config)}))
    overrides = _overrides(context, root, **flags)
    settings = load_settings(root, overrides)
    repository = ImageRef.parse(settings.repository)
    repository.with_tag("0" * 12)
    ImageRef.parse(settings.base_image)
    CacheLimits.resolve(settings.cache)


@given(
    table=tables(list(KEYS)),
    config=tables(list(KEYS)),
    flags=st.fixed_dictionaries(
        {
            "with_": st.none() | st.lists(shell_text, max_size=3),
            "extras": st.none() | st.lists(shell_text, max_size=3),
            "base_image": st.none() | shell_text,
            "repository": st.none() | shell_text,
            "platform": st.none() | shell_text | st.sampled_from(["linux/arm64", "arm64"]),
        }
    ),
)
@example(table={"cache-max-size": "1e400GB"}, config={}, flags=dict.fromkeys(BUILD_FLAGS))
@example(table={}, config={"cache-max-age": "nan"}, flags=dict.fromkeys(BUILD_FLAGS))
def test_the_image_settings_and_build_flags_work_or_are_daskbox_errors(
    project, table, config, flags
):
    _write_pyproject(project, table)
    _owns_error(lambda: _build_settings(project, config, flags), DaskboxError)


@given(text=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(text=b"[tool.daskbox]\nrepository = '\xff'\n")
def test_a_pyproject_that_is_not_toml_is_a_config_error(project, text):
    (project / "pyproject.toml").write_bytes(text)
    _owns_error(lambda: load_settings(project), DaskboxError)
    _owns_error(lambda: resolve_settings(project, {}), DaskboxError)


# --- [tool.daskbox.gcloud] and the launch flags -------------------------------------------

LAUNCH_FLAGS = [
    "instance",
    "project",
    "zone",
    "machine_type",
    "boot_disk_size_gb",
    "network_tag",
    "max_run_duration",
    "workers",
    "threads_per_worker",
    "memory_per_worker",
    "idle_timeout",
    "scheduler_port",
    "dashboard_port",
    "source_range",
    "service_account",
    "scopes",
    "timeout",
    "worker_vms",
    "worker_machine_type",
]
TRI_STATES = ["spot", "allow-any-source", "spot-workers", "allow-private-registry"]
IMAGE = LaunchImage(
    reference="us-central1-docker.pkg.dev/acme-prod/daskbox/fuzz@sha256:" + "ab" * 32,
    lock_hash="0" * 64,
    groups=("main",),
    platform="linux/amd64",
)


def _launch_settings(
    root: Path,
    config: Mapping[str, Any],
    flags: Mapping[str, Any],
    tri_states: Mapping[str, tuple[bool, bool]],
    local: bool,
) -> None:
    """What `invoke launch` parses and checks before it asks gcloud anything."""
    flags = dict(flags)
    for name, (on, off) in tri_states.items():
        flags[name.replace("-", "_")] = _tri_state(name, on, off)
    settings = resolve_settings(root, flags, local=local, invoke_config=config)
    image = dataclasses.replace(IMAGE, platform=machine_platform(settings.machine_type))
    check_launch(settings, image, local=local)
    tls = make_launch_tls(settings.instance, certificate_validity(settings.max_run_seconds))
    ranges = (
        ()
        if local
        else source_ranges(settings.source_range, "203.0.113.9/32", settings.allow_any_source)
    )
    spec = build_spec(
        settings,
        project="acme-prod",
        project_name="fuzz",
        image=image,
        client_ca_pem=tls.client_ca_pem,
        tls_days=30,
        ranges=ranges,
    )
    for argv in (
        commands.instance_create(spec),
        *(commands.firewall_create(spec, rule) for rule in spec.firewall_rules),
    ):
        assert all(isinstance(part, str) for part in argv), argv


@given(
    table=tables(list(_CONFIG_KEYS)),
    config=tables(list(_CONFIG_KEYS)),
    flags=st.dictionaries(st.sampled_from(LAUNCH_FLAGS), values, max_size=6),
    tri_states=st.dictionaries(
        st.sampled_from(TRI_STATES), st.tuples(st.booleans(), st.booleans()), max_size=2
    ),
    local=st.booleans(),
)
@example(table={}, config={}, flags={"labels": "a=b,c"}, tri_states={}, local=False)
def test_the_launch_settings_and_flags_work_or_are_daskbox_errors(
    project, table, config, flags, tri_states, local
):
    _write_pyproject(project, {"gcloud": table})
    _owns_error(lambda: _launch_settings(project, config, flags, tri_states, local), DaskboxError)


# Values each launch flag takes, so that most examples get past the first check.
GOOD_FLAGS: dict[str, list[str]] = {
    "instance": ["fuzz", "a" * 63, "daskbox-" + "x" * 55],
    "project": ["acme-prod"],
    "zone": ["us-central1-a", "europe-west4-b"],
    "machine_type": ["e2-highcpu-16", "t2a-standard-8", "c4a-highmem-4"],
    "boot_disk_size_gb": ["10", "20GB", "65536"],
    "network_tag": ["daskbox"],
    "max_run_duration": ["8h", "0", "30s", "120d"],
    "workers": ["4", "1"],
    "threads_per_worker": ["2"],
    "memory_per_worker": ["3GiB", "512MiB"],
    "idle_timeout": ["1h", "0"],
    "scheduler_port": ["8786"],
    "dashboard_port": ["8787"],
    "source_range": ["203.0.113.7/32", "2001:db8::/64"],
    "service_account": ["data@acme-prod.iam.gserviceaccount.com"],
    "scopes": ["logging-write,storage-ro"],
    "timeout": ["600", "1"],
    "worker_vms": ["0", "3"],
    "worker_machine_type": ["e2-standard-4", "t2a-standard-8"],
}


@st.composite
def launch_flags(draw: st.DrawFn) -> dict[str, str]:
    """Mostly good flags, one or two of them random: the checks deep in the launch run."""
    flags = {
        name: draw(st.sampled_from(good))
        for name, good in GOOD_FLAGS.items()
        if draw(st.booleans())
    }
    for name in draw(st.lists(st.sampled_from(LAUNCH_FLAGS), max_size=2)):
        flags[name] = draw(values)
    return flags


@given(flags=launch_flags(), local=st.booleans())
def test_launch_flags_near_good_ones_work_or_are_daskbox_errors(project, flags, local):
    _write_pyproject(project, {})
    _owns_error(lambda: _launch_settings(project, {}, flags, {}, local), DaskboxError)


# --- the connection file -------------------------------------------------------------------

TLS = make_tls_material("fuzz").client
RECORD = ImageRecord(
    reference="localhost:5000/fuzz:0123456789ab",
    image_id="sha256:" + "cd" * 32,
    platform="linux/amd64",
    python_version="3.11.7",
    target_environment={
        "sys_platform": "linux",
        "platform_machine": "x86_64",
        "python_version": "3.11",
        "python_full_version": "3.11.7",
    },
    lock_hash="0" * 64,
    groups=("main",),
    extras=(),
    installed_digest="ef" * 32,
    locked=(
        LockedDistribution("dask", "2024.8.0"),
        LockedDistribution("pywin32", "306", 'sys_platform == "win32"'),
    ),
    pinned="localhost:5000/fuzz@sha256:" + "ab" * 32,
    built_at="2026-12-03T16:00:00Z",
)
CONNECTION = ConnectionFile(
    instance="fuzz",
    target="local",
    scheduler_address="tls://127.0.0.1:8786",
    dashboard_url="https://127.0.0.1:8787/status",
    image="localhost:5000/fuzz@sha256:" + "ab" * 32,
    lock_hash="0" * 64,
    groups=("main",),
    tls=TLS,
    record=RECORD,
)
VALID = json.loads(CONNECTION.to_json())


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a JSON document, nested ones included."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


CONNECTION_PATHS = list(_paths(VALID))


def _mutated(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``document`` (a copy) with the field at ``path`` set to ``value`` (or removed)."""
    copy = json.loads(json.dumps(document))
    *parents, last = path
    node = copy
    for key in parents:
        node = node[key]
    if value is _REMOVED and isinstance(node, dict):
        del node[last]
    else:
        node[last] = None if value is _REMOVED else value
    return copy


_REMOVED = object()


def _pem_changes(draw: st.DrawFn) -> Any:
    """Near misses of PEM text: one character changed, cut short, another part's text."""
    text = draw(st.sampled_from([TLS.ca_pem, TLS.cert_pem, TLS.key_pem]))
    position = draw(st.integers(0, len(text) - 1))
    change = draw(st.sampled_from(["character", "cut", "as is"]))
    if change == "character":
        return text[:position] + draw(st.characters(codec="ascii")) + text[position + 1 :]
    return text[:position] if change == "cut" else text


field_values = st.one_of(
    json_values, st.just(_REMOVED), st.composite(_pem_changes)(), shell_text, numberish
)

REPORT = EnvironmentReport.from_dict(environment_report())


def _connect_reads(path: Path) -> None:
    """What ``connect()`` reads and checks before it dials the scheduler."""
    connection_path, connection = open_connection_file(path=path)
    security_for(connection, connection_path)
    local_environment(None, connection, report=REPORT, markers=RECORD.target_environment)


def _scale_reads(path: Path) -> None:
    """`invoke scale 2 --dry-run`: the file's worker group, project and zone."""
    scale(path.parent.parent, 2, instance=path.stem, dry_run=True, echo=lambda line: None)


def _teardown_reads(path: Path) -> None:
    """What `invoke teardown` reads of the file (it sets a damaged one aside)."""
    for target in read_targets(path.parent.parent, path.stem, echo=lambda line: None)[0]:
        project, zone = target.project or "p", target.zone or "z"
        argv = [*commands.instance_delete(project, zone, target.instance), *target.firewall_rules]
        # gcloud's argv: subprocess takes text only
        assert all(isinstance(part, str) for part in argv), argv
        assert isinstance(target.group, str | None) and isinstance(target.template, str | None)


def _every_reader(path: Path) -> None:
    for read in (_connect_reads, _scale_reads, _teardown_reads):
        _owns_error(functools.partial(read, path), DaskboxError)


@pytest.fixture(scope="module")
def connection_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_connection_file(
        tmp_path_factory.mktemp("fuzz-connection") / ".daskbox" / "fuzz.json", CONNECTION
    )


def test_the_unmutated_connection_file_is_read(connection_path):
    """The fuzzing below starts from a file that works."""
    write_connection_file(connection_path, CONNECTION)
    for read in (_connect_reads, _teardown_reads):
        read(connection_path)


@given(path=st.sampled_from(CONNECTION_PATHS), value=field_values)
@example(path=("record", "locked", 1, "marker"), value="garbage")
@example(path=("extra",), value="")  # scale and teardown called .get on it
@example(path=("record", "target_environment"), value={"sys_platform": 3})
def test_a_connection_file_with_one_field_changed_works_or_is_daskbox_error(
    connection_path, path, value
):
    connection_path.write_text(json.dumps(_mutated(VALID, path, value)), encoding="utf-8")
    _every_reader(connection_path)


@given(document=json_values)
def test_a_connection_file_of_random_json_is_a_daskbox_error(connection_path, document):
    connection_path.write_text(json.dumps(document), encoding="utf-8")
    _every_reader(connection_path)


@given(text=st.binary(max_size=300))
def test_a_connection_file_of_random_bytes_is_a_daskbox_error(connection_path, text):
    connection_path.write_bytes(text)
    _every_reader(connection_path)


# --- the image record ----------------------------------------------------------------------

VALID_RECORD = json.loads(RECORD.to_json())
RECORD_PATHS = list(_paths(VALID_RECORD))


def _record_reads(root: Path) -> None:
    """What launch and connect read of a record: its fields and what the lock gives."""
    record = read_record(root, RECORD.platform)
    record.distributions_for(RECORD.target_environment)
    assert record.image_distributions is not None
    _ = record.repository


@given(path=st.sampled_from(RECORD_PATHS), value=field_values)
@example(path=("locked", 0, "marker"), value="os_name ==")  # packaging's InvalidMarker
@example(path=("reference",), value=5)  # .repository: int has no rsplit
def test_an_image_record_with_one_field_changed_works_or_is_daskbox_error(project, path, value):
    target = record_path(project, RECORD.platform)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(_mutated(VALID_RECORD, path, value)), encoding="utf-8")
    _owns_error(lambda: _record_reads(project), DaskboxError)


@given(text=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@example(text=b"\x80")  # UnicodeDecodeError
def test_an_image_record_of_random_bytes_or_json_is_a_daskbox_error(project, text):
    target = record_path(project, RECORD.platform)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text)
    _owns_error(lambda: _record_reads(project), DaskboxError)
