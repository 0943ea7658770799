# One image for the API, the Dagster code location, webserver and daemon (compose picks the command).
# LOCK picks what it carries: requirements.lock (default: the API, webserver, daemon and an in_process
# code location; no executor) or requirements-<extra>.lock for an image that runs that executor:
#   docker build -t image-pipeline:0.1.0 .
#   docker build -t image-pipeline:0.1.0-k8s --build-arg LOCK=requirements-k8s.lock .   (IMGPIPE_EXECUTOR=k8s)
FROM python:3.11.16-slim-bookworm
ARG LOCK=requirements.lock
# uv by version, the same one the Makefile bootstraps (tests/defs/test_dockerfile.py checks they agree).
ARG UV_VERSION=0.13.9
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DAGSTER_HOME=/opt/dagster/home IMGPIPE_DATA_DIR=/var/lib/imgpipe
WORKDIR /app
RUN pip install "uv==${UV_VERSION}"
COPY ${LOCK} ./requirements.lock
# The same hashed lock as local development: identical packages everywhere.
# --compile-bytecode: .pyc files at build time, so no process (and no run) compiles Dagster at start.
RUN uv pip sync --system --compile-bytecode --require-hashes requirements.lock
COPY pyproject.toml README.md ./
COPY image_pipeline ./image_pipeline
COPY api ./api
COPY deploy ./deploy
# Editable: the code location loads its definitions from the defs folder the dg way
# (image_pipeline/definitions.py), which reads [tool.dg] from /app/pyproject.toml.
RUN uv pip install --system --compile-bytecode --no-deps -e . && mkdir -p $DAGSTER_HOME
COPY dagster.yaml workspace.yaml $DAGSTER_HOME/
# Not root: the code (/app) stays root's and read-only to the service; only DAGSTER_HOME (Dagster's local
# compute logs and caches) and IMGPIPE_DATA_DIR (the embedded defaults' state, when no database or bucket
# is configured) are its own. A numeric USER, so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 imgpipe \
 && useradd --system --uid 10001 --gid imgpipe --home-dir $DAGSTER_HOME --no-create-home imgpipe \
 && mkdir -p $IMGPIPE_DATA_DIR/metrics \
 && chown -R 10001:10001 $DAGSTER_HOME $IMGPIPE_DATA_DIR
USER 10001:10001
EXPOSE 8000 3000 4000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
