"""Command line: `python -m aniworld_addon [serve]` with the deployment options of SPEC §3."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from .app import create_app
from .const import APP_NAME, VERSION
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
    return parser


def serve(options: Options) -> None:
    """Run the web service until SIGINT/SIGTERM, then shut down gracefully."""
    app = create_app(options)
    shown_host = "localhost" if options.host in ("0.0.0.0", "::") else options.host  # noqa: S104
    _LOGGER.info(
        "%s %s listening on http://%s:%d/ (data %s, library %s)",
        APP_NAME,
        VERSION,
        shown_host,
        options.port,
        options.data_path,
        options.library_path,
    )
    web.run_app(
        app,
        host=options.host,
        port=options.port,
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
        serve(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
