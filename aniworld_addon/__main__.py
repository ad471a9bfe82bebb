"""Command line: `python -m aniworld_addon [serve]` with the deployment options of SPEC §3."""

from __future__ import annotations

import gc

# Start-up builds hundreds of modules' worth of long-lived objects, and the collector would
# traverse them again and again while they are made (about a tenth of the start-up). Run as a
# program, it is off until the service serves and then on again with all of them frozen (at
# once for the CLI commands); imported (tests, the console script), nothing changes.
import os
import signal

if __name__ == "__main__":
    gc.disable()
    # A Ctrl-C while the modules below load (a second on a Pi) ends the program quietly, as
    # it does later, instead of with a traceback through the import machinery.
    signal.signal(signal.SIGINT, lambda _signal, _frame: os._exit(130))

import argparse  # the imports below come after gc.disable() on purpose
import asyncio
import io
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from .app import create_app
from .const import APP_NAME, MAX_EPISODE_NUMBER, MAX_SEASON_NUMBER, VERSION
from .errors import AppError, StorageError
from .jsonutil import is_text
from .logging_setup import configure_console
from .options import Options, OptionsError, build_parser, load_options

_LOGGER = logging.getLogger("aniworld_addon")


def _number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from low to high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


def _text(text: str) -> str:
    """An argparse type: text that is valid UTF-8 (a terminal in Latin-1 passes its bytes
    through as lone surrogates, which failed deep inside with a traceback)."""
    if not is_text(text):
        raise argparse.ArgumentTypeError("is not valid UTF-8 text; check the terminal's encoding")
    return text


def _parser() -> argparse.ArgumentParser:
    # The flags work before and after the command: the command's copy keeps a flag given
    # before it unless it is given again.
    common = build_parser(absent=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="python -m aniworld_addon",
        description=f"{APP_NAME} {VERSION}",
        parents=[build_parser()],
    )
    parser.add_argument("--version", action="version", version=VERSION)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", parents=[common], help="run the service (default)")
    commands.add_parser("scan", parents=[common], help="rescan the library and the providers")
    search = commands.add_parser("search", parents=[common], help="search the providers")
    search.add_argument("query", type=_text, help="words of the series' name")
    download = commands.add_parser("download", parents=[common], help="download episodes")
    download.add_argument(
        "key", type=_text, help="the series key (slug) of a series in the library"
    )
    which = download.add_mutually_exclusive_group(required=True)
    which.add_argument("--missing", action="store_true", help="every missing episode")
    which.add_argument(
        "--season", type=_number(0, MAX_SEASON_NUMBER), help="with --episode: one episode"
    )
    download.add_argument("--episode", type=_number(1, MAX_EPISODE_NUMBER))
    download.add_argument(
        "--provider", type=_text, help="the series' provider, when two providers share the key"
    )
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
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"  # an IPv6 address in a URL
    # In the add-on, `port` is Home Assistant's ingress listener and `direct_port` the one a
    # user may map; elsewhere there is just `port`.
    ports = [options.port, options.direct_port] if options.addon else [options.port]
    sockets: list[socket.socket] = []
    for port in ports:
        try:
            sockets.append(_listen(options.host, port))
        except OSError as err:
            for made in sockets:
                made.close()
            raise StartError(f"cannot listen on {options.host}:{port}: {_reason(err)}") from err
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


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket of the family `host` names: "::" is every address, IPv6 and IPv4
    alike where the system allows; an IPv6 address, or a name with IPv6 addresses only, is
    IPv6. A name with both ("localhost") stays IPv4, as it always was: glibc lists ::1 first,
    and the health check and proxies ask 127.0.0.1."""
    if host == "::" and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, *_, address = min(found, key=lambda info: info[0] != socket.AF_INET)
    return socket.create_server(address, family=family)


class StartError(Exception):
    """The service cannot start for a reason one line tells (a port in use, ...)."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def _fail(message: str) -> int:
    print(f"aniworld_addon: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, load options (flag > env > options.json > default), dispatch; 2 = bad option."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # A name a Latin-1 terminal cannot show becomes "?" rather than a traceback.
            stream.reconfigure(errors="replace")
    args = _parser().parse_args(argv)
    try:
        options = load_options(vars(args))
    except OptionsError as err:
        print(f"aniworld_addon: {err}", file=sys.stderr)
        return 2
    configure_console(options.log_level)
    command = args.command or "serve"
    if command == "download" and not args.missing and args.episode is None:
        print("aniworld_addon: --season needs --episode", file=sys.stderr)
        return 2
    if command == "download" and args.missing and args.episode is not None:
        print("aniworld_addon: --episode goes with --season, not --missing", file=sys.stderr)
        return 2
    for name in ("data_path", "library_path"):
        path = getattr(options, name)
        if path.exists() and not path.is_dir():  # mkdir said only "File exists"
            print(
                f"aniworld_addon: invalid option {name!r}: {path} is not a folder", file=sys.stderr
            )
            return 2
    # What stops a command is said in one line, never with a traceback: a series that is
    # not in the library, a provider that does not answer, a data path that is a file, ...
    try:
        if command == "serve":
            serve(options)
            return 0
        gc.enable()
        return asyncio.run(_command(command, options, args))
    except OptionsError as err:  # a --library-path that is not these data's library
        print(f"aniworld_addon: {err}", file=sys.stderr)
        return 2
    except StorageError as err:  # a config or database newer than this version, ...
        return _fail(f"cannot start: {err.message}")
    except StartError as err:
        return _fail(f"cannot start: {err}")
    except AppError as err:
        return _fail(err.message)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        _silence_stdout()
        return 141  # what a shell reports for a program SIGPIPE ended
    except OSError as err:
        where = f" ({err.filename})" if err.filename is not None else ""
        return _fail(f"{_reason(err)}{where}")
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null: flushing it at exit would raise once more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout: nothing to flush at exit either
        pass


async def _command(command: str, options: Options, args: argparse.Namespace) -> int:
    """Run a command; SIGTERM ends it like Ctrl-C (downloads cancelled and left pending,
    partial files and ffprobes gone), with the exit code of a process SIGTERM ended."""
    task = asyncio.current_task()
    assert task is not None
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        task.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await _run_command(command, options, args)
    except asyncio.CancelledError:
        if terminated.is_set():
            task.uncancel()
            return 128 + signal.SIGTERM
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run_command(command: str, options: Options, args: argparse.Namespace) -> int:
    from . import cli

    if command == "scan":
        return await cli.scan(options)
    if command == "search":
        return await cli.search(options, args.query)
    if command == "download":
        return await cli.download(
            options,
            args.key,
            season=args.season,
            episode=args.episode,
            missing=args.missing,
            provider=args.provider,
        )
    return await cli.show_queue(options)


if __name__ == "__main__":
    sys.exit(main())
