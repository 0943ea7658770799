# One image for the API, the Dagster code location, webserver and daemon (compose picks the command).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
RUN pip install uv
COPY requirements.lock ./
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
EXPOSE 8000 3000 4000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
