"""The one-shot commands against a real library and the test site."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from pathlib import Path

import pytest

from aniworld_addon import cli
from aniworld_addon.options import Options, OptionsError
from aniworld_addon.settings_schema import DEFAULT_CONFIG
from tests.site import Fault, MediaSet
from tests.site.plugin import RunningSite


@pytest.fixture
def configured(options: Options, provider_site: RunningSite) -> Options:
    """A data dir whose settings point at the test site, and a library with one series."""
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["providers"]["aniworld"]["url"] = provider_site.base_url
    config["providers"]["sto"]["enabled"] = False
    config["providers"]["ytdlp"]["enabled"] = False
    config["downloads"]["min_free_space_mb"] = 0
    options.data_path.mkdir(parents=True)
    (options.data_path / "config.json").write_text(json.dumps(config))
    folder = options.library_path / "Sky Lantern"
    folder.mkdir(parents=True)
    (folder / "key").write_text("sky-lantern")
    (folder / "Sky Lantern S01E01.mkv").write_bytes(b"v")
    return options


async def test_scan_prints_each_series(configured: Options) -> None:
    out = io.StringIO()
    assert await cli.scan(configured, out) == 0
    text = out.getvalue()
    assert "1/1 Sky Lantern" in text  # plain progress lines when not a terminal
    row = next(line for line in text.splitlines() if line.startswith("Sky Lantern"))
    assert row.split()[-2:] == ["1", "3"]  # local, missing
    assert "1 series, 3 missing episodes, 0 errors, 0 folders not read completely" in text


async def test_scan_names_what_it_could_not_read(configured: Options) -> None:
    (configured.library_path / "Sky Lantern" / "key").write_text("Not A Slug")
    out = io.StringIO()
    assert await cli.scan(configured, out) == 0
    text = out.getvalue()
    row = next(line for line in text.splitlines() if line.startswith("Sky Lantern"))
    assert row.split()[2:] == ["(unmatched)", "1", "0", "scan_error"]
    assert "not read completely: Sky Lantern: key must hold only an aniworld series slug" in text
    assert "0 errors, 1 folders not read completely" in text


async def test_search_prints_hits(configured: Options) -> None:
    out = io.StringIO()
    assert await cli.search(configured, "kaiju", out) == 0
    assert "kaiju-academy" in out.getvalue()


async def test_download_one_episode_then_queue(configured: Options, media_set: MediaSet) -> None:
    await cli.scan(configured, io.StringIO())
    out = io.StringIO()
    code = await cli.download(
        configured, "sky-lantern", season=1, episode=2, missing=False, out=out
    )
    assert code == 0, out.getvalue()
    line = next(x for x in out.getvalue().splitlines() if x.startswith("S01E02: "))
    assert Path(line.split(": ", 1)[1]).read_bytes() == media_set.mp4.read_bytes()
    listing = io.StringIO()
    assert await cli.show_queue(configured, listing) == 0
    head, *rows = listing.getvalue().splitlines()
    assert head == "queue running: 0 pending, 0 downloading, 1 completed, 0 failed"
    assert any("sky-lantern" in row and "completed" in row and "100%" in row for row in rows)


async def test_a_scan_whose_every_series_failed_exits_1_saying_why(
    configured: Options, provider_site: RunningSite, capsys: pytest.CaptureFixture[str]
) -> None:
    provider_site.control.set_fault(r"^/anime/stream/", Fault.CHALLENGE_CLOUDFLARE)
    out = io.StringIO()
    assert await cli.scan(configured, out) == 1
    assert "error: Sky Lantern: " in out.getvalue()
    assert await cli.search(configured, "no such series at all", io.StringIO()) == 0
    assert "nothing found for 'no such series at all'" in capsys.readouterr().err


async def test_a_command_keeps_to_the_library_its_data_were_scanned_in(
    configured: Options, tmp_path: Path
) -> None:
    # `scan` run from another folder scanned its ./library and replaced the service's
    # library with that; an explicit --library-path was ignored when the panel set one.
    given = dataclasses.replace(configured, given=frozenset({"library_path"}))
    assert await cli.scan(given, io.StringIO()) == 0
    elsewhere = tmp_path / "elsewhere" / "library"
    (elsewhere / "Other Show").mkdir(parents=True)

    out = io.StringIO()
    assert await cli.scan(dataclasses.replace(configured, library_path=elsewhere), out) == 0
    assert "Sky Lantern" in out.getvalue() and "Other Show" not in out.getvalue()

    with pytest.raises(OptionsError, match="last scanned in"):
        await cli.scan(dataclasses.replace(given, library_path=elsewhere), io.StringIO())

    # Set in the panel, the library folder is that one; a flag naming another is refused.
    config = json.loads((configured.data_path / "config.json").read_text())
    config["library_path"] = str(elsewhere)
    (configured.data_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(OptionsError, match="set in the panel"):
        await cli.scan(given, io.StringIO())
    out = io.StringIO()
    assert await cli.scan(configured, out) == 0
    assert "Other Show" in out.getvalue()
