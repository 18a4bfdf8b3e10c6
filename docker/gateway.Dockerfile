# syntax=docker/dockerfile:1.7
# AesRM gateway: FastAPI + PyAV ingest + Redis cache; embedded CPU proxy model or Triton client.
# Build from the repo root:   docker build -f docker/gateway.Dockerfile -t aesrm-gateway .
#
# Two stages: the builder has pip caches and build tooling; the runtime stage gets only the venv,
# which keeps the image lean and free of compilers.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, pinned, from the CPU index: the gateway never touches a GPU (Triton does), and the
# default PyPI wheel would drag in several GB of CUDA libraries. Its own layer so code changes
# don't re-download it.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --upgrade pip \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Dependencies next (only invalidated by pyproject changes), then the package itself.
# PyAV, hiredis and orjson ship manylinux wheels (PyAV bundles FFmpeg), so no apt packages needed.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install ".[server,model]"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="aesrm-gateway" \
      org.opencontainers.image.description="AesRM reward-scoring gateway (FastAPI)" \
      org.opencontainers.image.licenses="Apache-2.0"

# Fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without /etc/passwd lookups.
ARG UID=10001
RUN groupadd --system --gid ${UID} aesrm \
 && useradd --system --uid ${UID} --gid aesrm --home-dir /home/aesrm --create-home --shell /usr/sbin/nologin aesrm

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Listen on all interfaces inside the container (the service default is loopback).
    AESRM_HOST=0.0.0.0 \
    AESRM_PORT=8000 \
    # Keep torch intra-op threads in line with the container's CPU allotment (override per deploy).
    AESRM_TORCH_THREADS=2 \
    OMP_NUM_THREADS=2

USER ${UID}:${UID}
WORKDIR /home/aesrm
EXPOSE 8000

# /health/ready is 503 until the backend and model are loaded, so `docker ps` / compose
# `service_healthy` reflect real serving readiness. The slim image has no curl: use python.
# start-period covers model load.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('AESRM_PORT','8000'), timeout=2); sys.exit(0)"]

# Exec form: uvicorn is PID 1 and receives SIGTERM directly for graceful shutdown.
ENTRYPOINT ["aesrm-serve"]
