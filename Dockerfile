# syntax=docker/dockerfile:1
#
# Prepaid IVR engine: the FastAGI server `ivr serve` (port 4573) with its
# Prometheus endpoint (port 9102). The SQLite database and the server secret
# live in the volume /data.
#
#   docker build -t ivr-prepaid .
#   docker run -v ivr-data:/data -p 127.0.0.1:4573:4573 ivr-prepaid
#
# Never publish 4573 beyond the Asterisk host: whoever connects to a FastAGI
# server plays the part of Asterisk and can drive call flows (and debits).

# --- build: a wheel of the project and of every dependency --------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is made of (pyproject: packages agi, ivr, rating,
# prompts; readme README.md), so that a change to the tests or the compose
# files does not rebuild this layer.
COPY pyproject.toml README.md ./
COPY agi/ agi/
COPY asterisk_sim/ asterisk_sim/
COPY ivr/ ivr/
COPY rating/ rating/
COPY prompts/ prompts/
RUN pip wheel --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 ivr \
    && useradd --system --uid 10001 --gid ivr --home-dir /data \
       --no-create-home --shell /usr/sbin/nologin ivr \
    && mkdir -p /data /secrets \
    && chown ivr:ivr /data /secrets \
    && chmod 700 /secrets

# Installed from the wheels only: the image gets exactly what was built above.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels ivr-prepaid

# Settings of `ivr serve` (each one is also an option of the command).
# Listen on every interface of the container, but serve only the peers in
# IVR_ALLOWED_PEERS (FastAGI has no authentication): loopback unless the
# deployment names its Asterisk's network (docker-compose.yml does). The
# PIN-hashing secret lives in its own volume, apart from the database.
ENV IVR_HOST=0.0.0.0 \
    IVR_ALLOWED_PEERS=127.0.0.0/8,::1 \
    IVR_PORT=4573 \
    IVR_METRICS_HOST=0.0.0.0 \
    IVR_METRICS_PORT=9102 \
    IVR_DATABASE=/data/ivr.sqlite3 \
    IVR_SECRET_FILE=/secrets/ivr.secret

VOLUME ["/data", "/secrets"]
WORKDIR /data
USER ivr

EXPOSE 4573 9102

# Healthy when the metrics endpoint answers (the FastAGI port is left alone:
# a bare TCP connect there would count as a broken AGI session).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('IVR_METRICS_PORT', '9102'), timeout=4)"]

# Exec form: `ivr serve` is PID 1 and gets SIGTERM itself, so live calls get
# their grace period (IVR_GRACE_S, default 30 s; docker-compose.yml gives the
# container longer than that before SIGKILL: stop_grace_period).
CMD ["ivr", "serve"]
