# One image for every kafka-sagas process of docker-compose.yml: workers and participants.
# Built once (docker compose build); nothing is installed when a container starts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The library first: its layer is rebuilt only when the library changes (sagas/schemas links to
# schemas/, the record schemas the package ships).
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY sagas ./sagas
RUN pip install . && useradd --create-home --uid 10001 sagas

# The reference apps, imported from the working directory (sagas worker processors.orders:app).
COPY processors ./processors

USER sagas
# Exec form: the command is the process Docker signals (compose adds an init to forward them).
ENTRYPOINT ["sagas"]
CMD ["--help"]
