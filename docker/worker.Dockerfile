# A CPU worker: celery on the colorize queue, ONNX Runtime on the CPU.
#
# PYTHON_IMAGE: any image with Python 3.11+ and its venv module (python:3.11-slim by default;
# scripts/compose-check builds on a Debian base made locally).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The image maths' compiled kernels are cached where the unprivileged user can write
# (shared/colour/compiled.py): compiled once per container, not once per pool process.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache

# A virtual environment: the same steps whether the base's Python is its own or a
# distribution's (which refuses installs into the system, PEP 668).
RUN python3 -m venv /opt/colorize
ENV PATH=/opt/colorize/bin:$PATH

WORKDIR /src
# The dependencies in a layer of their own: a change to the code alone reinstalls only the project.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt
COPY api ./api
COPY shared ./shared
COPY worker ./worker
COPY models ./models
COPY cli ./cli
COPY client ./client
RUN pip install --no-deps . && rm -rf /src

RUN useradd --system --no-create-home --shell /usr/sbin/nologin colorize
USER colorize
WORKDIR /home/colorize

CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "colorize", "--loglevel", "INFO"]
