"""The library end to end: real folders, the test site over loopback, the REST API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientWebSocketResponse

from aniworld_addon import keys
from aniworld_addon.app import create_app
from aniworld_addon.const import DB_FILENAME
from aniworld_addon.db import open_database
from aniworld_addon.events import Event, EventType
from aniworld_addon.library import service as service_module
from aniworld_addon.library.store import LibraryStore
from aniworld_addon.options import Options
from aniworld_addon.providers.aniworld import AniworldProvider
from tests.library.listing import refuse_listing
from tests.providers.conftest import past_refusal_waits
from tests.site import Fault
from tests.site.plugin import RunningSite

from .conftest import PASSWORD, AiohttpClient, Authed


def _series_folder(
    root: Path,
    name: str,
    sidecar: dict[str, Any] | None,
    files: list[str],
    key_file: str | None = None,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if sidecar is not None:
        (folder / ".aniworld.json").write_text(json.dumps(sidecar))
    if key_file is not None:
        (folder / "key").write_text(key_file + "\n")
    for relative in files:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"video")
    return folder


@pytest.fixture
async def library(authed: Authed, provider_site: RunningSite, options: Options) -> Authed:
    """The service pointed at the test site, with a small library on disk."""
    response = await authed.client.put(
        "/api/config",
        json={"providers": provider_site.providers_config()},
        headers=authed.headers,
    )
    assert response.status == 200, await response.text()
    root = options.library_path
    _series_folder(
        root,
        "Kaiju Academy (2012)",
        {"provider": "aniworld", "key": "kaiju-academy"},
        [
            "Season 01/Kaiju Academy - S01E01 - Pilot.mkv",
            "S00E01.mp4",
            "Season 01/Kaiju Academy - S01E02.mkv.part",
            "notes.txt",
        ],
    )
    _series_folder(root, "Sky Lantern", None, ["sky lantern s1e2.MKV"], key_file="sky-lantern")
    _series_folder(root, "Unknown Show", None, ["Unknown Show S01E01.avi"])
    return authed


async def _rescan(lib: Authed) -> dict[str, Any]:
    response = await lib.client.post("/api/anime/rescan", headers=lib.headers)
    assert response.status == 202
    op_id = (await response.json())["operation_id"]
    await lib.client.app[keys.OPERATIONS].wait(op_id)
    result = await (await lib.client.get(f"/api/operations/{op_id}", headers=lib.headers)).json()
    assert result["status"] == "completed", result
    return result


async def _get(lib: Authed, path: str) -> Any:
    response = await lib.client.get(path, headers=lib.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_rescan_finds_local_and_missing_episodes(library: Authed) -> None:
    await _rescan(library)
    listing = await _get(library, "/api/anime?sort_key=folder")
    assert listing["total_records"] == 3
    by_folder = {r["folder"]: r for r in listing["records"]}
    kaiju = by_folder["Kaiju Academy (2012)"]
    # Provider: 2 films + 3 + 2 episodes; local: S01E01 and film 1 (the .part never counts).
    assert (kaiju["key"], kaiju["local_count"], kaiju["missing_count"]) == ("kaiju-academy", 2, 5)
    assert kaiju["name"] == "Kaiju Academy" and kaiju["year"] == 2012
    sky = by_folder["Sky Lantern"]
    assert (sky["key"], sky["local_count"], sky["missing_count"]) == ("sky-lantern", 1, 3)
    unknown = by_folder["Unknown Show"]
    assert unknown["key"] is None and unknown["local_count"] == 1
    assert set(listing["records"][0]) >= {
        "key",
        "provider",
        "name",
        "year",
        "folder",
        "local_count",
        "missing_count",
    }

    detail = await _get(library, "/api/anime/kaiju-academy")
    states = {(e["season"], e["episode"]): e["state"] for e in detail["episodes"]}
    assert states == {
        (0, 1): "local",
        (0, 2): "missing",
        (1, 1): "local",
        (1, 2): "missing",
        (1, 3): "missing",
        (2, 1): "missing",
        (2, 2): "missing",
    }

    missing = await _get(library, "/api/anime?filter=missing")
    assert {r["folder"] for r in missing["records"]} == {"Kaiju Academy (2012)", "Sky Lantern"}
    unmatched = await _get(library, "/api/anime?filter=unmatched")
    assert [r["folder"] for r in unmatched["records"]] == ["Unknown Show"]
    searched = await _get(library, "/api/anime?q=kaiju")
    for control in ("%00zzzz", "kaiju%00zzz", "a%09b"):  # a NUL cut the LIKE pattern short
        refused = await library.client.get(f"/api/anime?q={control}", headers=library.headers)
        assert refused.status == 400, control
    assert searched["total_records"] == 1
    paged = await _get(library, "/api/anime?page=2&page_size=2&sort_key=folder")
    assert paged["page"] == 2 and len(paged["records"]) == 1 and paged["total_records"] == 3


async def test_search_ignores_case_and_accents_beyond_ascii(
    library: Authed, options: Options
) -> None:
    # SQLite's LIKE folds ASCII letters only: "ün" never found "Ünïcödé Straße".
    for folder in ("Ünïcödé Straße", "50% Off", "a_b"):
        (options.library_path / folder).mkdir()
    await _rescan(library)

    async def found(query: str) -> list[str]:
        page = await _get(library, "/api/anime?" + urlencode({"q": query, "sort_key": "folder"}))
        return [r["folder"] for r in page["records"]]

    for query in ("ünï", "ÜNÏ", "unicode", "STRASSE", "straße"):
        assert await found(query) == ["Ünïcödé Straße"], query
    assert await found("%") == ["50% Off"]  # a wildcard to LIKE, a character here
    assert await found("_") == ["a_b"]


async def test_rescan_costs_series_plus_season_pages_then_nothing(
    library: Authed, provider_site: RunningSite
) -> None:
    control = provider_site.control
    control.reset()
    await _rescan(library)
    # kaiju-academy: series + films + 2 seasons; sky-lantern: series + 1 season.
    assert control.count("series") == 2
    assert control.count("season") == 4
    assert control.count("episode") == 0
    control.reset()
    await _rescan(library)
    assert sum(control.requests.values()) == 0


async def test_a_new_file_on_disk_turns_an_episode_local(library: Authed, options: Options) -> None:
    await _rescan(library)
    (options.library_path / "Sky Lantern" / "Sky Lantern S01E04.mkv").write_bytes(b"v")
    await _rescan(library)
    sky = await _get(library, "/api/anime/sky-lantern")
    assert {(e["episode"], e["state"]) for e in sky["episodes"]} == {
        (1, "missing"),
        (2, "local"),
        (3, "missing"),
        (4, "local"),
    }


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.CHALLENGE_DDOS_GUARD, "provider_blocked"),
        (Fault.CHALLENGE_CLOUDFLARE, "provider_blocked"),
        (Fault.RATE_LIMITED, "provider_rate_limited"),
        (Fault.SERVER_ERROR, "provider_unavailable"),
        (Fault.MALFORMED, "provider_parse_error"),
        (Fault.NOT_FOUND, "provider_not_found"),
    ],
)
async def test_a_failing_series_is_marked_and_the_scan_goes_on(
    library: Authed, provider_site: RunningSite, fault: Fault, code: str
) -> None:
    provider_site.control.set_fault(r"^/anime/stream/sky-lantern", fault)
    result = await _rescan(library)
    health = await (await library.client.get("/health")).json()
    assert health["checks"]["provider"]["status"] == "ok"  # one series failed, one was read
    assert "1 failed" in health["checks"]["provider"]["message"]
    assert [e["key"] for e in result["result"]["errors"]] == ["sky-lantern"]
    sky = await _get(library, "/api/anime/sky-lantern")
    assert sky["error"]["code"] == code
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["error"] is None and kaiju["missing_count"] == 5
    provider_site.control.clear_faults()
    if code in ("provider_blocked", "provider_rate_limited"):
        # The site said to wait (Retry-After, else a wait of ours): until then the series
        # keeps its error and its page is not asked for again.
        provider_site.control.reset()
        await _rescan(library)
        assert (await _get(library, "/api/anime/sky-lantern"))["error"]["code"] == code
        assert sum(provider_site.control.requests.values()) == 0
        aniworld = library.client.app[keys.PROVIDERS].registry.get("aniworld")
        assert isinstance(aniworld, AniworldProvider)
        past_refusal_waits(aniworld.http)
    await _rescan(library)
    assert (await _get(library, "/api/anime/sky-lantern"))["error"] is None


@pytest.mark.parametrize("page", ["sky-lantern$", "sky-lantern/staffel-1$"])
async def test_a_page_cut_off_at_http_200_keeps_the_known_episodes(
    library: Authed, provider_site: RunningSite, page: str
) -> None:
    # A season page that ends half-way parsed as a shorter table, and the sync deleted the
    # episodes it no longer listed.
    await _rescan(library)
    before = await _get(library, "/api/anime/sky-lantern")
    assert len(before["episodes"]) > 1
    library.client.app[keys.PROVIDERS].registry.get("aniworld").invalidate("sky-lantern")
    provider_site.control.set_fault(page, Fault.TRUNCATED)
    result = await _rescan(library)
    assert [e["code"] for e in result["result"]["errors"]] == ["provider_parse_error"]
    after = await _get(library, "/api/anime/sky-lantern")
    assert "cut off" in after["error"]["message"]
    assert {k: v for k, v in after.items() if k != "error"} == {
        k: v for k, v in before.items() if k != "error"
    }


async def test_an_unexpected_failure_for_one_series_is_its_error_not_the_scans(
    library: Authed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A library's surprise (a bare ValueError from yt-dlp for an odd key) escaped the refresh
    # and the TaskGroup cancelled every other: the whole rescan failed.
    provider = library.client.app[keys.PROVIDERS].registry.get("aniworld")
    real = provider.all_episodes

    async def surprising(key: str) -> Any:
        if key == "sky-lantern":
            raise ValueError("Invalid IPv6 URL")
        return await real(key)

    monkeypatch.setattr(provider, "all_episodes", surprising)
    result = await _rescan(library)  # completed
    assert result["result"]["errors"] == [
        {
            "folder": "Sky Lantern",
            "key": "sky-lantern",
            "code": "internal_error",
            "message": "ValueError: Invalid IPv6 URL",
        }
    ]
    assert (await _get(library, "/api/anime/kaiju-academy"))["missing_count"] == 5


async def test_folders_the_walk_cannot_read_are_named_and_the_rest_is_scanned(
    library: Authed, options: Options
) -> None:
    # A name in bytes that are not UTF-8 (an old Latin-1 share) and a sidecar escaping a lone
    # surrogate: neither can be stored, and once each failed every rescan of the library.
    raw = os.fsencode(options.library_path)
    os.mkdir(raw + b"/Caf\xe9 Show")
    open(raw + b"/Caf\xe9 Show/Caf\xe9 S01E01.mkv", "wb").close()
    open(raw + b"/Kaiju Academy (2012)/Kaiju Academy - S01E02 \xe9.mkv", "wb").close()
    broken = {"provider": "aniworld", "key": "broken", "name": "Odd \ud800"}
    _series_folder(options.library_path, "Odd", broken, ["Odd S01E01.mkv"])
    result = (await _rescan(library))["result"]
    assert result["scan_errors"] == [
        {
            "folder": "Caf\ufffd Show",
            "message": "the folder name is not valid UTF-8: rename it to have it scanned",
        },
        {
            "folder": "Kaiju Academy (2012)",
            "message": "names that are not valid UTF-8 were left out (rename them): "
            "'Kaiju Academy - S01E02 \ufffd.mkv'",
        },
        {
            "folder": "Odd",
            "message": '.aniworld.json is not valid: "name" and "languages" '
            "must be text (a lone surrogate is not)",
        },
    ]
    listing = await _get(library, "/api/anime?sort_key=folder")
    by_folder = {r["folder"]: r for r in listing["records"]}
    assert sorted(by_folder) == ["Kaiju Academy (2012)", "Odd", "Sky Lantern", "Unknown Show"]
    assert by_folder["Odd"]["key"] is None and by_folder["Odd"]["local_count"] == 1
    assert by_folder["Odd"]["scan_error"] == result["scan_errors"][2]["message"]
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["scan_error"] == result["scan_errors"][1]["message"]
    assert kaiju["error"] is None and kaiju["local_count"] == 2  # the provider refresh went on
    assert by_folder["Sky Lantern"]["scan_error"] is None
    page = await library.client.get("/", headers=library.headers)  # the panel says it too
    html = await page.text()
    assert page.status == 200 and 'id="scan-errors"' in html and "Caf\ufffd Show" in html
    assert html.count("data-scan-error") == 2  # Kaiju Academy and Odd
    # Renamed, the file is found and the series' scan error is gone.
    os.rename(
        raw + b"/Kaiju Academy (2012)/Kaiju Academy - S01E02 \xe9.mkv",
        raw + b"/Kaiju Academy (2012)/Kaiju Academy - S01E02.mkv",
    )
    result = (await _rescan(library))["result"]
    assert [e["folder"] for e in result["scan_errors"]] == ["Caf\ufffd Show", "Odd"]
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["scan_error"] is None and kaiju["local_count"] == 3


async def test_a_rescan_result_lists_a_hundred_scan_errors_and_counts_them_all(
    library: Authed, options: Options
) -> None:
    # A library of thousands of broken folders made a result (stored, and sent to every
    # listener) as large as the library; each series keeps its own error on its record.
    for n in range(105):
        folder = options.library_path / f"Broken {n:03d}"
        folder.mkdir()
        (folder / ".aniworld.json").write_text("{not json")
    result = (await _rescan(library))["result"]
    assert result["scan_error_count"] == 105 and len(result["scan_errors"]) == 100
    assert result["scan_errors"][0]["folder"] == "Broken 000"
    assert result["error_count"] == len(result["errors"])
    last = await _get(library, "/api/anime?sort_key=folder&page_size=200&search=Broken 104")
    assert "is not valid" in last["records"][0]["scan_error"]


async def test_two_folders_naming_one_series_and_a_moved_sidecar(
    library: Authed, options: Options
) -> None:
    root = options.library_path
    await _rescan(library)
    # A copied folder: the folder that held the series keeps it, the copy says why it has none.
    shutil.copytree(root / "Sky Lantern", root / "Sky Lantern (copy)")
    shutil.copytree(root / "Sky Lantern", root / "A Sky Lantern copy")  # first by name
    result = (await _rescan(library))["result"]
    by_folder = {r["folder"]: r for r in (await _get(library, "/api/anime"))["records"]}
    assert by_folder["Sky Lantern"]["key"] == "sky-lantern"
    for copy in ("Sky Lantern (copy)", "A Sky Lantern copy"):
        assert by_folder[copy]["key"] is None
        assert by_folder[copy]["scan_error"] == (
            "aniworld/sky-lantern already belongs to the folder 'Sky Lantern': remove this"
            " folder's sidecar or key file, or the other folder"
        )
    assert sorted(e["folder"] for e in result["scan_errors"]) == [
        "A Sky Lantern copy",
        "Sky Lantern (copy)",
    ]
    # Matching a copy to the series another folder holds is a conflict, not a crash.
    response = await library.client.post(
        "/api/anime/A%20Sky%20Lantern%20copy/match",
        json={"provider": "aniworld", "key": "sky-lantern"},
        headers=library.headers,
    )
    assert response.status == 409
    # The identity moves: its old folder lets go of it in the same rescan.
    shutil.rmtree(root / "Sky Lantern (copy)")
    shutil.rmtree(root / "A Sky Lantern copy")
    (root / "Sky Lantern" / "key").rename(root / "Unknown Show" / "key")
    await _rescan(library)
    by_folder = {r["folder"]: r for r in (await _get(library, "/api/anime"))["records"]}
    assert by_folder["Unknown Show"]["key"] == "sky-lantern"
    assert (
        by_folder["Sky Lantern"]["key"] is None and by_folder["Sky Lantern"]["scan_error"] is None
    )


async def test_an_unreadable_subfolder_keeps_its_episodes_local(
    library: Authed, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _rescan(library)
    assert (await _get(library, "/api/anime/kaiju-academy"))["local_count"] == 2
    refused = {str(options.library_path / "Kaiju Academy (2012)" / "Season 01")}
    refuse_listing(monkeypatch, refused)
    await _rescan(library)
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["scan_error"] == "cannot read Season 01/: Permission denied"
    states = {(e["season"], e["episode"]): e["state"] for e in kaiju["episodes"]}
    assert states[(1, 1)] == "local" and kaiju["local_count"] == 2  # not taken for gone
    # The series folder itself unreadable: it keeps its identity and its files too.
    refused.add(str(options.library_path / "Kaiju Academy (2012)"))
    await _rescan(library)
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["local_count"] == 2 and kaiju["scan_error"].startswith("cannot read the folder")
    refused.clear()
    await _rescan(library)
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["scan_error"] is None and kaiju["local_count"] == 2


async def test_an_empty_library_folder_is_not_taken_for_an_empty_library(
    library: Authed, options: Options
) -> None:
    # A share that is not mounted leaves an empty mount point: forgetting every series (and
    # its settings) on that word would be wrong; the rescan fails and says why.
    await _rescan(library)
    mounted = options.library_path.with_name("share")
    options.library_path.rename(mounted)
    options.library_path.mkdir()
    response = await library.client.post("/api/anime/rescan", headers=library.headers)
    op_id = (await response.json())["operation_id"]
    await library.client.app[keys.OPERATIONS].wait(op_id)
    result = await _get(library, f"/api/operations/{op_id}")
    assert result["status"] == "failed"
    assert result["error"]["code"] == "library_unavailable"
    assert "is empty, but the library knows 3 series" in result["error"]["message"]
    assert (await _get(library, "/api/anime"))["total_records"] == 3
    health = await (await library.client.get("/health")).json()
    assert health["checks"]["library"]["status"] == "error"
    assert "mounted" in health["checks"]["library"]["message"]
    response = await library.client.post(
        "/api/anime", json={"provider": "aniworld", "key": "kaiju-academy"}, headers=library.headers
    )
    assert response.status == 503 and not any(options.library_path.iterdir())
    options.library_path.rmdir()
    mounted.rename(options.library_path)
    await _rescan(library)
    health = await (await library.client.get("/health")).json()
    assert health["checks"]["library"]["status"] == "ok"
    assert (await _get(library, "/api/anime"))["total_records"] == 3


async def test_folders_and_keys_with_braces_reach_their_routes(
    library: Authed, options: Options
) -> None:
    # aiohttp's default {name} pattern excludes { and }: such a folder could never be matched.
    _series_folder(options.library_path, "Kaiju {2012}", None, ["Kaiju S01E01.mkv"])
    await _rescan(library)
    response = await library.client.post(
        "/api/anime/Kaiju%20%7B2012%7D/match",
        json={"provider": "aniworld", "key": "kaiju-academy"},
        headers=library.headers,
    )
    assert response.status == 409, await response.text()  # the fixture's folder holds it
    assert "Kaiju Academy (2012)" in (await response.json())["error"]["message"]
    missing = await library.client.get("/api/anime/a%7Bb%7D", headers=library.headers)
    assert missing.status == 404
    assert (await missing.json())["error"]["message"] == "no series 'a{b}' in the library"


async def test_a_folder_that_cannot_be_written_is_a_clear_error(
    library: Authed, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _rescan(library)
    (options.library_path / "Der letzte Sommer (2016)").write_text("a file in the way")
    response = await library.client.post(
        "/api/anime",
        json={"provider": "aniworld", "key": "der-letzte-sommer"},
        headers=library.headers,
    )
    assert response.status == 409, await response.text()
    assert (options.library_path / "Der letzte Sommer (2016)").read_text() == "a file in the way"
    (options.library_path / "Unknown Show" / ".aniworld.json").mkdir()  # a folder, not a file
    response = await library.client.post(
        "/api/anime/Unknown%20Show/match",
        json={"provider": "aniworld", "key": "der-letzte-sommer"},
        headers=library.headers,
    )
    assert response.status == 409, await response.text()
    (options.library_path / "Unknown Show" / ".aniworld.json").rmdir()

    def read_only(*args: Any, **kwargs: Any) -> Any:  # chmod would not stop a test run as root
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    response = await library.client.post(
        "/api/anime/Unknown%20Show/match",
        json={"provider": "aniworld", "key": "der-letzte-sommer"},
        headers=library.headers,
    )
    assert response.status == 503, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "library_not_writable" and "Permission denied" in error["message"]
    assert not (options.library_path / "Unknown Show" / ".aniworld.json").exists()


async def test_scan_events_reach_the_scan_room(library: Authed) -> None:
    ws: ClientWebSocketResponse = await library.client.ws_connect(
        "/ws/connect", headers=library.headers
    )
    assert (await ws.receive_json())["type"] == "connected"
    await ws.send_json({"action": "join", "room": "scan_progress"})
    assert (await ws.receive_json())["type"] == "joined"
    await _rescan(library)
    seen = []
    while not seen or seen[-1] != "scan_complete":
        seen.append((await ws.receive_json(timeout=10))["type"])
    assert seen[0] == "scan_started"
    assert seen.count("scan_progress") == 2
    await ws.close()


async def test_search_add_and_match(library: Authed, options: Options) -> None:
    client, headers = library.client, library.headers
    await _rescan(library)
    found = await client.post("/api/anime/search", json={"query": "rock"}, headers=headers)
    assert found.status == 200
    hits = await found.json()
    assert hits[0]["key"] == "rock-roll-heroes-reloaded"
    assert hits[0]["name"] == 'Rock & Roll "Heroes" <Reloaded>'
    added = await client.post(
        "/api/anime",
        json={"provider": "aniworld", "key": "rock-roll-heroes-reloaded"},
        headers=headers,
    )
    assert added.status == 201, await added.text()
    detail = await added.json()
    assert detail["missing_count"] == 2
    folder = options.library_path / detail["folder"]
    assert folder.is_dir() and folder.parent == options.library_path
    assert json.loads((folder / ".aniworld.json").read_text())["key"] == "rock-roll-heroes-reloaded"
    again = await client.post(
        "/api/anime",
        json={"provider": "aniworld", "key": "rock-roll-heroes-reloaded"},
        headers=headers,
    )
    assert again.status == 409

    matched = await client.post(
        "/api/anime/Unknown Show/match",
        json={"provider": "aniworld", "key": "der-letzte-sommer"},
        headers=headers,
    )
    assert matched.status == 200, await matched.text()
    body = await matched.json()
    assert body["key"] == "der-letzte-sommer" and body["folder"] == "Unknown Show"
    # The local S01E01 stays listed as local although the provider only has a film.
    assert {(e["season"], e["episode"], e["state"]) for e in body["episodes"]} == {
        (0, 1, "missing"),
        (1, 1, "local"),
    }
    unmatched = await _get(library, "/api/anime?filter=unmatched")
    assert unmatched["total_records"] == 0


async def test_bad_library_requests_get_clear_errors(library: Authed) -> None:
    client, headers = library.client, library.headers
    await _rescan(library)
    cases = [
        (client.get("/api/anime/nope", headers=headers), 404, "not_found"),
        (client.get("/api/anime?filter=weird", headers=headers), 400, "validation_error"),
        (client.get("/api/anime?page=0", headers=headers), 400, "validation_error"),
        (client.get("/api/anime?sort_key=x", headers=headers), 400, "validation_error"),
        (
            client.post("/api/anime/search", json={"query": ""}, headers=headers),
            400,
            "validation_error",
        ),
        (
            client.post(
                "/api/anime", json={"provider": "aniworld", "key": "no-such-show"}, headers=headers
            ),
            404,
            "provider_not_found",
        ),
        (
            client.post("/api/anime", json={"provider": "nope", "key": "x"}, headers=headers),
            404,
            "unknown_provider",
        ),
        (
            client.post(
                "/api/anime/No Folder/match",
                json={"provider": "aniworld", "key": "sky-lantern"},
                headers=headers,
            ),
            404,
            "not_found",
        ),
        (
            client.post(
                "/api/anime/Unknown Show/match",
                json={"provider": "aniworld", "key": "sky-lantern"},
                headers=headers,
            ),
            409,
            "conflict",
        ),
    ]
    for request, status, code in cases:
        response = await request
        assert response.status == status, await response.text()
        assert (await response.json())["error"]["code"] == code


async def test_a_folder_renamed_on_disk_keeps_its_series_settings_and_files(
    library: Authed, options: Options
) -> None:
    # The row was keyed by folder: deleted and made anew, the series lost its own language
    # order and upgrade switch, and every file was reported deleted.
    await _rescan(library)
    put = await library.client.put(
        "/api/anime/kaiju-academy/languages",
        json={"languages": ["English Sub"], "upgrade": True},
        headers=library.headers,
    )
    assert put.status == 200, await put.text()
    removed: list[Any] = []

    async def on_event(event: Any) -> None:
        if event.type is EventType.EPISODE_FILES_REMOVED:
            removed.append(event)

    library.client.app[keys.BUS].subscribe(on_event, name="removed")
    (options.library_path / "Kaiju Academy (2012)" / "S00E01.mp4").unlink()  # one really goes
    (options.library_path / "Kaiju Academy (2012)").rename(options.library_path / "Kaiju")
    await _rescan(library)
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert kaiju["folder"] == "Kaiju"
    assert (kaiju["languages"], kaiju["upgrade"]) == (["English Sub"], True)
    local = {(e["season"], e["episode"]) for e in kaiju["episodes"] if e["state"] == "local"}
    assert local == {(1, 1)}
    (gone,) = [file for event in removed for file in event.data["files"]]
    assert gone["path"].endswith("S00E01.mp4")  # only the file deleted, not every file


async def test_adding_never_takes_a_folder_that_names_another_series(
    library: Authed, options: Options
) -> None:
    # The folder the new series would get held a legacy key file of another series: the
    # sidecar written beside it outranked it, and that series left the library.
    folder = _series_folder(
        options.library_path,
        "Kaiju Academy (2012) x",
        None,
        [],
        key_file="rock-roll-heroes-reloaded",
    )
    folder.rename(options.library_path / "Rock & Roll Heroes")  # not yet scanned either
    (options.library_path / "Kaiju Academy (2012)" / ".aniworld.json").unlink()
    (options.library_path / "Kaiju Academy (2012)" / "key").write_text("sky-lantern\n")
    (options.library_path / "Sky Lantern" / "key").unlink()
    response = await library.client.post(
        "/api/anime", json={"provider": "aniworld", "key": "kaiju-academy"}, headers=library.headers
    )
    assert response.status == 409, await response.text()
    assert (options.library_path / "Kaiju Academy (2012)" / "key").read_text() == "sky-lantern\n"
    assert not (options.library_path / "Kaiju Academy (2012)" / ".aniworld.json").exists()


async def test_adding_before_the_first_rescan_finds_the_folder_on_disk(
    library: Authed, options: Options
) -> None:
    # Nothing was scanned yet (a new install): the store knew no series, and the add made a
    # second, empty folder that took the identity from the user's folder of episodes.
    (options.library_path / "Kaiju Academy (2012)").rename(options.library_path / "Kaiju")
    response = await library.client.post(
        "/api/anime", json={"provider": "aniworld", "key": "kaiju-academy"}, headers=library.headers
    )
    assert response.status == 409, await response.text()
    assert sorted(p.name for p in options.library_path.iterdir()) == [
        "Kaiju",
        "Sky Lantern",
        "Unknown Show",
    ]


async def test_matching_keeps_the_sidecar_fields_it_does_not_set(
    library: Authed, options: Options
) -> None:
    sidecar = options.library_path / "Unknown Show" / ".aniworld.json"
    sidecar.write_text(json.dumps({"note": "mine", "tvdb_id": 7, "languages": ["English Sub"]}))
    await _rescan(library)
    response = await library.client.post(
        "/api/anime/Unknown%20Show/match",
        json={"provider": "aniworld", "key": "rock-roll-heroes-reloaded"},
        headers=library.headers,
    )
    assert response.status == 200, await response.text()
    written = json.loads(sidecar.read_text())
    assert (written["note"], written["tvdb_id"], written["languages"]) == (
        "mine",
        7,
        ["English Sub"],
    )
    assert (written["provider"], written["key"]) == ("aniworld", "rock-roll-heroes-reloaded")
    assert sidecar.stat().st_mode & 0o044 == 0o044  # readable by Jellyfin's or Plex's user


class _TriedLock(asyncio.Lock):
    """A lock that says when a second holder starts waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0
        self.second = asyncio.Event()

    async def acquire(self) -> bool:
        self.tries += 1
        if self.tries == 2:
            self.second.set()
        return await super().acquire()


