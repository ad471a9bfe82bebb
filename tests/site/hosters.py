"""The hoster side: embed pages yt-dlp can (or cannot) read, and the media files behind them."""

from __future__ import annotations

import asyncio
import re
from html import escape
from pathlib import Path
from typing import Final

from aiohttp import hdrs, web

from tests.site.control import SiteControl

EMBED_KINDS: Final = ("html5", "jwplayer", "unreadable")
_SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9_-]+$")
# Set explicitly: the system mime table may call .ts "text/vnd.trolltech.linguist".
_CONTENT_TYPES: Final = {
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
}


def _embed_document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="robots" content="noindex, nofollow">
<title>{escape(title)}</title></head>
<body style="margin:0;background:#000">
{body}
</body>
</html>
"""


def embed_page(kind: str, name: str, origin: str) -> str | None:
    """The embed page of hoster `kind` for media `name`, or None for an unknown kind/name."""
    if kind not in EMBED_KINDS or not _SAFE_NAME.match(name):
        return None
    media = f"{origin}/media/{name}"
    if kind == "html5":
        body = f"""<div class="player-wrapper">
<video id="player" class="video-js" controls playsinline preload="metadata" width="640">
  <source src="{media}.mp4" type="video/mp4">
</video>
</div>"""
    elif kind == "jwplayer":
        # The shape yt-dlp's generic extractor looks for: jwplayer("id").setup({...}).
        body = f"""<div id="vplayer"></div>
<script type="text/javascript" src="/public/js/jwplayer-8.min.js"></script>
<script type="text/javascript">
jwplayer("vplayer").setup({{
  sources: [{{file: "{media}/index.m3u8", type: "hls"}}],
  width: "100%", height: "100%", autostart: false
}});
</script>"""
    else:
        # Media is only fetched by a script at run time: nothing a generic extractor can read.
        body = """<div id="player" data-token="a1b2c3d4"></div>
<script type="text/javascript">
var _0x51f2 = ["\\x70\\x6c\\x61\\x79", "\\x74\\x6f\\x6b\\x65\\x6e"];
window.bootPlayer && window.bootPlayer(_0x51f2);
</script>"""
    return _embed_document(f"{kind} - {name}", body)


def _media_path(media_dir: Path, file: str) -> Path | None:
    root = media_dir.resolve()
    path = (root / file).resolve()
    # resolve() folds "..", so this check keeps requests inside the media directory.
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


async def serve_media(
    request: web.Request, media_dir: Path | None, control: SiteControl
) -> web.StreamResponse:
    """A media file, with Range support, throttled or cut off as `control` says."""
    file = request.match_info["file"]
    path = None if media_dir is None else await asyncio.to_thread(_media_path, media_dir, file)
    if path is None:
        raise web.HTTPNotFound()
    headers = {"Content-Type": _CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
    if control.media_rate_bps is None and control.media_drop_after_bytes is None:
        return web.FileResponse(path, headers=headers)
    return await _streamed(request, path, headers, control)


async def _streamed(
    request: web.Request, path: Path, headers: dict[str, str], control: SiteControl
) -> web.StreamResponse:
    # The media is a few hundred KB: reading it whole keeps the range arithmetic simple.
    data = await asyncio.to_thread(path.read_bytes)
    size = len(data)
    try:
        rng = request.http_range
    except ValueError:
        return web.Response(status=416, headers={hdrs.CONTENT_RANGE: f"bytes */{size}"})
    partial = hdrs.RANGE in request.headers
    start = 0 if rng.start is None else rng.start
    if start < 0:
        start = max(0, size + start)
    stop = size if rng.stop is None else min(rng.stop, size)
    if partial and start >= size:
        return web.Response(status=416, headers={hdrs.CONTENT_RANGE: f"bytes */{size}"})
    resp = web.StreamResponse(status=206 if partial else 200, headers=headers)
    resp.headers[hdrs.ACCEPT_RANGES] = "bytes"
    if partial:
        resp.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{size}"
    resp.content_length = stop - start
    await resp.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return resp
    offset = start
    # The whole length was promised above; a hoster that dies sends less and hangs up.
    drop = control.media_drop_after_bytes
    cut = stop if drop is None else min(stop, start + drop)
    try:
        while offset < cut:
            # Re-read the rate every chunk so a test can lift or tighten it mid-transfer.
            rate = control.media_rate_bps
            chunk = cut - offset if rate is None else min(cut - offset, max(1, rate // 10))
            await resp.write(data[offset : offset + chunk])
            offset += chunk
            if rate is not None and offset < cut and await control.pause(chunk / rate):
                break  # the site is shutting down: end the transfer short
        if cut < stop:
            _hang_up(request)
            return resp
    except ConnectionResetError:
        return resp  # the client went away (a killed downloader); nothing left to do
    await resp.write_eof()
    return resp


def _hang_up(request: web.Request) -> None:
    """Drop the connection mid-body, as a crashing hoster does (no chunk end, no EOF)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
