"""Schemathesis against the running service: no 5xx, documented statuses and bodies, JSON errors.

The real app serves on a loopback port (aiohttp is neither ASGI nor WSGI, so schemathesis calls
it over HTTP). Schemathesis and Hypothesis are synchronous: they run in a worker thread while
the event loop keeps serving. Generation is derandomized and bounded, so every run (and CI)
sends the same cases and the file stays well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pytest_aiohttp import AiohttpServer
from schemathesis import Case, GenerationMode
from schemathesis import checks as st_checks
from schemathesis.checks import CheckContext
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response

from aniworld_addon import keys
from aniworld_addon.app import create_app
from aniworld_addon.options import Options
from tests.conftest import series_folder
from tests.site.plugin import RunningSite

from ..conftest import PASSWORD

KAIJU = "kaiju-academy"
# Examples per operation; negative cases (schema-violating input) are cheaper to cover.
EXAMPLES: Final = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 6}
UNAUTHENTICATED_EXAMPLES: Final = {GenerationMode.POSITIVE: 3}

# Operations the fuzzer leaves alone, each because calling it would end or escape the test.
EXCLUDED: Final = {
    # Revokes the very session the fuzzer authenticates with: every later call would be a 401.
    ("POST", "/api/auth/logout"),
    # Creates directories at arbitrary absolute paths on the host (as root: anywhere at all).
    ("POST", "/api/config/directory"),
    # Points the providers back at the real sites: later searches would leave the machine.
    ("POST", "/api/config/reset"),
    # WebSocket upgrades; plain HTTP says nothing about them (tests/test_websocket.py does).
    ("GET", "/ws/connect"),
    ("GET", "/api/ws"),
}


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx is SPEC §5's {"error": {"code": str, "message": str, "details": ...}}."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.content[:200]!r}"
        ) from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} without an error object: {body}"
    assert isinstance(error.get("code"), str) and error["code"], f"no error code: {body}"
    assert isinstance(error.get("message"), str) and error["message"], f"no message: {body}"
    assert "Traceback" not in response.text, "a stack trace reached the client"
    return None


def refused_without_credentials(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Without a credential, every operation that is not public answers 401."""
    if case.operation.definition.raw.get("security") == []:
        return None  # public: setup, login, auth status, /health, this document
    assert response.status_code == 401, f"answered {response.status_code} without credentials"
    return None


AUTHENTICATED_CHECKS: Final = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
    st_checks.negative_data_rejection,
    st_checks.ignored_auth,  # re-sends 2xx cases without and with a bad credential
    error_shape,
]
# Only meaningful for coverage cases: methods the path does not offer, missing headers.
COVERAGE_CHECKS: Final = [st_checks.unsupported_method, st_checks.missing_required_header]
UNAUTHENTICATED_CHECKS: Final = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    refused_without_credentials,
    error_shape,
]


@dataclass(slots=True, frozen=True)
class Target:
    """The running service and the bearer token of a session made through /api/auth/setup."""

    base_url: str
    token: str


@pytest.fixture
async def target(
    aiohttp_server: AiohttpServer, options: Options, provider_site: RunningSite
) -> Target:
    """The real app on 127.0.0.1, set up, its provider the test site, one series, queue items."""
    series_folder(options.library_path, "Kaiju Academy (2012)", KAIJU)
    server = await aiohttp_server(create_app(options), host="127.0.0.1")
    base_url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(base_url) as http:
        setup = await http.post("/api/auth/setup", json={"master_password": PASSWORD})
        assert setup.status == 200, await setup.text()
        token = (await setup.json())["access_token"]

        async def call(method: str, path: str, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.request(method, path, json=body, headers=headers) as response:
                assert response.status < 300, await response.text()
                return await response.json()

        await call("PUT", "/api/config", {"providers": provider_site.providers_config()})
        operation = await call("POST", "/api/anime/rescan")
        await server.app[keys.OPERATIONS].wait(operation["operation_id"])
        # Real records in the responses that list them (queue, tokens, backups, history).
        await call("POST", "/api/queue/stop")
        episodes = [{"season": 1, "episode": n} for n in (1, 2, 3)]
        await call("POST", f"/api/anime/{KAIJU}/download", {"episodes": episodes})
        await call("POST", "/api/auth/tokens", {"name": "fuzz"})
        await call("POST", "/api/config/backups")
    return Target(base_url, token)


def _operations(schema: Any) -> Iterator[Any]:
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in EXCLUDED:
            yield operation


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    send: Callable[[Case], Response],
    checks: list[Any],
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,  # the same cases every run: CI is deterministic
        deadline=None,  # a request's time says nothing about the data that made it
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first report is enough
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        case.validate_response(send(case), checks=checks)

    run()


def _coverage_cases(schema: Any, operation: Any) -> Iterator[Case]:
    """Schemathesis' deterministic cases: boundaries, each constraint broken, other methods."""
    config = schema.config.generation_for(operation=operation, phase="coverage")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    yield from schema.iter_coverage_cases(
        operation, generation_modes=modes, generation_config=config
    )


def fuzz(
    base_url: str,
    token: str | None,
    examples: Mapping[GenerationMode, int],
    checks: list[Any],
    *,
    coverage: bool,
) -> list[str]:
    """Fuzz every operation of the served document; one report per failing operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json", timeout=10)
    assert len(schema) > 30, "the document lists too few paths"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures: list[str] = []
    with requests.Session() as session:

        def send(case: Case) -> Response:
            return case.call(base_url=base_url, session=session, headers=headers, timeout=15)

        def report(label: str, err: BaseException) -> None:
            if isinstance(err, FailureGroup):  # schemathesis' own: request, response, curl
                failures.append(f"{label}: {err}")
            else:
                failures.append(f"{label}: {''.join(traceback.format_exception(err))}")

        for operation in _operations(schema):
            if coverage:
                try:
                    for case in _coverage_cases(schema, operation):
                        case.validate_response(send(case), checks=[*checks, *COVERAGE_CHECKS])
                except (Exception, BaseExceptionGroup) as err:
                    report(f"{operation.label} [coverage]", err)
            for mode, count in examples.items():
                try:
                    _fuzz_operation(operation, mode, count, send, checks)
                except Unsatisfiable:
                    # Nothing to break: the operation takes no parameters and no body.
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except (Exception, BaseExceptionGroup) as err:
                    report(f"{operation.label} [{mode.value}]", err)
    return failures


# Schemathesis' negative strategies touch the global `random` now and then; Hypothesis warns
# about that once per process (so a run would look flaky). That is the library's business.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:"
    "hypothesis.errors.HypothesisDeprecationWarning"
)


async def test_fuzzed_requests_get_documented_answers_and_json_errors(target: Target) -> None:
    failures = await asyncio.to_thread(
        fuzz, target.base_url, target.token, EXAMPLES, AUTHENTICATED_CHECKS, coverage=True
    )
    assert not failures, "\n\n".join(failures)


async def test_fuzzed_requests_without_credentials_are_refused(target: Target) -> None:
    failures = await asyncio.to_thread(
        fuzz,
        target.base_url,
        None,
        UNAUTHENTICATED_EXAMPLES,
        UNAUTHENTICATED_CHECKS,
        coverage=False,
    )
    assert not failures, "\n\n".join(failures)
