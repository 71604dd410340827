# budget-receiver container image. Build, run and operate it: see docs/operations.md.
#
#   docker build -t budget-receiver .
#   docker run -d --name budget-receiver -p 8080:8080 -v receiver-data:/data \
#     --env-file config/receiver.env --stop-timeout 30 budget-receiver
#
# tests/test_container.py builds this file with podman and runs the image for real.
# Where no registry is reachable, PYTHON_IMAGE is a local stand-in for the official base:
#   podman build --format docker --build-arg PYTHON_IMAGE=$(scripts/container-base) ...

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# -- build: the wheel, and a virtualenv with it and its dependencies -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md, LICENSE and receiver/.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir /wheels/budget_receiver-*.whl

# -- runtime: the base image plus that virtualenv; no source tree, no compilers ------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="budget-receiver" \
      org.opencontainers.image.description="Receives signed budget webhooks from AI-agent platforms, alerts people and halts tasks at their limit." \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, unprivileged uid/gid: bind-mounted /data must be writable by 10001.
RUN groupadd --system --gid 10001 receiver \
 && useradd --system --no-log-init --uid 10001 --gid receiver \
      --create-home --home-dir /home/receiver --shell /usr/sbin/nologin receiver \
 && mkdir -p /data /run/secrets \
 && chown receiver:receiver /data

COPY --from=build /opt/venv /opt/venv

# Defaults only: `docker run --env-file` and `-e` override each of them.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECEIVER_HOST=0.0.0.0 \
    RECEIVER_PORT=8080 \
    RECEIVER_DATABASE_URL=sqlite:////data/receiver.db \
    RECEIVER_LOG_FORMAT=json
# Any RECEIVER_* setting may also be a file named after it in this directory (docker
# secrets). DL3064 sees "SECRETS" in the name; the value is a path, not a secret.
# hadolint ignore=DL3064
ENV RECEIVER_SECRETS_DIR=/run/secrets

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# Liveness without curl: the image's own Python asks /healthz on RECEIVER_PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RECEIVER_PORT', '8080') + '/healthz', timeout=4)"]

# The CLI is the entrypoint, so every subcommand runs from the same image:
#   docker run --rm budget-receiver new-secret
#   docker run --rm --env-file config/receiver.env budget-receiver check-config
# Exec form: the daemon is PID 1 and gets SIGTERM itself (graceful shutdown).
ENTRYPOINT ["budget-receiver"]
CMD ["serve"]
