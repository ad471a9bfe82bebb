"""The Home Assistant add-on package: config.yaml and build.yaml as the add-on linter sees them,
translations, options, run.sh, the Dockerfile, the AppArmor profile and the images."""

from __future__ import annotations

import json
import re
import shlex
import struct
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError, validators

from aniworld_addon.const import VERSION
from aniworld_addon.options import LOG_LEVELS, load_options, option_names
from tests.conftest import IN_CI, require_tool

ROOT: Final = Path(__file__).resolve().parent.parent
# The linter's JSON Schemas live beside the repository (README there), not inside it.
LINTER_DIR: Final = ROOT.parent / "shared" / "addon-linter"

# Schema keys that are not deployment options of the service (SPEC §3) but are read by run.sh
# only. Each needs a reason here and a row in DOCS.md. None so far.
ADDON_ONLY_OPTIONS: Final[Mapping[str, str]] = {}

# Defaults the developer documentation gives (docs/add-ons/configuration.md) that the linter's
# schema does not carry; a key set to one of them is as redundant as one at a schema default.
DOCUMENTED_DEFAULTS: Final[Mapping[str, Any]] = {"ingress_entry": "/"}

# The Supervisor keeps exactly one profile whose line starts with "profile" and renames it
# (supervisor/utils/apparmor.py, RE_PROFILE).
SUPERVISOR_PROFILE_RE: Final = re.compile(r"^profile ([^ ]+).*$")

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- helpers


