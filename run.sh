#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# ==============================================================================
# AniWorld add-on: start the service.
#
# The service reads /data/options.json itself (flag > environment > options.json
# > default, SPEC §3) and asks the Supervisor for its MQTT broker (TLS flag
# included) when none is set. This script adds the data folder, passes the
# library path and log level on, and says which broker will be used. A variable
# that is already set in the environment is never overwritten, so the precedence
# stays as documented. Without an options.json (a plain container) it only
# starts the service.
#
# bashio sets errexit, nounset and pipefail before sourcing this file.
# ==============================================================================

# The same file bashio::config reads (bashio honours ADDON_CONFIG too).
readonly OPTIONS_FILE="${ADDON_CONFIG:-/data/options.json}"

export ANIWORLD_DATA_PATH="${ANIWORLD_DATA_PATH:-/data}"

# Copy add-on option $1 into environment variable $2 when the option has a value
# and the variable is not set yet.
export_option() {
    local option="$1"
    local variable="$2"
    local value

    if [[ -n "${!variable:-}" ]] || ! bashio::config.has_value "${option}"; then
        return 0
    fi
    value="$(bashio::config "${option}")"
    export "${variable}=${value}"
}

if [[ -f "${OPTIONS_FILE}" ]]; then
    export_option library_path ANIWORLD_LIBRARY_PATH
    export_option log_level ANIWORLD_LOG_LEVEL

    if bashio::config.has_value mqtt_host; then
        # The service reads mqtt_host/port/username/password from options.json.
        mqtt_host="$(bashio::config mqtt_host)"
        bashio::log.info "MQTT: using the broker from the add-on options (${mqtt_host})."
    elif bashio::config.has_value mqtt_username; then
        # A login without a host: the service asks the Supervisor for the broker itself
        # and logs in with these credentials (integrations/supervisor.py).
        bashio::log.info "MQTT: using Home Assistant's broker with the login from the add-on options."
    elif [[ -n "${ANIWORLD_MQTT_HOST:-}" ]]; then
        bashio::log.info "MQTT: using the broker from ANIWORLD_MQTT_HOST (${ANIWORLD_MQTT_HOST})."
    elif bashio::services.available mqtt; then
        # Nothing to pass on: the service asks the Supervisor for the broker itself, its
        # TLS flag included (passed on here as plain host and port, TLS was lost).
        bashio::log.info "MQTT: using the broker provided by Home Assistant ($(bashio::services mqtt host))."
    else
        bashio::log.info "MQTT: no broker set and none provided by Home Assistant; MQTT stays off."
    fi
fi

bashio::log.info "Starting AniWorld: data ${ANIWORLD_DATA_PATH}, library ${ANIWORLD_LIBRARY_PATH:-(default)}."
exec python3 -m aniworld_addon serve
