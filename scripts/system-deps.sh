#!/usr/bin/env bash
# Installs the real components the tests use (ffmpeg, mosquitto, chromium, shellcheck) and the C
# compiler that builds library/_folders.c when they are missing and we may install them (root with apt-get). Elsewhere it only says what is missing:
# the tests then fail in CI and skip with a reason on a user's machine.
set -euo pipefail

declare -A want=([ffmpeg]=ffmpeg [ffprobe]=ffmpeg [mosquitto]=mosquitto [chromium]=chromium
                 [shellcheck]=shellcheck [cc]=gcc)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Missing system packages (tests that need them will skip, or fail with CI=true): ${missing[*]}"
fi
