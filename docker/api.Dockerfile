# The API: gunicorn serving api.app:create_app(). It validates, stores and enqueues; the model
# files are here only for their manifests (GET /v1/models, the model a job asks for).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY shared ./shared
COPY worker ./worker
COPY models ./models
COPY cli ./cli
COPY client ./client
RUN pip install . && rm -rf /src

RUN useradd --system --no-create-home --shell /usr/sbin/nologin colorize
USER colorize
WORKDIR /home/colorize

EXPOSE 8000
CMD ["gunicorn", "-c", "python:api.serving", "--bind", "0.0.0.0:8000", "--workers", "4", "api.app:create_app()"]
