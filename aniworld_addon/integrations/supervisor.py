"""Home Assistant Supervisor: add-on mode and the MQTT broker the Supervisor provides."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx
import voluptuous as vol

from ..options import Options

_LOGGER = logging.getLogger(__name__)

SUPERVISOR_URL: Final = "http://supervisor"
TOKEN_ENV: Final = "SUPERVISOR_TOKEN"  # noqa: S105 - the variable name, not a secret
REQUEST_TIMEOUT_S: Final = 10.0

_SERVICE_SCHEMA: Final = vol.Schema(
    {
        vol.Required("host"): vol.All(str, vol.Length(min=1)),
        vol.Required("port"): vol.All(vol.Coerce(int), vol.Range(min=1, max=65535)),
        vol.Optional("username", default=None): vol.Any(None, str),
        vol.Optional("password", default=None): vol.Any(None, str),
        vol.Optional("ssl", default=False): bool,
    },
    extra=vol.ALLOW_EXTRA,
)


class SupervisorError(Exception):
    """The Supervisor could not be asked, or its answer cannot be used (worth retrying)."""


@dataclass(slots=True, frozen=True)
class BrokerConfig:
    """Where the MQTT broker is and how to log in."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    source: str = "options"

    @property
    def address(self) -> str:
        """host:port, for logs and health messages."""
        return f"{self.host}:{self.port}"


def supervisor_token(options: Options, environ: Mapping[str, str] | None = None) -> str | None:
    """The Supervisor API token in add-on mode, else None."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV)
    return token if options.addon and token else None


class SupervisorClient:
    """The few Supervisor API calls the add-on needs, over the app's shared HTTP client."""

    def __init__(
        self, http: httpx.AsyncClient, token: str, *, base_url: str = SUPERVISOR_URL
    ) -> None:
        self._http = http
        self._token = token
        self._base_url = base_url.rstrip("/")

    async def mqtt_service(self) -> BrokerConfig | None:
        """The broker from `GET /services/mqtt`; None when no MQTT service is installed."""
        url = f"{self._base_url}/services/mqtt"
        try:
            response = await self._http.get(
                url,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=REQUEST_TIMEOUT_S,
            )
        except httpx.HTTPError as err:
            raise SupervisorError(f"the Supervisor did not answer: {err!r}") from err
        # The Supervisor answers 400 when no add-on provides the service (Mosquitto missing).
        if response.status_code in (400, 404):
            _LOGGER.info("The Supervisor offers no MQTT service: %s", _message(response))
            return None
        if response.status_code != 200:
            raise SupervisorError(
                f"the Supervisor answered {response.status_code} for /services/mqtt: "
                f"{_message(response)}"
            )
        try:
            body = response.json()
            data = _SERVICE_SCHEMA(body["data"])
        except (ValueError, KeyError, TypeError, vol.Invalid) as err:
            raise SupervisorError(
                f"the Supervisor's MQTT service answer is invalid: {err}"
            ) from err
        return BrokerConfig(
            host=data["host"],
            port=data["port"],
            username=data["username"] or None,
            password=data["password"] or None,
            ssl=data["ssl"],
            source="supervisor",
        )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text[:200]


def broker_from_options(options: Options) -> BrokerConfig | None:
    """The broker named by the deployment options (flag, environment, options.json), if any."""
    if not options.mqtt_host:
        return None
    return BrokerConfig(
        host=options.mqtt_host,
        port=options.mqtt_port,
        username=options.mqtt_username,
        password=options.mqtt_password,
    )


async def resolve_broker(
    options: Options, supervisor: SupervisorClient | None
) -> BrokerConfig | None:
    """Options win; in add-on mode the Supervisor's broker, with options' login if given."""
    configured = broker_from_options(options)
    if configured is not None or supervisor is None:
        return configured
    service = await supervisor.mqtt_service()
    if service is None:
        return None
    if options.mqtt_username:
        return BrokerConfig(
            host=service.host,
            port=service.port,
            username=options.mqtt_username,
            password=options.mqtt_password,
            ssl=service.ssl,
            source="supervisor",
        )
    return service


def addon_ingress_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The add-on's panel as a Home Assistant link, from the container hostname."""
    env = os.environ if environ is None else environ
    hostname = env.get("HOSTNAME", "")
    # The Supervisor names an add-on container after its slug with "_" turned into "-";
    # slugs never contain "-", so the reverse mapping is exact.
    if not hostname or "-" not in hostname:
        return None
    return f"homeassistant://hassio/ingress/{hostname.replace('-', '_')}"