async def test_an_add_while_a_rescan_walks_the_disk_is_not_undone(
    library: Authed, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rescan's walk, older than the add's sidecar, was stored after it: the added series
    # vanished (404) and adding it again was a 409.
    (options.library_path / "Kaiju Academy (2012)").rename(options.library_path / "Old")
    (options.library_path / "Old" / ".aniworld.json").unlink()
    await _rescan(library)
    walked, release = threading.Event(), threading.Event()
    scan = service_module._scan_disk

    def held_walk(root: Path, cache: Any) -> Any:
        result = scan(root, cache)
        if not walked.is_set():
            walked.set()
            release.wait(10)
        return result

    monkeypatch.setattr(service_module, "_scan_disk", held_walk)
    lock = _TriedLock()
    monkeypatch.setattr(library.client.app[keys.LIBRARY].store, "files_lock", lock)
    started = await library.client.post("/api/anime/rescan", headers=library.headers)
    operation = (await started.json())["operation_id"]
    await asyncio.to_thread(walked.wait, 10)
    body = {"provider": "aniworld", "key": "kaiju-academy"}
    add = asyncio.ensure_future(
        library.client.post("/api/anime", json=body, headers=library.headers)
    )
    waits = asyncio.ensure_future(lock.second.wait())
    async with asyncio.timeout(10):  # the add waits for the walk, or (unfixed) finishes
        await asyncio.wait({add, waits}, return_when=asyncio.FIRST_COMPLETED)
    waits.cancel()
    release.set()
    response = await add
    assert response.status == 201, await response.text()
    await library.client.app[keys.OPERATIONS].wait(operation)
    assert (await _get(library, "/api/anime/kaiju-academy"))["folder"] == "Kaiju Academy (2012)"


async def test_a_download_landing_during_another_process_walk_is_not_undone(
    library: Authed, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scan command beside the service: its walk, older than the download, was stored after
    # it. The episode was missing again, history said "deleted", and its language was lost.
    await _rescan(library)
    walked, release = threading.Event(), threading.Event()
    scan = service_module._scan_disk

    def held_walk(root: Path, cache: Any) -> Any:
        result = scan(root, cache)
        walked.set()
        release.wait(10)
        return result

    monkeypatch.setattr(service_module, "_scan_disk", held_walk)
    started = await library.client.post("/api/anime/rescan", headers=library.headers)
    operation = (await started.json())["operation_id"]
    await asyncio.to_thread(walked.wait, 10)
    # The other process: its own connection, so none of this process' locks.
    relative = "Kaiju Academy (2012)/Season 01/Kaiju Academy - S01E03.mkv"
    (options.library_path / relative).write_bytes(b"landed")
    db = await open_database(options.data_path / DB_FILENAME)
    try:
        episode = ("aniworld", "kaiju-academy", 1, 3, relative)
        await LibraryStore(db).mark_local(*episode, "German Dub", at=time.time())
    finally:
        await db.close()
    release.set()
    await library.client.app[keys.OPERATIONS].wait(operation)
    detail = await _get(library, "/api/anime/kaiju-academy")
    (episode,) = [e for e in detail["episodes"] if (e["season"], e["episode"]) == (1, 3)]
    assert (episode["state"], episode["language"]) == ("local", "German Dub"), episode
    history = await _get(library, "/api/history?page_size=50")
    assert not [r for r in history["records"] if r["event"] == "deleted"], history


async def test_a_match_refused_for_a_renamed_slug_writes_nothing(
    library: Authed, options: Options, provider_site: RunningSite
) -> None:
    # The old slug redirects to a series another folder holds: the 409 came after the
    # sidecar was written, and the folder then named that series for good.
    await _rescan(library)
    provider_site.catalogue.renamed["old-kaiju"] = "kaiju-academy"
    response = await library.client.post(
        "/api/anime/Unknown%20Show/match",
        json={"provider": "aniworld", "key": "old-kaiju"},
        headers=library.headers,
    )
    assert response.status == 409, await response.text()
    assert (await response.json())["error"]["details"]["folder"] == "Kaiju Academy (2012)"
    assert not (options.library_path / "Unknown Show" / ".aniworld.json").exists()
    await _rescan(library)
    assert (await _get(library, "/api/anime/kaiju-academy"))["folder"] == "Kaiju Academy (2012)"


async def test_a_rescan_a_user_asks_for_is_followed_by_auto_download(library: Authed) -> None:
    # Only scheduled rescans queued missing episodes: the panel's Rescan button, this route and
    # MQTT's button never did, although DOCS says auto-download follows each rescan.
    app = library.client.app
    await app[keys.SCHEDULER].get()
    for method, path, body in (
        ("POST", "/api/queue/stop", None),
        ("POST", "/api/scheduler/config", {"auto_download": True}),
    ):
        response = await library.client.request(method, path, json=body, headers=library.headers)
        assert response.status == 200, await response.text()
    followed = asyncio.Event()

    async def watch(event: Event) -> None:
        if event.type is EventType.SCHEDULED_RESCAN_COMPLETE:
            followed.set()

    app[keys.BUS].subscribe(watch, name="test-watch")
    await _rescan(library)
    async with asyncio.timeout(20):
        await followed.wait()
    status = await _get(library, "/api/queue/status")
    kaiju = [i for i in status["pending_queue"] if i["series_key"] == "kaiju-academy"]
    queued = {(i["season"], i["episode"]) for i in kaiju}
    assert (1, 2) in queued and (1, 1) not in queued, queued  # missing, not held


async def test_a_sidecar_broken_for_one_rescan_keeps_the_files_languages(
    library: Authed, options: Options
) -> None:
    # The identity left the folder for a rescan and every episode row went with it: the
    # language a download landed a file in was gone for good, and upgrades never came.
    await _rescan(library)
    relative = "Kaiju Academy (2012)/Season 01/Kaiju Academy - S01E01 - Pilot.mkv"
    store = library.client.app[keys.LIBRARY].store
    await store.mark_local("aniworld", "kaiju-academy", 1, 1, relative, "German Dub", at=0)
    sidecar = options.library_path / "Kaiju Academy (2012)" / ".aniworld.json"
    good = sidecar.read_text()
    sidecar.write_text(good.rstrip().rstrip("}") + ",}")  # a typo
    await _rescan(library)
    sidecar.write_text(good)
    await _rescan(library)
    detail = await _get(library, "/api/anime/kaiju-academy")
    (episode,) = [e for e in detail["episodes"] if (e["season"], e["episode"]) == (1, 1)]
    assert (episode["state"], episode["language"]) == ("local", "German Dub"), episode


async def test_a_key_two_providers_share_is_named_by_its_provider(
    library: Authed, options: Options
) -> None:
    # PUT .../languages said "add ?provider=" and then ignored it, as did POST .../download:
    # the series' language profile could not be set at all, from the panel either.
    _series_folder(
        options.library_path,
        "Kaiju Academy (s.to)",
        {"provider": "sto", "key": "kaiju-academy"},
        [],
    )
    await _rescan(library)
    client, headers = library.client, library.headers
    ambiguous = await client.get("/api/anime/kaiju-academy", headers=headers)
    assert ambiguous.status == 409
    assert (await ambiguous.json())["error"]["details"]["providers"] == ["aniworld", "sto"]
    for url, body in (
        ("/api/anime/kaiju-academy/languages?provider=aniworld", {"languages": ["German Sub"]}),
        ("/api/anime/kaiju-academy/languages", {"languages": ["English Sub"], "provider": "sto"}),
    ):
        response = await client.put(url, json=body, headers=headers)
        assert response.status == 200, await response.text()
    for provider, languages in (("aniworld", ["German Sub"]), ("sto", ["English Sub"])):
        detail = await _get(library, f"/api/anime/kaiju-academy?provider={provider}")
        assert (detail["provider"], detail["languages"]) == (provider, languages)
    queued = await client.post(
        "/api/anime/kaiju-academy/download?provider=aniworld",
        json={"episodes": [{"season": 1, "episode": 2}]},
        headers=headers,
    )
    assert queued.status == 200, await queued.text()
    (item_id,) = (await queued.json())["item_ids"]
    status = await _get(library, "/api/queue/status")
    lists = ("active_downloads", "pending_queue", "completed_downloads", "failed_downloads")
    (item,) = [i for name in lists for i in status.get(name, []) if i["id"] == item_id]
    assert (item["provider"], item["series_key"]) == ("aniworld", "kaiju-academy")


async def test_changing_the_languages_or_ytdlp_keeps_the_sites_cache(
    library: Authed, provider_site: RunningSite
) -> None:
    # Any change of `languages` or a `providers` block rebuilt every site's client: the next
    # rescan cost every page again, and the rebuilt client's 4 requests in flight came on
    # top of those the old one still had running.
    await _rescan(library)
    aniworld = library.client.app[keys.PROVIDERS].registry.get("aniworld")
    provider_site.control.reset()
    for change in (
        {"languages": ["English Sub", "German Dub"]},
        {"providers": {"ytdlp": {"enabled": True}}},
    ):
        changed = await library.client.put("/api/config", json=change, headers=library.headers)
        assert changed.status == 200, await changed.text()
        await _rescan(library)
    assert sum(provider_site.control.requests.values()) == 0
    rebuilt = library.client.app[keys.PROVIDERS].registry.get("aniworld")
    assert isinstance(rebuilt, AniworldProvider) and isinstance(aniworld, AniworldProvider)
    assert rebuilt.http is aniworld.http  # one cap and one pause for the site


async def test_the_user_agent_option_is_what_the_site_is_told(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite
) -> None:
    # SITE.md: an honest, configurable User-Agent; it could not be configured at all.
    agent = "MyLibrary/1.0 (+mailto:me@example.org)"
    client = await aiohttp_client(create_app(dataclasses.replace(options, user_agent=agent)))
    setup = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    lib = Authed(client, (await setup.json())["access_token"], "")
    sites = {"providers": provider_site.providers_config()}
    assert (await client.put("/api/config", json=sites, headers=lib.headers)).status == 200
    _series_folder(
        options.library_path, "Kaiju", {"provider": "aniworld", "key": "kaiju-academy"}, []
    )
    provider_site.control.user_agents.clear()
    await _rescan(lib)
    assert provider_site.control.user_agents == {agent}


async def test_a_series_profile_goes_where_its_identity_goes(
    library: Authed, options: Options
) -> None:
    # The language order and upgrade switch stayed with the folder: a sidecar moved to a new
    # folder left them behind, and the series matched to the old folder next inherited them;
    # two folders swapping names swapped their series' profiles.
    await _rescan(library)
    client, headers, root = library.client, library.headers, options.library_path
    for key, languages in (("kaiju-academy", ["English Sub"]), ("sky-lantern", ["German Sub"])):
        response = await client.put(
            f"/api/anime/{key}/languages",
            json={"languages": languages, "upgrade": True},
            headers=headers,
        )
        assert response.status == 200, await response.text()

    (root / "Kaiju Academy").mkdir()
    (root / "Kaiju Academy (2012)" / ".aniworld.json").rename(
        root / "Kaiju Academy" / ".aniworld.json"
    )
    (root / "Sky Lantern").rename(root / "Swap")
    (root / "Unknown Show").rename(root / "Sky Lantern")
    (root / "Swap").rename(root / "Unknown Show")
    await _rescan(library)

    kaiju = await _get(library, "/api/anime/kaiju-academy")
    sky = await _get(library, "/api/anime/sky-lantern")
    assert (kaiju["folder"], kaiju["languages"], kaiju["upgrade"]) == (
        "Kaiju Academy",
        ["English Sub"],
        True,
    )
    assert (sky["folder"], sky["languages"], sky["upgrade"]) == (
        "Unknown Show",
        ["German Sub"],
        True,
    )
    # A sidecar unreadable for one rescan takes nothing along: the profile waits for it.
    sidecar = root / "Kaiju Academy" / ".aniworld.json"
    good = sidecar.read_text()
    sidecar.write_text(good[: len(good) // 2])
    await _rescan(library)
    sidecar.write_text(good)
    await _rescan(library)
    kaiju = await _get(library, "/api/anime/kaiju-academy")
    assert (kaiju["languages"], kaiju["upgrade"]) == (["English Sub"], True)
    matched = await client.post(
        "/api/anime/Kaiju%20Academy%20(2012)/match",
        json={"provider": "aniworld", "key": "der-letzte-sommer"},
        headers=headers,
    )
    assert matched.status == 200, await matched.text()
    assert ((await matched.json())["languages"], (await matched.json())["upgrade"]) == (None, None)
