"""config.json: round trip, validation, backups, restore, reset, export, corruption, migration."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aniworld_addon.app import create_app
from aniworld_addon.backups import write_backup
from aniworld_addon.const import CONFIG_BACKUPS_KEPT
from aniworld_addon.keys import SETTINGS
from aniworld_addon.options import Options
from aniworld_addon.settings import Settings, _stamp
from aniworld_addon.settings_schema import CONFIG_VERSION, DEFAULT_CONFIG

from .conftest import AiohttpClient, Authed

# Damaged documents: a syntax error; sections of the wrong type, which the migration of an
# unversioned document once tripped over (TypeError: the service did not start); nesting past
# the parser's stack (RecursionError).
DAMAGED_CONFIGS = [
    '{"version": 1, "languages": [',
    '{"downloads": 5}',
    '{"downloads": [1, 2]}',
    '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
]


async def test_defaults_written_on_first_start(authed: Authed, options: Options) -> None:
    on_disk = json.loads((options.data_path / "config.json").read_text())
    assert on_disk == DEFAULT_CONFIG
    served = await (await authed.client.get("/api/config", headers=authed.headers)).json()
    assert served == DEFAULT_CONFIG


async def test_put_deep_merges_and_persists(authed: Authed, options: Options) -> None:
    client = authed.client
    response = await client.put(
        "/api/config",
        json={"downloads": {"max_concurrent": 4}, "languages": ["German Sub"]},
        headers=authed.headers,
    )
    assert response.status == 200
    body = await response.json()
    assert body["downloads"]["max_concurrent"] == 4
    assert body["downloads"]["max_retries"] == 3  # untouched sibling kept
    assert body["languages"] == ["German Sub"]  # lists replace
    on_disk = json.loads((options.data_path / "config.json").read_text())
    assert on_disk == body


async def test_invalid_update_is_refused_with_every_problem(
    authed: Authed, options: Options
) -> None:
    before = (options.data_path / "config.json").read_text()
    response = await authed.client.put(
        "/api/config",
        json={
            "downloads": {"max_concurrent": 0, "verify": "yes"},
            "languages": ["Klingon"],
            "surprise": 1,
            "providers": {"aniworld": {"url": "ftp://x"}},
        },
        headers=authed.headers,
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    paths = {d["path"] for d in error["details"]}
    assert {
        "downloads.max_concurrent",
        "downloads.verify",
        "surprise",
        "providers.aniworld.url",
    } <= paths
    assert any(p.startswith("languages") for p in paths)
    assert (options.data_path / "config.json").read_text() == before
    # Values the schema once took and the service then failed on with a traceback: a
    # 401-digit free-space minimum (float overflow) and a port no socket can connect to.
    response = await authed.client.put(
        "/api/config",
        json={
            "downloads": {"min_free_space_mb": 10**400},
            "providers": {
                "aniworld": {"url": "http://127.0.0.1:99999"},
                # every page path is absolute: a path here was dropped without a word
                "sto": {"url": "https://s.to/serie/stream"},
            },
        },
        headers=authed.headers,
    )
    assert response.status == 400
    paths = {d["path"] for d in (await response.json())["error"]["details"]}
    assert paths == {
        "downloads.min_free_space_mb",
        "providers.aniworld.url",
        "providers.sto.url",
    }
    assert (options.data_path / "config.json").read_text() == before
    # A topic prefix equal to the discovery prefix makes our "online" read as Home Assistant's
    # birth: endless republishing. A cron that never fires stops rescans without a word, and
    # each look at its next run searched up to the year 9999 on the event loop.
    response = await authed.client.put(
        "/api/config",
        json={
            "mqtt": {"topic_prefix": "homeassistant"},
            "scheduler": {"rescan_cron": "0 0 30 2 *"},
        },
        headers=authed.headers,
    )
    assert response.status == 400
    details = (await response.json())["error"]["details"]
    assert {d["path"]: d["message"] for d in details} == {
        "mqtt.topic_prefix": "must differ from discovery_prefix and from homeassistant",
        "scheduler.rescan_cron": "the crontab expression '0 0 30 2 *' never fires",
    }
    # A 70,000-character prefix was saved, and paho's thread died on the first publish.
    response = await authed.client.put(
        "/api/config",
        json={"mqtt": {"discovery_prefix": "ha/" * 40 + "ha"}},
        headers=authed.headers,
    )
    assert response.status == 400
    assert (await response.json())["error"]["details"] == [
        {"path": "mqtt.discovery_prefix", "message": "must be at most 100 characters"}
    ]


async def test_template_escaping_the_library_is_refused(authed: Authed) -> None:
    response = await authed.client.put(
        "/api/config",
        json={"downloads": {"episode_path": "../../etc/{Series Title}"}},
        headers=authed.headers,
    )
    assert response.status == 400
    details = (await response.json())["error"]["details"]
    assert details[0]["path"] == "downloads.episode_path"


async def test_validate_does_not_save(authed: Authed, options: Options) -> None:
    client = authed.client
    ok = await client.post(
        "/api/config/validate", json={"auth": {"session_hours": 2}}, headers=authed.headers
    )
    assert await ok.json() == {"valid": True, "errors": []}
    bad = await client.post(
        "/api/config/validate", json={"auth": {"session_hours": True}}, headers=authed.headers
    )
    result = await bad.json()
    assert result["valid"] is False and result["errors"][0]["path"] == "auth.session_hours"
    assert (
        json.loads((options.data_path / "config.json").read_text())["auth"]["session_hours"] == 24
    )


async def test_every_change_is_backed_up_and_ten_are_kept(authed: Authed) -> None:
    client = authed.client
    for n in range(CONFIG_BACKUPS_KEPT + 3):
        response = await client.put(
            "/api/config", json={"downloads": {"max_retries": n}}, headers=authed.headers
        )
        assert response.status == 200
    backups = await (await client.get("/api/config/backups", headers=authed.headers)).json()
    assert len(backups) == CONFIG_BACKUPS_KEPT
    assert backups == sorted(backups, key=lambda b: b["name"], reverse=True)


async def test_a_save_that_changes_nothing_keeps_the_backups_as_they_are(authed: Authed) -> None:
    # Ten presses of Save with unchanged settings pushed out every earlier backup.
    client, h = authed.client, authed.headers
    await client.put("/api/config", json={"downloads": {"max_concurrent": 3}}, headers=h)
    before = await (await client.get("/api/config/backups", headers=h)).json()
    for _ in range(CONFIG_BACKUPS_KEPT + 1):
        unchanged = await client.put(
            "/api/config", json={"downloads": {"max_concurrent": 3}}, headers=h
        )
        assert unchanged.status == 200
        assert (await client.put("/api/config", json={}, headers=h)).status == 200
    assert await (await client.get("/api/config/backups", headers=h)).json() == before
    await client.put("/api/config", json={"downloads": {"max_concurrent": 4}}, headers=h)
    after = await (await client.get("/api/config/backups", headers=h)).json()
    assert len(after) == len(before) + 1  # a real change is backed up as before


async def test_deleting_one_backup_twice_at_once_is_one_200_and_404s(authed: Authed) -> None:
    client, h = authed.client, authed.headers
    name = (await (await client.post("/api/config/backups", headers=h)).json())["name"]
    answers = await asyncio.gather(
        *(client.delete(f"/api/config/backups/{name}", headers=h) for _ in range(20))
    )
    assert sorted(r.status for r in answers) == [200] + [404] * 19


async def test_restore_delete_reset_export(authed: Authed) -> None:
    client = authed.client
    h = authed.headers
    await client.put("/api/config", json={"downloads": {"max_concurrent": 5}}, headers=h)
    manual = await (await client.post("/api/config/backups", headers=h)).json()
    await client.put("/api/config", json={"downloads": {"max_concurrent": 7}}, headers=h)
    restored = await client.post(f"/api/config/backups/{manual['name']}/restore", headers=h)
    assert (await restored.json())["downloads"]["max_concurrent"] == 5
    exported = await client.post("/api/config/export", headers=h)
    assert "attachment" in exported.headers["Content-Disposition"]
    assert (await exported.json())["downloads"]["max_concurrent"] == 5
    reset = await (await client.post("/api/config/reset", headers=h)).json()
    assert reset == DEFAULT_CONFIG
    assert (await client.delete(f"/api/config/backups/{manual['name']}", headers=h)).status == 200
    missing = await client.post(f"/api/config/backups/{manual['name']}/restore", headers=h)
    assert missing.status == 404
    traversal = await client.delete("/api/config/backups/..%2Fconfig.json", headers=h)
    assert traversal.status == 404


@pytest.mark.parametrize(
    "damaged",
    [*DAMAGED_CONFIGS, '{"version": 99}'],
    ids=["syntax", "int", "list", "deep", "newer-version"],
)
async def test_a_damaged_backup_is_refused_on_restore(
    authed: Authed, options: Options, damaged: str
) -> None:
    before = (options.data_path / "config.json").read_text()
    name = "config-20260101T000000-000000.json"
    (options.data_path / "config_backups" / name).write_text(damaged)
    response = await authed.client.post(
        f"/api/config/backups/{name}/restore", headers=authed.headers
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "validation_error"
    assert (options.data_path / "config.json").read_text() == before


async def test_the_library_is_neither_the_whole_disk_nor_around_the_data(
    authed: Authed, options: Options
) -> None:
    data = options.data_path
    for path in ("/", str(data), str(data / "logs"), str(data.parent)):
        for method, url, body in (
            ("POST", "/api/config/directory", {"path": path}),
            ("PUT", "/api/config", {"library_path": path}),
        ):
            response = await authed.client.request(method, url, json=body, headers=authed.headers)
            assert response.status == 400, (path, url)
    assert (await (await authed.client.get("/api/config", headers=authed.headers)).json())[
        "library_path"
    ] is None


async def test_the_options_library_folder_is_made_only_while_it_is_the_library(
    authed: Authed, options: Options, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    assert options.library_path.is_dir()  # the default needs nothing from the user
    target = tmp_path / "anime"
    response = await authed.client.post(
        "/api/config/directory", json={"path": str(target)}, headers=authed.headers
    )
    assert response.status == 200
    await authed.client.close()
    options.library_path.rmdir()
    # Made anew at every start: an empty /media/anime in Home Assistant's media, a ./library
    # wherever a command ran.
    client = await aiohttp_client(create_app(options))
    assert (await client.get("/health")).status == 200
    assert not options.library_path.exists()


async def test_directory_is_checked_and_stored(authed: Authed, tmp_path: Path) -> None:
    client = authed.client
    target = tmp_path / "anime"
    response = await client.post(
        "/api/config/directory", json={"path": str(target)}, headers=authed.headers
    )
    assert response.status == 200
    assert target.is_dir()
    assert (await response.json())["config"]["library_path"] == str(target)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused = await client.post(
        "/api/config/directory", json={"path": str(blocker)}, headers=authed.headers
    )
    assert refused.status == 400
    relative = await client.post(
        "/api/config/directory", json={"path": "relative/dir"}, headers=authed.headers
    )
    assert relative.status == 400
    # os.access says yes to root for /sys: only a write tells (a rescan made series of it).
    pseudo = await client.post(
        "/api/config/directory", json={"path": "/sys"}, headers=authed.headers
    )
    assert pseudo.status == 400, await pseudo.text()
    assert list(target.iterdir()) == []  # the write test leaves nothing behind
    # PUT /api/config took a file (and every download into it failed) until it checked too
    # A NUL byte failed in the file system calls (a 500), and so did a symlink loop;
    # validate said yes to all of these.
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for path in (
        str(blocker),
        "/sys",
        str(tmp_path / "not-there"),
        f"{tmp_path}/a\x00b",
        str(tmp_path / "loop" / "x"),
    ):
        put = await client.put("/api/config", json={"library_path": path}, headers=authed.headers)
        assert put.status == 400, await put.text()
        assert [d["path"] for d in (await put.json())["error"]["details"]] == ["library_path"]
        check = await client.post(
            "/api/config/validate", json={"library_path": path}, headers=authed.headers
        )
        result = await check.json()
        assert result["valid"] is False and result["errors"][0]["path"] == "library_path"
    assert not (tmp_path / "not-there").exists()
    kept = await client.put(
        "/api/config", json={"library_path": str(target)}, headers=authed.headers
    )
    assert kept.status == 200 and (await kept.json())["library_path"] == str(target)


@pytest.mark.parametrize("damaged", DAMAGED_CONFIGS, ids=["syntax", "int", "list", "deep"])
async def test_corrupt_config_is_moved_aside_and_defaults_used(
    aiohttp_client: AiohttpClient, options: Options, caplog: Any, damaged: str
) -> None:
    options.data_path.mkdir(parents=True)
    (options.data_path / "config.json").write_text(damaged)
    client = await aiohttp_client(create_app(options))
    status = await (await client.get("/health")).json()
    assert status["status"] in ("healthy", "degraded")
    aside = list(options.data_path.glob("config.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_text() == damaged
    assert json.loads((options.data_path / "config.json").read_text()) == DEFAULT_CONFIG
    assert any("config.json was unusable" in r.getMessage() for r in caplog.records)


async def test_a_version_1_config_gains_the_upgrade_switch_switched_off(
    aiohttp_client: AiohttpClient, options: Options
) -> None:
    v1 = json.loads(json.dumps(DEFAULT_CONFIG))
    v1["version"] = 1
    del v1["downloads"]["upgrade"]
    v1["downloads"]["max_retries"] = 7
    options.data_path.mkdir(parents=True)
    (options.data_path / "config.json").write_text(json.dumps(v1))
    await aiohttp_client(create_app(options))
    migrated = json.loads((options.data_path / "config.json").read_text())
    assert migrated["version"] == CONFIG_VERSION == 2
    assert migrated["downloads"]["upgrade"] is False
    assert migrated["downloads"]["max_retries"] == 7
    assert len(list((options.data_path / "config_backups").glob("config-*-v1.json"))) == 1


async def test_unversioned_config_is_migrated_with_a_backup(
    aiohttp_client: AiohttpClient, options: Options
) -> None:
    options.data_path.mkdir(parents=True)
    (options.data_path / "config.json").write_text(
        json.dumps({"max_concurrent_downloads": 3, "languages": ["English Sub"]})
    )
    await aiohttp_client(create_app(options))
    migrated = json.loads((options.data_path / "config.json").read_text())
    assert migrated["version"] == CONFIG_VERSION
    assert migrated["downloads"]["max_concurrent"] == 3
    assert migrated["downloads"]["upgrade"] is False
    assert migrated["languages"] == ["English Sub"]
    backups = list((options.data_path / "config_backups").glob("config-*-v0.json"))
    assert len(backups) == 1


async def test_a_stored_provider_url_with_a_path_keeps_its_host_and_every_other_setting(
    aiohttp_client: AiohttpClient, options: Options
) -> None:
    # Such a URL was taken once (and its path ignored); refusing it now must not set the
    # whole file aside as unusable.
    stored = json.loads(json.dumps(DEFAULT_CONFIG))
    stored["providers"]["sto"]["url"] = "https://s.to/serie/stream?x=1"
    stored["downloads"]["max_retries"] = 7
    options.data_path.mkdir(parents=True)
    (options.data_path / "config.json").write_text(json.dumps(stored))
    app = create_app(options)
    await aiohttp_client(app)
    assert not list(options.data_path.glob("config.json.corrupt-*"))
    current = app[SETTINGS].get()
    assert current["providers"]["sto"]["url"] == "https://s.to"
    assert current["downloads"]["max_retries"] == 7


async def test_backups_made_with_the_clock_behind_are_kept(tmp_path: Path) -> None:
    # A Pi without a real-time clock boots behind until NTP answers. Backups are named by
    # time, and the one just made sorted oldest and was pruned at once: a save then failed
    # (FileNotFoundError), and so did a start-up whose migration wanted it as safety copy.
    now = [1_800_000_000.0]
    settings = Settings(tmp_path / "data", clock=lambda: now[0])
    await settings.load()
    for retries in [*range(1, 6), *range(1, 6), 1, 2]:  # more changes than backups are kept
        now[0] += 3600
        await settings.update({"downloads": {"max_retries": retries}})
    now[0] -= 2 * 86400
    await settings.update({"downloads": {"max_concurrent": 5}})  # saved: no error
    backups = await settings.list_backups()
    assert len(backups) == CONFIG_BACKUPS_KEPT
    behind = _stamp(now[0])
    assert [b.name for b in backups if behind in b.name]  # the new one is kept
    kept = json.loads((tmp_path / "data" / "config_backups" / backups[-1].name).read_text())
    assert kept["downloads"]["max_retries"] == 2  # it holds the settings before the save

    # a start-up that migrates keeps its safety copy too
    document = json.loads((tmp_path / "data" / "config.json").read_text())
    document["version"] = 1
    del document["downloads"]["upgrade"]
    (tmp_path / "data" / "config.json").write_text(json.dumps(document))
    again = Settings(tmp_path / "data", clock=lambda: now[0] - 86400)
    await again.load()
    assert again.get()["downloads"]["max_concurrent"] == 5


def test_a_daily_backup_made_with_the_clock_behind_is_kept(tmp_path: Path) -> None:
    database = tmp_path / "aniworld.db"
    sqlite3.connect(database).close()
    root = tmp_path / "backups"
    for day in range(1, 4):
        write_backup(database, tmp_path / "config.json", root, f"2099010{day}T000000Z", keep=3)
    made = write_backup(database, tmp_path / "config.json", root, "20260101T000000Z", keep=3)
    assert made.is_dir()
    assert sorted(p.name for p in root.iterdir()) == [
        "20260101T000000Z",
        "20990102T000000Z",
        "20990103T000000Z",
    ]


def test_a_backup_cut_off_by_a_crash_is_swept_by_the_next_one(tmp_path: Path) -> None:
    database = tmp_path / "aniworld.db"
    sqlite3.connect(database).close()
    root = tmp_path / "backups"
    (root / ".20260101T000000Z.partial").mkdir(parents=True)  # a power cut mid-copy
    (root / ".20260101T000000Z.partial" / "aniworld.db").write_bytes(b"x" * 4096)
    (root / "notes").mkdir()  # the user's: not ours to remove

    made = write_backup(database, tmp_path / "config.json", root, "20260102T000000Z", keep=3)

    assert sorted(p.name for p in root.iterdir()) == [made.name, "notes"]


async def test_a_webhook_url_is_kept_as_given_its_trailing_slash_included(authed: Authed) -> None:
    # Base URLs lose a trailing slash; a webhook's path is the receiver's: cut off, one that
    # redirects /hook to /hook/ got nothing (redirects are not followed for a POST).
    hooks = ["https://ntfy.example/topic/", "https://hooks.example/a/b?token=x"]
    response = await authed.client.put(
        "/api/config", json={"notifications": {"webhooks": hooks}}, headers=authed.headers
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["notifications"]["webhooks"] == hooks
    # A non-breaking space copied from a web page into the host: accepted, then every
    # delivery crashed its task while /health said "none failing".
    odd = ["https://hooks.exa\u00a0mple.com/x"]
    refused = await authed.client.put(
        "/api/config", json={"notifications": {"webhooks": odd}}, headers=authed.headers
    )
    assert refused.status == 400
    assert "not a usable URL" in (await refused.json())["error"]["details"][0]["message"]


async def test_values_an_earlier_version_took_are_reset_alone_on_upgrade(tmp_path: Path) -> None:
    # Rules tightened since 0.1.0 refuse values it stored; one of them set the whole file
    # aside, and the library path, webhooks and languages were gone with it.
    stored = json.loads(json.dumps(DEFAULT_CONFIG))
    stored["library_path"] = str(tmp_path)
    stored["notifications"]["webhooks"] = ["https://hooks.example/x/"]
    stored["languages"] = ["English Sub"]
    stored["mqtt"]["topic_prefix"], stored["mqtt"]["discovery_prefix"] = "homeassistant", "ha"
    stored["scheduler"]["rescan_cron"] = "0 0 30 2 *"  # never fires
    stored["downloads"]["min_free_space_mb"] = 2**41
    stored["surprise"] = 1
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text(json.dumps(stored))

    settings = Settings(data)
    await settings.load()
    current = settings.get()
    assert current["library_path"] == str(tmp_path)
    assert current["notifications"]["webhooks"] == ["https://hooks.example/x/"]
    assert current["languages"] == ["English Sub"]
    assert current["mqtt"]["topic_prefix"] == DEFAULT_CONFIG["mqtt"]["topic_prefix"]
    assert current["mqtt"]["discovery_prefix"] == "ha"
    assert current["scheduler"]["rescan_cron"] is None
    assert (
        current["downloads"]["min_free_space_mb"]
        == DEFAULT_CONFIG["downloads"]["min_free_space_mb"]
    )
    assert "surprise" not in current
    assert not list(data.glob("config.json.corrupt-*"))
    problem = settings.load_problem or ""
    for path in ("mqtt.topic_prefix", "scheduler.rescan_cron", "downloads.min_free_space_mb"):
        assert path in problem
    (kept,) = (data / "config_backups").glob("config-*-refused.json")
    assert json.loads(kept.read_text()) == stored
    assert json.loads((data / "config.json").read_text()) == current
