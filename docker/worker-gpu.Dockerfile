# A GPU worker: celery on the colorize queue, ONNX Runtime's CUDA provider (the "gpu" extra).
# The CUDA and cuDNN runtime libraries come from the base image (onnxruntime-gpu >= 1.18 is
# built for CUDA 12 and cuDNN 9); the NVIDIA driver comes from the host (NVIDIA Container Toolkit).
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive

# The image maths' compiled kernels are cached where the unprivileged user can write
# (shared/colour/compiled.py): compiled once per container, not once per pool process.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/colorize
ENV PATH=/opt/colorize/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY shared ./shared
COPY worker ./worker
COPY models ./models
COPY cli ./cli
COPY client ./client
# onnxruntime (a base dependency) and onnxruntime-gpu install the same "onnxruntime" package:
# remove the CPU one, then lay the GPU one down again over the files the removal took with it.
RUN pip install ".[gpu]" \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps \
        "onnxruntime-gpu==$(python -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')" \
    && rm -rf /src

RUN useradd --system --no-create-home --shell /usr/sbin/nologin colorize
USER colorize
WORKDIR /home/colorize

CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "colorize", "--loglevel", "INFO"]
