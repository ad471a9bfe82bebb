"""Command line: `python -m aniworld_addon [serve]` with the deployment options of SPEC §3."""

from __future__ import annotations

import gc

# Start-up builds hundreds of modules' worth of long-lived objects, and the collector would
# traverse them again and again while they are made (about a tenth of the start-up). Run as a
# program, it is off until the service serves and then on again with all of them frozen (at
# once for the CLI commands); imported (tests, the console script), nothing changes.
if __name__ == "__main__":
    gc.disable()

import argparse  # the imports below come after gc.disable() on purpose
import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from .app import create_app
from .const import APP_NAME, VERSION
from .errors import StorageError
from .logging_setup import configure_console
from .options import Options, OptionsError, build_parser, load_options

_LOGGER = logging.getLogger("aniworld_addon")


def _parser() -> argparse.ArgumentParser:
    common = build_parser()
    parser = argparse.ArgumentParser(
        prog="python -m aniworld_addon", description=f"{APP_NAME} {VERSION}", parents=[common]
    )
    parser.add_argument("--version", action="version", version=VERSION)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common], help="run the service (default)")
    commands.add_parser("scan", parents=[common], help="rescan the library and the providers")
    search = commands.add_parser("search", parents=[common], help="search the providers")
    search.add_argument("query")
    download = commands.add_parser("download", parents=[common], help="download episodes")
    download.add_argument("key", help="the series key (slug) of a series in the library")
    which = download.add_mutually_exclusive_group(required=True)
    which.add_argument("--missing", action="store_true", help="every missing episode")
    which.add_argument("--season", type=int, help="with --episode: one episode")
    download.add_argument("--episode", type=int)
    commands.add_parser("queue", parents=[common], help="show the download queue")
    return parser


async def _collector_back_on(_app: web.Application) -> AsyncIterator[None]:
    """The last start-up step: freeze what start-up made (it lives as long as the process,
    gc.freeze() keeps it out of every later collection), then let the collector run again."""
    gc.freeze()
    gc.enable()
    yield


def serve(options: Options) -> None:
    """Run the web service until SIGINT/SIGTERM, then shut down gracefully."""
    app = create_app(options)
    app.cleanup_ctx.append(_collector_back_on)
    shown_host = "localhost" if options.host in ("0.0.0.0", "::") else options.host  # noqa: S104
    # In the add-on, `port` is Home Assistant's ingress listener and `direct_port` the one a
    # user may map; elsewhere there is just `port`.
    ports = [options.port, options.direct_port] if options.addon else [options.port]
    sockets = [socket.create_server((options.host, port)) for port in ports]
    for port in ports:
        _LOGGER.info(
            "%s %s listening on http://%s:%d/ (data %s, library %s)",
            APP_NAME,
            VERSION,
            shown_host,
            port,
            options.data_path,
            options.library_path,
        )
    web.run_app(
        app,
        sock=sockets,
        print=None,
        shutdown_timeout=10,
        access_log=logging.getLogger("aiohttp.access"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, load options (flag > env > options.json > default), dispatch; 2 = bad option."""
    args = _parser().parse_args(argv)
    try:
        options = load_options(vars(args))
    except OptionsError as err:
        print(f"aniworld_addon: {err}", file=sys.stderr)
        return 2
    configure_console(options.log_level)
    command = args.command or "serve"
    if command == "serve":
        try:
            serve(options)
        except StorageError as err:  # a config or database newer than this version, ...
            print(f"aniworld_addon: cannot start: {err.message}", file=sys.stderr)
            return 1
        return 0
    gc.enable()
    from . import cli

    if command == "scan":
        return asyncio.run(cli.scan(options))
    if command == "search":
        return asyncio.run(cli.search(options, args.query))
    if command == "download":
        if not args.missing and args.episode is None:
            print("aniworld_addon: --season needs --episode", file=sys.stderr)
            return 2
        return asyncio.run(
            cli.download(
                options, args.key, season=args.season, episode=args.episode, missing=args.missing
            )
        )
    if command == "queue":
        return asyncio.run(cli.show_queue(options))
    return 2


if __name__ == "__main__":
    sys.exit(main())
