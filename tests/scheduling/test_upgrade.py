"""Language upgrades end to end: a dub appears for an episode held as sub, on the real site."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aniworld_addon import keys
from aniworld_addon.auto_queue import OFFER_RECHECK_S
from aniworld_addon.events import EventType
from aniworld_addon.options import Options
from tests.conftest import series_folder
from tests.site import Fault, MediaSet
from tests.site.data import GERMAN_DUB, GERMAN_SUB, TARGET_HTML5, SiteHoster, SiteNewEpisode
from tests.site.plugin import RunningSite

from ..conftest import AiohttpClient
from ..test_queue_api import FakeClock, Service, final_files, sha256, start_service

LANTERN = "sky-lantern"


async def lantern_service(
    aiohttp_client: AiohttpClient, options: Options, site: RunningSite
) -> Service:
    """Sky Lantern in the library; its episode 1 is offered in German Sub only, for now."""
    series_folder(options.library_path, "Sky Lantern (2023)", LANTERN)
    first = site.catalogue.series[LANTERN].seasons[1][0]
    first.hosters[:] = [h for h in first.hosters if h.lang_key != GERMAN_DUB]
    svc = await start_service(aiohttp_client, options, site, FakeClock())
    await svc.call(
        "PUT",
        "/api/config",
        json={
            "providers": site.providers_config(),
            "languages": ["German Dub", "German Sub"],
            "downloads": {"min_free_space_mb": 0, "max_retries": 0},
        },
    )
    op = await svc.call("POST", "/api/anime/rescan", status=202)
    await svc.client.app[keys.OPERATIONS].wait(op["operation_id"])
    return svc


def offer_dub(site: RunningSite, hoster: str, target: str) -> None:
    """Episode 1 gets a German Dub hoster, and the new-episodes list says so."""
    first = site.catalogue.series[LANTERN].seasons[1][0]
    link_id = max(h.link_id for h in site.catalogue.hosters()) + 1
    first.hosters.append(SiteHoster(link_id, GERMAN_DUB, hoster, target))
    site.catalogue.new_episodes.insert(0, SiteNewEpisode(LANTERN, 1, 1, GERMAN_DUB, "18.07.2025"))


async def history_of(svc: Service, event: str) -> list[dict[str, object]]:
    """The history entries of `event`, once there are any (each handled event re-checks)."""
    history = svc.client.app[keys.HISTORY]
    async with asyncio.timeout(10):
        while True:
            seen = history.handled
            page = await svc.call("GET", "/api/history", params={"event": event})
            if page["records"]:
                return list(page["records"])
            await history.wait_handled(seen + 1)


async def download_the_sub(svc: Service, options: Options) -> tuple[int, Path]:
    """Download episode 1 (offered in German Sub only); its item id and its file."""
    (item_id,) = await svc.queue([(1, 1)], key=LANTERN)
    await svc.wait_item(item_id, EventType.DOWNLOAD_COMPLETE)
    (sub_file,) = final_files(options)
    return item_id, sub_file


async def run_new_episodes_check(svc: Service) -> dict[str, object]:
    run = await (await svc.client.app[keys.SCHEDULER].get()).run_job("new_episodes")
    assert run.ok, run
    assert isinstance(run.result, dict)
    return run.result


async def test_a_dub_replaces_the_sub_file_only_after_it_is_verified(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> None:
    svc = await lantern_service(aiohttp_client, options, provider_site)
    _item_id, sub_file = await download_the_sub(svc, options)
    sub_hash = sha256(sub_file)
    detail = await svc.call("GET", f"/api/anime/{LANTERN}")
    assert detail["episodes"][0]["language"] == "German Sub"

    # A broken dub appears. Upgrades are off (global default, series unset): nothing happens.
    bogus = media_set.root / "bogus-dub.mp4"
    bogus.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 4096)
    offer_dub(provider_site, "VOE", f"/embed/html5/{bogus.stem}")
    provider_site.control.reset()
    result = await run_new_episodes_check(svc)
    assert result["queued"] == 0
    assert provider_site.control.count("episode") == 0  # no page read for a switched-off series

    # Upgrades on for this series: the check reads that one episode page and queues the dub.
    profile = {"languages": ["German Dub", "German Sub"], "upgrade": True}
    detail = await svc.call("PUT", f"/api/anime/{LANTERN}/languages", json=profile)
    assert detail["upgrade"] is True
    result = await run_new_episodes_check(svc)
    assert result["queued"] == 1
    assert provider_site.control.count("episode") == 1
    queued = await svc.wait_event(
        lambda e: (
            e.type is EventType.AUTO_DOWNLOAD_QUEUED and e.data["source"] == "new_episodes:upgrade"
        )
    )
    (upgrade_id,) = queued.data["item_ids"]
    assert (await svc.item(upgrade_id))["upgrade_from"] == "German Sub"

    # The dub fails verification: the sub file stays, untouched, and nothing else is left.
    failed = await svc.wait_item(upgrade_id, EventType.DOWNLOAD_FAILED)
    assert failed.data["will_retry"] is False
    assert "not readable media" in failed.data["error"]["message"]
    assert final_files(options) == [sub_file] and sha256(sub_file) == sub_hash
    assert not list(options.library_path.rglob("*.part*"))

    # A working dub appears beside the broken (now blocklisted) one; a retry lands it, and
    # only then does the sub file go.
    offer_dub(provider_site, "Vidoza", TARGET_HTML5)
    await svc.call("POST", "/api/queue/retry", json={"item_ids": [upgrade_id]})
    done = await svc.wait_item(upgrade_id, EventType.DOWNLOAD_COMPLETE)
    assert done.data["language"] == "German Dub" and done.data["upgrade_from"] == "German Sub"
    (dub_file,) = final_files(options)
    assert sha256(dub_file) == sha256(media_set.mp4)
    detail = await svc.call("GET", f"/api/anime/{LANTERN}")
    episode = detail["episodes"][0]
    assert episode["language"] == "German Dub" and episode["state"] == "local"
    assert Path(options.library_path, detail["folder"], episode["file"]) == dub_file

    (upgraded,) = await history_of(svc, "upgraded")
    assert upgraded["series_key"] == LANTERN and upgraded["language"] == "German Dub"
    assert upgraded["provider"] == "aniworld"  # was null on every download and failure

    # Held in the first choice now: the next check has nothing to upgrade and reads no page.
    provider_site.control.reset()
    result = await run_new_episodes_check(svc)
    assert result["queued"] == 0 and provider_site.control.count("episode") == 0


async def test_the_rescan_queues_upgrades_when_the_global_switch_is_on(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> None:
    svc = await lantern_service(aiohttp_client, options, provider_site)
    (item_id,) = await svc.queue([(1, 1)], key=LANTERN)
    await svc.wait_item(item_id, EventType.DOWNLOAD_COMPLETE)
    await svc.client.app[keys.QUEUE].set_state(running=False)  # only the queueing is looked at
    first = provider_site.catalogue.series[LANTERN].seasons[1][0]
    link_id = max(h.link_id for h in provider_site.catalogue.hosters()) + 1
    first.hosters.append(SiteHoster(link_id, GERMAN_DUB, "VOE", TARGET_HTML5))  # not listed new

    scheduler = await svc.client.app[keys.SCHEDULER].get()
    assert (await scheduler.run_job("rescan")).result["queued"] == 0  # upgrades are off
    await svc.call("PUT", "/api/config", json={"downloads": {"upgrade": True}})
    provider_site.control.reset()
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["queued"] == 1, run
    # One episode page: the only episode held below its first choice.
    assert provider_site.control.count("episode") == 1
    items = await svc.client.app[keys.QUEUE].store.all()
    (upgrade,) = [i for i in items if i.status == "pending"]
    assert (upgrade.season, upgrade.episode, upgrade.upgrade_from) == (1, 1, "German Sub")

    # The next rescan trusts that page for OFFER_RECHECK_S: the same upgrade, no page read.
    await svc.call("DELETE", "/api/queue", json={"item_ids": [upgrade.id]})
    provider_site.control.reset()
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["queued"] == 1 and provider_site.control.count("episode") == 0
    # Once that time has passed, the page is read again.
    (again,) = [i for i in await svc.client.app[keys.QUEUE].store.all() if i.status == "pending"]
    await svc.call("DELETE", "/api/queue", json={"item_ids": [again.id]})
    svc.clock.now += OFFER_RECHECK_S
    provider_site.control.reset()
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["queued"] == 1 and provider_site.control.count("episode") == 1
    (again,) = [i for i in await svc.client.app[keys.QUEUE].store.all() if i.status == "pending"]

    # A series can opt out of the global switch: its profile says so, and nothing more is read.
    await svc.call("DELETE", "/api/queue", json={"item_ids": [again.id]})
    profile = {"languages": None, "upgrade": False}
    await svc.call("PUT", f"/api/anime/{LANTERN}/languages", json=profile)
    provider_site.control.reset()
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["queued"] == 0 and provider_site.control.count("episode") == 0


async def test_an_upgrade_keeps_a_file_the_user_put_there_since(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # The upgrade was queued for the downloaded sub; the user then put their own copy in its
    # place (its language unknown). The upgrade removed whatever file the episode held.
    svc = await lantern_service(aiohttp_client, options, provider_site)
    _item_id, sub_file = await download_the_sub(svc, options)
    queue = svc.client.app[keys.QUEUE]
    await queue.set_state(running=False)
    await svc.call("PUT", "/api/config", json={"downloads": {"upgrade": True}})
    offer_dub(provider_site, "Vidoza", TARGET_HTML5)
    assert (await run_new_episodes_check(svc))["queued"] == 1

    sub_file.unlink()
    mine = sub_file.parent / "Sky Lantern - S01E01 - my own BluRay rip.mkv"
    mine.write_bytes(b"the user's own file")
    op = await svc.call("POST", "/api/anime/rescan", status=202)
    await svc.client.app[keys.OPERATIONS].wait(op["operation_id"])
    await queue.set_state(running=True)
    (upgrade,) = [i for i in await queue.store.all() if i.status == "pending"]
    done = await svc.wait_item(upgrade.id, EventType.DOWNLOAD_COMPLETE)
    assert done.data["replaced"] is None
    assert mine.read_bytes() == b"the user's own file"


async def test_an_upgrade_that_cannot_remove_the_old_file_is_still_complete(
    aiohttp_client: AiohttpClient,
    options: Options,
    provider_site: RunningSite,
    media_set: MediaSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The dub had landed, verified, under its own name; removing the sub failed (a file in
    # use on a share) and the item failed as if nothing had landed, to be downloaded again.
    svc = await lantern_service(aiohttp_client, options, provider_site)
    template = "Season {season:00}/{Series Title} - S{season:00}E{episode:00} [{Language}]"
    settings = {"downloads": {"episode_path": template, "upgrade": True}}
    await svc.call("PUT", "/api/config", json=settings)
    item_id, sub_file = await download_the_sub(svc, options)
    unlink = Path.unlink

    def busy(path: Path, missing_ok: bool = False) -> None:
        if path == sub_file:
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", busy)
    offer_dub(provider_site, "Vidoza", TARGET_HTML5)
    assert (await run_new_episodes_check(svc))["queued"] == 1
    (upgrade,) = [i for i in await svc.client.app[keys.QUEUE].store.all() if i.id != item_id]
    done = await svc.wait_item(upgrade.id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert done.data["replaced"] is None
    assert sorted(p.name for p in final_files(options)) == [
        "Sky Lantern - S01E01 [German Dub].mp4",
        "Sky Lantern - S01E01 [German Sub].mp4",
    ]


async def test_a_failed_download_is_in_the_history_with_its_provider_and_language(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> None:
    svc = await lantern_service(aiohttp_client, options, provider_site)
    provider_site.control.set_fault(r"^/embed/", Fault.NOT_FOUND)  # every hoster fails
    (item_id,) = await svc.queue([(1, 1)], key=LANTERN)
    await svc.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    (failed,) = await history_of(svc, "failed")
    assert (failed["provider"], failed["series_key"]) == ("aniworld", LANTERN)
    assert failed["language"] == "German Sub"  # the last hoster tried


async def test_an_episode_that_had_no_hoster_yet_is_fetched_once_its_language_comes_out(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # Dubs only, automatically: episode 1 came out in sub first and failed (no_hoster). When
    # the dub came out, the new-episodes list named the episode, and nothing fetched it: it
    # was known (no refresh) and failed (queue_missing leaves those to the user).
    svc = await lantern_service(aiohttp_client, options, provider_site)
    settings = {"languages": ["German Dub"], "scheduler": {"auto_download": True}}
    await svc.call("PUT", "/api/config", json=settings)
    scheduler = await svc.client.app[keys.SCHEDULER].get()
    queue = svc.client.app[keys.QUEUE]
    assert (await scheduler.run_job("rescan")).ok
    (first,) = [i for i in await queue.store.all() if (i.season, i.episode) == (1, 1)]
    failed = await svc.wait_item(first.id, EventType.DOWNLOAD_FAILED)
    assert failed.data["error"]["code"] == "no_hoster" and not failed.data["will_retry"]

    listed_in_sub = SiteNewEpisode(LANTERN, 1, 1, GERMAN_SUB, "17.07.2025")
    provider_site.catalogue.new_episodes.insert(0, listed_in_sub)
    assert (await run_new_episodes_check(svc))["queued"] == 0  # listed, still no dub: left
    offer_dub(provider_site, "Vidoza", TARGET_HTML5)
    assert (await run_new_episodes_check(svc))["queued"] == 1
    done = await svc.wait_item(first.id, EventType.DOWNLOAD_COMPLETE)
    assert done.data["language"] == "German Dub"