def _load_yaml(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = _load_yaml("config.yaml")
    assert isinstance(data, dict)
    return data


def _linter_schema(name: str) -> dict[str, Any]:
    path = LINTER_DIR / name
    if not path.is_file():
        message = f"{path} is missing (the add-on linter schemas live in shared/ beside the repo)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def _linter_validator(schema: dict[str, Any]) -> Draft7Validator:
    """Draft 7 plus the linter's own rule: a key whose value is the schema default is an error."""
    check_properties = Draft7Validator.VALIDATORS["properties"]

    def properties(
        validator: Draft7Validator, props: dict[str, Any], instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if validator.is_type(instance, "object"):
            for name, subschema in props.items():
                if (
                    "default" in subschema
                    and name in instance
                    and instance[name] == subschema["default"]
                ):
                    yield ValidationError(f"'{name}' should be removed, it uses a default value")
        yield from check_properties(validator, props, instance, schema)

    cls = validators.extend(Draft7Validator, {"properties": properties})
    validator: Draft7Validator = cls(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    return validator


def _linter_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return sorted(
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in _linter_validator(schema).iter_errors(instance)
    )


def _linter_rule_errors(config: Mapping[str, Any]) -> list[str]:
    """The checks frenck/action-addon-linter makes outside the schema (src/lint.py)."""
    errors = []
    if config.get("ingress", False):
        if config.get("webui"):
            errors.append("'webui' should be removed, Ingress is enabled")
        if not config.get("host_network", False) and config.get("ingress_port", 8099) == 0:
            errors.append("'ingress_port' must not be 0 off the host network")
    if config.get("full_access") and any(k in config for k in ("devices", "gpio", "uart", "usb")):
        errors.append("'full_access' makes 'devices', 'gpio', 'uart' and 'usb' pointless")
    if "auto_uart" in config:
        errors.append("'auto_uart' is deprecated, use 'uart'")
    if any(":" in device for device in config.get("devices", [])):
        errors.append("'devices' uses the deprecated host:container format")
    if not isinstance(config.get("tmpfs", False), bool):
        errors.append("'tmpfs' must be a boolean")
    if config.get("backup", "hot") == "cold":
        errors.extend(f"'{k}' is ignored with cold backups" for k in ("backup_pre", "backup_post"))
    if "watchdog" in config:
        errors.append("'watchdog' is obsolete, use the Docker HEALTHCHECK")
    return errors


def _documented_default_errors(config: Mapping[str, Any]) -> list[str]:
    """Keys at a default the developer docs give but the schema does not."""
    errors = [
        f"'{key}' should be removed, it uses a default value"
        for key, default in DOCUMENTED_DEFAULTS.items()
        if key in config and config[key] == default
    ]
    if "panel_title" in config and config["panel_title"] == config.get("name"):
        errors.append("'panel_title' should be removed, it defaults to the name")
    for entry in config.get("map", []):
        # Folders are mapped read-only unless told otherwise.
        if isinstance(entry, dict) and entry.get("read_only") is True:
            errors.append(f"map {entry.get('type')}: 'read_only: true' is the default")
        if isinstance(entry, str) and entry.endswith(":ro"):
            errors.append(f"map {entry}: ':ro' is the default")
    return errors


def _all_linter_errors(schema: dict[str, Any], config: Mapping[str, Any]) -> list[str]:
    return (
        _linter_errors(schema, config)
        + _linter_rule_errors(config)
        + _documented_default_errors(config)
    )


def _schema_type_accepts(spec: str, value: Any) -> bool:
    """Whether a value passes one of the Supervisor's option types (the ones we use)."""
    spec = spec.removesuffix("?")
    if spec in ("str", "password"):
        return isinstance(value, str)
    if spec == "port":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    if spec == "bool":
        return isinstance(value, bool)
    if spec.startswith("match(") and spec.endswith(")"):
        return isinstance(value, str) and re.fullmatch(spec[6:-1], value) is not None
    if spec.startswith("list(") and spec.endswith(")"):
        return value in spec[5:-1].split("|")
    raise AssertionError(f"schema type {spec!r} is not known to this test: teach it")


# ---------------------------------------------------------------- the linter rules themselves


def test_linter_checks_catch_what_the_linter_rejects() -> None:
    schema = _linter_schema("config.schema.json")
    bad = {
        "name": "x",
        "version": "1",
        "slug": "x",
        "description": "x",
        "arch": ["amd64"],
        "ingress": True,
        "ingress_port": 8099,
        "ingress_entry": "/",
        "boot": "auto",
        "webui": "http://[HOST]:[PORT:8099]/",
        "watchdog": "tcp://[HOST]:[PORT:8099]",
        "panel_title": "x",
        "map": [{"type": "media", "read_only": True}],
        "no_such_key": 1,
    }
    found = "\n".join(_all_linter_errors(schema, bad))
    for expected in (
        "'ingress_port' should be removed",
        "'boot' should be removed",
        "'ingress_entry' should be removed",
        "'webui' should be removed",
        "'watchdog' is obsolete",
        "'panel_title' should be removed",
        "map media: 'read_only: true'",
        "Additional properties are not allowed ('no_such_key'",
    ):
        assert expected in found


# ---------------------------------------------------------------- config.yaml and build.yaml


def test_config_passes_the_addon_linter(config: dict[str, Any]) -> None:
    schema = _linter_schema("config.schema.json")
    assert _all_linter_errors(schema, config) == []


def test_config_has_no_webui_and_no_watchdog(config: dict[str, Any]) -> None:
    assert config["ingress"] is True
    assert "webui" not in config
    assert "watchdog" not in config


def test_config_version_matches_the_package(config: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["version"] == pyproject["project"]["version"] == VERSION


def test_build_yaml_passes_the_addon_linter(config: dict[str, Any]) -> None:
    build_file = ROOT / "build.yaml"
    if not build_file.is_file():
        pytest.skip("no build.yaml: the Dockerfile's BUILD_FROM default is used")
    schema = _linter_schema("build.schema.json")
    build = _load_yaml("build.yaml")
    assert _linter_errors(schema, build) == []
    # The linter's community mode: one base image per architecture the add-on offers.
    assert set(build["build_from"]) == set(config["arch"])


def test_build_images_and_dockerfile_default_are_one_base_image() -> None:
    build = _load_yaml("build.yaml")
    default = re.search(r"^ARG BUILD_FROM=(\S+)$", _dockerfile_text(), re.MULTILINE)
    assert default, "the Dockerfile's BUILD_FROM needs a default for a plain docker build"
    tags = {image.rpartition(":")[2] for image in build["build_from"].values()}
    assert tags == {default.group(1).rpartition(":")[2]}
    for arch, image in build["build_from"].items():
        assert image.startswith(f"ghcr.io/home-assistant/{arch}-base-python:")


def test_ports_are_described(config: dict[str, Any]) -> None:
    # The direct port (normal auth); 8099 is the ingress listener, for the Supervisor only.
    assert config["ports"] == {"8100/tcp": None}  # off unless the user maps it
    assert set(config["ports_description"]) == set(config["ports"])


# ---------------------------------------------------------------- options and schema


def test_options_and_schema_agree(config: dict[str, Any]) -> None:
    options, schema = config["options"], config["schema"]
    # Optional ("?") keys have no default (Supervisor docs: a default would make them
    # required); every other schema key has one, and no option lacks a schema entry.
    optional = {key for key, spec in schema.items() if spec.endswith("?")}
    assert set(options) == set(schema) - optional
    for key, value in options.items():
        assert _schema_type_accepts(schema[key], value), f"default of {key!r} fails {schema[key]}"


def test_schema_keys_are_service_options_or_documented(config: dict[str, Any]) -> None:
    known = set(option_names()) | set(ADDON_ONLY_OPTIONS)
    assert set(config["schema"]) <= known
    docs = (ROOT / "DOCS.md").read_text(encoding="utf-8")
    for key in config["schema"]:
        assert f"`{key}`" in docs, f"DOCS.md does not describe the add-on option {key!r}"


def test_log_levels_offered_are_ones_the_service_accepts(config: dict[str, Any]) -> None:
    spec = config["schema"]["log_level"]
    assert spec.startswith("list(")
    assert set(spec[5:-1].split("|")) <= set(LOG_LEVELS)


def test_default_options_load_in_the_service(config: dict[str, Any], tmp_path: Path) -> None:
    file = tmp_path / "options.json"
    file.write_text(json.dumps(config["options"]), encoding="utf-8")
    options = load_options({}, environ={}, options_file=file)
    assert options.library_path == Path(config["options"]["library_path"])
    assert options.log_level == config["options"]["log_level"]


# ---------------------------------------------------------------- translations


@pytest.mark.parametrize("language", ["en", "de"])
def test_translations_cover_every_option_and_port(config: dict[str, Any], language: str) -> None:
    data = _load_yaml(f"translations/{language}.yaml")
    assert set(data) == {"configuration", "network"}
    assert set(data["configuration"]) == set(config["schema"])
    for key, entry in data["configuration"].items():
        assert set(entry) == {"name", "description"}, key
        assert entry["name"].strip() and entry["description"].strip(), key
    assert set(data["network"]) == set(config["ports"])
    assert all(isinstance(text, str) and text.strip() for text in data["network"].values())


def test_german_texts_are_translated() -> None:
    en, de = _load_yaml("translations/en.yaml"), _load_yaml("translations/de.yaml")
    for key, entry in de["configuration"].items():
        assert entry["name"] != en["configuration"][key]["name"], key
        assert entry["description"] != en["configuration"][key]["description"], key
    assert de["network"] != en["network"]


# ---------------------------------------------------------------- run.sh


def test_run_sh_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "run.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_sh_runs_under_s6_with_bashio() -> None:
    first = (ROOT / "run.sh").read_text(encoding="utf-8").splitlines()[0]
    assert first == "#!/usr/bin/with-contenv bashio"


# Stand-ins for the bashio functions run.sh calls: options from $ADDON_CONFIG, the
# Supervisor's MQTT service from $STUB_MQTT_SERVICE (a JSON file; unset = not available).
BASHIO_STUB: Final = r"""
_stub_field() {
    "${STUB_PYTHON}" -c 'import json, sys
value = json.load(open(sys.argv[1])).get(sys.argv[2])
if isinstance(value, bool):
    value = str(value).lower()
print("null" if value is None else value, end="")' "$1" "$2"
}
bashio::config() { _stub_field "${ADDON_CONFIG}" "$1"; }
bashio::config.has_value() {
    local value
    value="$(bashio::config "$1")"
    [[ -n "${value}" && "${value}" != "null" ]]
}
bashio::services.available() { [[ -n "${STUB_MQTT_SERVICE:-}" ]]; }
bashio::services() { _stub_field "${STUB_MQTT_SERVICE}" "$2"; }
bashio::var.has_value() { [[ -n "$1" ]]; }
bashio::var.true() { [[ "$1" == "true" ]]; }
bashio::log.info() { printf 'INFO: %s\n' "$*" >&2; }
bashio::log.warning() { printf 'WARNING: %s\n' "$*" >&2; }
"""

SUPERVISOR_MQTT: Final = {
    "host": "core-mosquitto",
    "port": 1883,
    "username": "addons",
    "password": "s3cret",
    "ssl": False,
}


def _run_start_script(
    tmp_path: Path,
    options: dict[str, Any] | None,
    mqtt_service: dict[str, Any] | None,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, str], str]:
    """Run run.sh under stub bashio; return the ANIWORLD_* environment python3 got, and argv."""
    bash = require_tool("bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python = bin_dir / "python3"
    fake_python.write_text(
        '#!/bin/sh\necho "ARGV $*"\nenv | grep "^ANIWORLD_" | sort\n', encoding="utf-8"
    )
    fake_python.chmod(0o755)
    stub = tmp_path / "bashio_stub.sh"
    stub.write_text(BASHIO_STUB, encoding="utf-8")
    options_file = tmp_path / "options.json"
    if options is not None:
        options_file.write_text(json.dumps(options), encoding="utf-8")
    environ = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "ADDON_CONFIG": str(options_file),
        "STUB_PYTHON": sys.executable,
        **(env or {}),
    }
    if mqtt_service is not None:
        service_file = tmp_path / "mqtt.json"
        service_file.write_text(json.dumps(mqtt_service), encoding="utf-8")
        environ["STUB_MQTT_SERVICE"] = str(service_file)
    # What bashio does: strict mode, its library, then the script.
    script = 'set -o errexit -o errtrace -o nounset -o pipefail; source "$1"; source "$2"'
    result = subprocess.run(
        [bash, "-c", script, "run.sh", str(stub), str(ROOT / "run.sh")],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ARGV ")
    exported = dict(line.split("=", 1) for line in lines[1:])
    return exported, lines[0].removeprefix("ARGV ")


ADDON_OPTIONS: Final = {"library_path": "/media/anime", "log_level": "info"}


def test_run_sh_passes_options_and_leaves_the_supervisors_broker_to_the_service(
    tmp_path: Path,
) -> None:
    # Passed on as host, port and login, the broker lost the Supervisor's TLS flag: the
    # service connected in plain text to a TLS port. The service asks the Supervisor itself.
    exported, argv = _run_start_script(tmp_path, ADDON_OPTIONS, {**SUPERVISOR_MQTT, "ssl": True})
    assert shlex.split(argv) == ["-m", "aniworld_addon", "serve"]
    assert exported == {
        "ANIWORLD_DATA_PATH": "/data",
        "ANIWORLD_LIBRARY_PATH": "/media/anime",
        "ANIWORLD_LOG_LEVEL": "info",
    }


@pytest.mark.parametrize(
    "override",
    [
        {"mqtt_host": "broker.lan", "mqtt_port": 8883},
        {"mqtt_username": "me", "mqtt_password": "pw"},  # the service adds the host itself
    ],
)
def test_run_sh_leaves_mqtt_overrides_to_the_service(
    tmp_path: Path, override: dict[str, Any]
) -> None:
    exported, _ = _run_start_script(tmp_path, {**ADDON_OPTIONS, **override}, SUPERVISOR_MQTT)
    assert not [name for name in exported if name.startswith("ANIWORLD_MQTT_")]


def test_run_sh_without_a_broker_exports_none(tmp_path: Path) -> None:
    exported, _ = _run_start_script(tmp_path, ADDON_OPTIONS, None)
    assert not [name for name in exported if name.startswith("ANIWORLD_MQTT_")]


def test_run_sh_keeps_the_environment_over_options(tmp_path: Path) -> None:
    env = {"ANIWORLD_LIBRARY_PATH": "/share/anime", "ANIWORLD_DATA_PATH": "/srv/aniworld"}
    exported, _ = _run_start_script(tmp_path, ADDON_OPTIONS, None, env)
    assert exported["ANIWORLD_LIBRARY_PATH"] == "/share/anime"
    assert exported["ANIWORLD_DATA_PATH"] == "/srv/aniworld"


def test_run_sh_in_a_plain_container_only_starts_the_service(tmp_path: Path) -> None:
    exported, argv = _run_start_script(tmp_path, None, None)
    assert exported == {"ANIWORLD_DATA_PATH": "/data"}
    assert shlex.split(argv) == ["-m", "aniworld_addon", "serve"]


# ---------------------------------------------------------------- Dockerfile


def _dockerfile_text() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _dockerfile_instructions() -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", _dockerfile_text())
    return [
        " ".join(line.split())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_builds_from_the_supervisors_base_image() -> None:
    instructions = _dockerfile_instructions()
    first_from = next(i for i, line in enumerate(instructions) if line.startswith("FROM "))
    assert any(line.startswith("ARG BUILD_FROM") for line in instructions[:first_from])
    assert instructions[first_from] in ("FROM $BUILD_FROM", "FROM ${BUILD_FROM}")


def test_dockerfile_installs_ffmpeg_the_package_and_run_sh() -> None:
    instructions = _dockerfile_instructions()
    assert any(re.match(r"RUN apk add --no-cache .*\bffmpeg\b", line) for line in instructions)
    assert any("pip install --no-cache-dir ." in line for line in instructions)
    assert any(line.startswith("COPY run.sh ") for line in instructions)
    assert instructions[-1] == 'CMD ["/run.sh"]'


def test_dockerfile_builds_the_c_listing_and_leaves_no_compiler() -> None:
    instructions = _dockerfile_instructions()
    copy = next(line for line in instructions if line.startswith("COPY pyproject.toml"))
    assert "setup.py" in copy.split()  # it declares library/_folders.c
    (install,) = [line for line in instructions if "pip install --no-cache-dir ." in line]
    assert re.search(r"apk add --no-cache --virtual (\S+) gcc musl-dev .*apk del \1", install)


def test_a_wheel_of_the_package_holds_the_c_listing(tmp_path: Path) -> None:
    # What pip install . (the Dockerfile's, a user's) builds: the module and its stub.
    require_tool("cc")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("aniworld_addon-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(re.fullmatch(r"aniworld_addon/library/_folders\..*\.so", n) for n in names)
    assert "aniworld_addon/library/_folders.pyi" in names


def test_dockerfile_healthcheck_calls_health() -> None:
    checks = [line for line in _dockerfile_instructions() if line.startswith("HEALTHCHECK ")]
    assert len(checks) == 1
    assert "127.0.0.1:" in checks[0]
    assert "8100" in checks[0]  # the add-on's direct port: ingress refuses everyone else
    assert "/health" in checks[0]


# ---------------------------------------------------------------- AppArmor and images


def test_apparmor_profile_is_the_one_the_supervisor_expects(config: dict[str, Any]) -> None:
    lines = (ROOT / "apparmor.txt").read_text(encoding="utf-8").splitlines()
    names = [m.group(1) for line in lines if (m := SUPERVISOR_PROFILE_RE.match(line))]
    assert names == [config["slug"]]


def _png_size(name: str) -> tuple[int, int]:
    data = (ROOT / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{name} is not a PNG"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert (length, chunk) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_icon_is_128_square() -> None:
    assert _png_size("icon.png") == (128, 128)


def test_logo_is_a_wide_png() -> None:
    width, height = _png_size("logo.png")
    assert width > height


def test_the_repository_can_be_added_to_the_add_on_store() -> None:
    # The Supervisor refuses a Git repository without repository.yaml at its root ("not a
    # valid add-on repository"), and DOCS tells users to add it that way.
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text(encoding="utf-8"))
    assert isinstance(repository, dict) and repository["name"]
    assert set(repository) <= {"name", "url", "maintainer"}
