"""Deployment options: flag > environment > /data/options.json > default, loaded before the loop."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import voluptuous as vol

ADDON_OPTIONS_FILE: Final = Path("/data/options.json")
ENV_PREFIX: Final = "ANIWORLD_"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


class OptionsError(Exception):
    """An option has an invalid value; the message names the option and the problem."""


def _port(value: Any) -> int:
    """A port: a whole number (options.json may say 8099.0) or its ASCII digits as text.

    int() would have made 1883.5 port 1883 and true port 1.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 1 <= value <= 65535:
        raise vol.Invalid("must be a port number between 1 and 65535")
    return value


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _user_agent(value: Any) -> str | None:
    """A User-Agent header value, or None for the built-in one."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not text or len(text) > 300 or not all(" " <= c <= "~" for c in text):
        raise vol.Invalid("must be printable ASCII on one line, at most 300 characters")
    return text


OPTIONS_SCHEMA: Final = vol.Schema(
    {
        vol.Required("data_path"): vol.All(str, vol.Length(min=1)),
        vol.Required("library_path"): vol.All(str, vol.Length(min=1)),
        vol.Required("host"): vol.All(str, vol.Length(min=1)),
        vol.Required("port"): _port,
        vol.Required("log_level"): vol.All(vol.Lower, vol.In(LOG_LEVELS)),
        vol.Required("mqtt_host"): _optional_str,
        vol.Required("mqtt_port"): _port,
        vol.Required("mqtt_username"): _optional_str,
        vol.Required("mqtt_password"): _optional_str,
        vol.Required("direct_port"): _port,
        vol.Required("ingress_address"): vol.All(str, vol.Length(min=1)),
        vol.Required("user_agent"): _user_agent,
    }
)


@dataclass(slots=True, frozen=True)
class Options:
    """How this process is deployed (paths, listener, broker); app settings live in config.json."""

    data_path: Path = Path("data")
    library_path: Path = Path("library")
    host: str = "0.0.0.0"  # noqa: S104 - the add-on and the container must listen on all interfaces
    port: int = 8099
    log_level: str = "info"
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    # Add-on mode only: `port` is the ingress listener (the Supervisor alone may connect);
    # `direct_port` serves everyone else with normal authentication.
    direct_port: int = 8100
    ingress_address: str = "172.30.32.2"
    # What the provider sites are told this client is (SITE.md: honest and configurable);
    # None: AniWorldAddon/<version> with the project's address.
    user_agent: str | None = None
    # Not user options: cost of bcrypt (tests lower it) and the add-on flag.
    bcrypt_rounds: int = 12
    addon: bool = False
    # The options given as flags on this command line (a variable or options.json is the
    # deployment's, shared with the service; a flag is what this one run was asked).
    given: frozenset[str] = frozenset()


_USER_OPTIONS: Final = tuple(str(key) for key in OPTIONS_SCHEMA.schema)


def _defaults() -> dict[str, Any]:
    defaults = Options()
    return {name: getattr(defaults, name) for name in _USER_OPTIONS}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in _USER_OPTIONS:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            found[name] = environ[key]
    return found


def _from_options_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OptionsError(f"{path}: cannot be read as JSON ({err})") from err
    if not isinstance(raw, dict):
        raise OptionsError(f"{path}: must hold a JSON object")
    # The add-on's options.json may hold keys for other parts (run.sh); keep only ours.
    return {name: raw[name] for name in _USER_OPTIONS if name in raw}


def build_parser(*, absent: Any = None) -> argparse.ArgumentParser:
    """The shared option flags; subcommands add their own arguments on top.

    absent is a flag's value when it is not given: a subcommand's copy of the flags passes
    argparse.SUPPRESS, or its absent flags would overwrite those given before the command.
    """
    parser = argparse.ArgumentParser(add_help=False)
    defaults = _defaults()
    for name in _USER_OPTIONS:
        default = "none" if defaults[name] is None else defaults[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=absent,
            metavar=_METAVARS.get(name, name.split("_")[-1].upper()),
            help=f"{_HELP[name]} (default: {default}; or ${ENV_PREFIX}{name.upper()})",
        )
    return parser


_HELP: Final = {
    "data_path": "settings, database, logs and backups",
    "library_path": "the anime library (a command uses the one its data were scanned in)",
    "host": "address to listen on",
    "port": "port to listen on (in the add-on: the ingress port)",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "mqtt_host": "MQTT broker (in the add-on: Home Assistant's when empty)",
    "mqtt_port": "MQTT broker port",
    "mqtt_username": "MQTT login",
    "mqtt_password": "MQTT password",
    "direct_port": "add-on only: the port for everyone but the Supervisor",
    "ingress_address": "add-on only: the address the ingress port answers",
    "user_agent": "the User-Agent sent to the provider sites (none: AniWorldAddon/<version>)",
}
_METAVARS: Final = {
    "data_path": "PATH",
    "library_path": "PATH",
    "log_level": "LEVEL",
    "user_agent": "TEXT",
}


def load_options(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    options_file: Path = ADDON_OPTIONS_FILE,
) -> Options:
    """Merge the sources by precedence and validate; raise OptionsError naming the bad option."""
    env = os.environ if environ is None else environ
    merged = _defaults()
    sources = (
        _from_options_file(options_file),
        _from_env(env),
        {k: v for k, v in flags.items() if k in _USER_OPTIONS and v is not None},
    )
    for source in sources:
        merged.update(source)
    merged = {k: (str(v) if isinstance(v, Path) else v) for k, v in merged.items()}
    try:
        valid = OPTIONS_SCHEMA(merged)
    except vol.MultipleInvalid as err:
        first = err.errors[0]
        name = ".".join(str(p) for p in first.path) or "options"
        raise OptionsError(f"invalid option {name!r}: {first.msg}") from err
    valid["data_path"] = Path(valid["data_path"]).expanduser().absolute()
    valid["library_path"] = Path(valid["library_path"]).expanduser().absolute()
    addon = bool(env.get("SUPERVISOR_TOKEN"))
    given = frozenset(sources[-1])
    return Options(**valid, addon=addon, given=given)


def option_names() -> Sequence[str]:
    """Names of the user-facing options (CLI flags, ANIWORLD_* variables, options.json keys)."""
    return _USER_OPTIONS
