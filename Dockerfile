# AniWorld add-on image: the Home Assistant add-on, and the plain container.
# The Supervisor passes BUILD_FROM from build.yaml (per architecture); the default is the
# multi-arch manifest of the same base image, so `docker build .` works on both.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.12-alpine3.22
# hadolint ignore=DL3006
FROM ${BUILD_FROM}

ARG BUILD_ARCH
ARG BUILD_VERSION

ENV \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    S6_KILL_GRACETIME=15000

# ffmpeg and ffprobe: verifying finished downloads and HLS streams (SPEC §2).
RUN apk add --no-cache ffmpeg

# The package, installed with its dependencies; the sources are not kept. The C compiler
# builds library/_folders.c (a full library scan in about two thirds of the time) and leaves
# with the sources; the install goes on without the module if it cannot be built.
WORKDIR /usr/src/aniworld
COPY pyproject.toml setup.py README.md ./
COPY aniworld_addon ./aniworld_addon
RUN apk add --no-cache --virtual .build-deps gcc musl-dev \
    && pip install --no-cache-dir . \
    && apk del .build-deps \
    && rm -rf /usr/src/aniworld

WORKDIR /
COPY run.sh /run.sh
RUN chmod a+x /run.sh

# /health answers 200 while the process serves requests (degraded dependencies included).
# In the add-on the ingress port (8099) serves only the Supervisor, so the check uses the
# direct port (8100), which listens inside the container whether or not it is mapped.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD python3 -c "import os, urllib.request; port = os.environ.get('ANIWORLD_DIRECT_PORT', '8100') if os.environ.get('SUPERVISOR_TOKEN') else os.environ.get('ANIWORLD_PORT', '8099'); urllib.request.urlopen('http://127.0.0.1:' + port + '/health', timeout=8)" || exit 1

LABEL \
    io.hass.name="AniWorld" \
    io.hass.description="Keeps your anime library complete and reports to Home Assistant" \
    io.hass.type="addon" \
    io.hass.version="${BUILD_VERSION}" \
    io.hass.arch="${BUILD_ARCH}" \
    org.opencontainers.image.title="AniWorld add-on" \
    org.opencontainers.image.description="Keeps an anime library complete: scans, finds missing episodes, downloads them, reports over WebSocket, MQTT and REST" \
    org.opencontainers.image.version="${BUILD_VERSION}" \
    org.opencontainers.image.licenses="MIT"

# The base image's ENTRYPOINT is s6-overlay's /init, which runs this as the main process.
CMD ["/run.sh"]
