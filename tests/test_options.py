"""Deployment options: precedence flag > env > options.json > default, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aniworld_addon.__main__ import main
from aniworld_addon.options import OptionsError, load_options
from tests.integrations.conftest import free_port


def test_defaults_need_nothing(tmp_path: Path) -> None:
    options = load_options({}, environ={}, options_file=tmp_path / "none.json")
    assert (options.host, options.port, options.log_level) == ("0.0.0.0", 8099, "info")
    assert options.data_path == Path("data").absolute()
    assert options.library_path == Path("library").absolute()
    assert options.addon is False


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    file = tmp_path / "options.json"
    file.write_text(
        json.dumps(
            {"port": 7000, "log_level": "debug", "host": "10.0.0.1", "other_addon_key": True}
        )
    )
    env = {"ANIWORLD_PORT": "7001", "ANIWORLD_LOG_LEVEL": "warning"}
    options = load_options({"port": "7002"}, environ=env, options_file=file)
    assert options.port == 7002  # flag
    assert options.log_level == "warning"  # env over file
    assert options.host == "10.0.0.1"  # file over default
    assert options.library_path == Path("library").absolute()  # default
    assert options.given == {"port"}  # flags only: the deployment's sources are not this run's


def test_supervisor_token_means_addon_mode(tmp_path: Path) -> None:
    options = load_options({}, environ={"SUPERVISOR_TOKEN": "x"}, options_file=tmp_path / "n")
    assert options.addon is True


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"port": "99999"}, {}, "'port'"),
        ({}, {"ANIWORLD_PORT": "eighty"}, "'port'"),
        ({"log_level": "loud"}, {}, "'log_level'"),
    ],
)
def test_invalid_options_name_the_option(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(OptionsError, match=expected):
        load_options(flags, environ=env, options_file=tmp_path / "none.json")


@pytest.mark.parametrize("value", [1883.5, True, "1883.0", " 1883 x", "١٨٨٣"])
def test_a_port_that_is_no_whole_number_is_refused_not_rounded(
    tmp_path: Path, value: object
) -> None:
    file = tmp_path / "options.json"
    file.write_text(json.dumps({"mqtt_port": value}))
    with pytest.raises(OptionsError, match="'mqtt_port'"):
        load_options({}, environ={}, options_file=file)


def test_a_port_written_as_a_whole_float_or_text_is_read(tmp_path: Path) -> None:
    file = tmp_path / "options.json"
    file.write_text(json.dumps({"mqtt_port": 1884.0, "port": " 7000 "}))
    options = load_options({}, environ={"ANIWORLD_DIRECT_PORT": "7001"}, options_file=file)
    assert (options.mqtt_port, options.port, options.direct_port) == (1884, 7000, 7001)


def test_cli_exits_2_with_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "port" in err[0]
    assert sys.version_info >= (3, 11)


def test_a_config_from_a_newer_version_stops_start_up_with_one_line(tmp_path: Path) -> None:
    # Refusing to downgrade the file is right; a traceback to say so was not.
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text(json.dumps({"version": 99}))
    flags = ["--data-path", str(data), "--library-path", str(tmp_path / "lib")]
    address = ["--host", "127.0.0.1", "--port", str(free_port())]
    run = subprocess.run(
        [sys.executable, "-m", "aniworld_addon", "serve", *flags, *address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "aniworld_addon: cannot start: config.json has version 99, newer than this add-on"
        " supports (2)"
    )
    assert "Traceback" not in run.stderr
