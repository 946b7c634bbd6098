# syntax=docker/dockerfile:1
# The eldercare platform: `eldercare serve` (gateway workers, alert engine, API and
# console). docker-compose.yml also runs this image as the one-shot `init` job and
# as optional `eldercare gateway` replicas.

# ---- build: a wheel from pyproject.toml, so the runtime image holds no sources or
# build tools and installs exactly the pinned dependencies.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# .dockerignore admits only the package, pyproject.toml, README.md and docker/platform/.
COPY . .
RUN pip wheel --wheel-dir /wheels .

# ---- runtime
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# uid/gid 1883 on purpose: the same ids as the `mosquitto` user of the
# eclipse-mosquitto image. The platform writes the broker's password file (mode 0600)
# that Mosquitto re-reads after dropping to that user, and signals Mosquitto with
# SIGHUP to reload it; both only work between processes of the same uid.
RUN groupadd --system --gid 1883 eldercare \
 && useradd --system --uid 1883 --gid 1883 --home-dir /var/lib/eldercare \
      --shell /usr/sbin/nologin eldercare \
 && install -d -o eldercare -g eldercare -m 0750 /var/lib/eldercare /var/lib/eldercare/broker

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels eldercare && rm -rf /wheels
COPY docker/platform/grafana_reader.py /opt/eldercare/grafana_reader.py

# Defaults for a container; docker-compose.yml sets them too. Secrets are never baked
# in: production refuses to start without real ones.
ENV ELDERCARE_ENVIRONMENT=production \
    ELDERCARE_API_HOST=0.0.0.0 \
    ELDERCARE_API_PORT=8000 \
    ELDERCARE_BROKER_DIR=/var/lib/eldercare/broker

USER eldercare
WORKDIR /var/lib/eldercare
EXPOSE 8000

# slim has no curl: ask Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["eldercare", "serve"]
