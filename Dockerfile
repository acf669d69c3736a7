# syntax=docker/dockerfile:1
#
# One image for every Colony process: the nine services and the gateway (`colony serve NAME`),
# the payment-provider simulator (`python -m colony.payment_provider`) and the development mail
# sink (`python -m colony.mail_sink`). compose.yaml and deploy/kubernetes/ pick the program.
#
#   docker build -t colony:dev .
#   docker run --rm -p 8080:8080 colony:dev                 # the gateway (the default command)
#   docker run --rm colony:dev serve orders                 # any service by name

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the project's wheel and a wheel of every dependency ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the build needs (see .dockerignore): a change to tests or docs keeps the cache.
COPY pyproject.toml README.md ./
COPY src ./src
# `pip wheel` builds colony's own wheel and collects a wheel for each dependency of the
# distributed extra (asyncpg, nats-py, ...), so the runtime stage needs neither the source
# nor a compiler nor the network.
RUN python -m pip wheel --wheel-dir /wheels '.[distributed]'

# --- runtime: a virtual environment with the wheels installed, run as a non-root user ----------
FROM ${PYTHON_IMAGE} AS runtime
# /keys is owned by the user so a new named volume mounted there (compose's colony-keys)
# takes that owner: `colony keys init` can write the keys into it, and only that user read them.
RUN groupadd --system --gid 10001 colony \
    && useradd --system --uid 10001 --gid colony --home-dir /home/colony --create-home \
        --shell /usr/sbin/nologin colony \
    && mkdir -p /data /keys \
    && chown colony:colony /data /keys \
    && chmod 0700 /keys
ENV VIRTUAL_ENV=/opt/colony \
    PATH=/opt/colony/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv "${VIRTUAL_ENV}" \
    && "${VIRTUAL_ENV}/bin/pip" install --no-index --find-links=/wheels 'colony[distributed]'

# Defaults for a container: listen on every interface, keep files under /data, log JSON lines.
# Everything else (COLONY_NATS_URL, COLONY_<SERVICE>_DSN, COLONY_<SERVICE>_URL, ...) comes
# from compose.yaml or the Kubernetes ConfigMap and Secret.
ENV COLONY_HOST=0.0.0.0 \
    COLONY_PORT=8080 \
    COLONY_DATA_DIR=/data \
    COLONY_LOG_JSON=true

WORKDIR /home/colony
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK here: the image runs several programs (services on /health/live and
# /health/ready, the simulator and the mail sink on /health at other ports), so compose.yaml
# and the Kubernetes probes declare the check that fits each one.
ENTRYPOINT ["colony"]
CMD ["serve", "gateway"]
