# A CPU worker: celery on the colorize queue, ONNX Runtime on the CPU.
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

CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "colorize", "--loglevel", "INFO"]
