# syntax=docker/dockerfile:1.7
# AesRM Triton image: NGC tritonserver + the repo's model_repository/ + the `service` package
# (the aesrm_proxy python-backend model imports it; aesrm_cot, the streaming explainer, needs transformers).
# Build from the repo root:   docker build -f docker/triton.Dockerfile -t aesrm-triton .
#
# Base image choice (requires-python >= 3.11):
#   24.10-py3 ships Python 3.10, which would need `pip install --ignore-requires-python` and would run
#   the service package on an interpreter it is not tested on. 25.01-py3 and later are Ubuntu 24.04
#   with Python 3.12, and Triton's python-backend stub is built for that same interpreter, so we use
#   a 25.x base and keep requires-python honest. Note: 25.x needs an R570+ driver (or CUDA forward
#   compatibility on data-centre GPUs); override TRITON_IMAGE if the fleet is older.
# TensorRT plans (aesrm_proxy_trt) are tied to the exact TensorRT version of this image: build them
# with the same TRITON_IMAGE tag (see model_repository's build script).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.01-py3
FROM ${TRITON_IMAGE}

# Ubuntu 24.04 marks the system python as externally managed (PEP 668). This image is a single-purpose
# appliance whose python exists only for the python backend, so installing into it is intended.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1

# torch pinned in its own layer (largest download, changes rarely). The default index serves the
# CUDA build, which is what the GPU python-backend models want.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN python3 -m pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# The service package (model definitions, contract, preprocessing) used by the python backends.
WORKDIR /opt/aesrm
COPY pyproject.toml README.md ./
COPY service ./service
RUN python3 -m pip install ".[model]"

# aesrm_cot (CoT explainer, opt-in via TRITON_LOAD_MODELS) generates with transformers. pyproject has no
# extra for it yet, so it is pinned here; empty the ARG to build a proxy-only image.
ARG COT_PACKAGES="transformers==5.23.0"
RUN if [ -n "${COT_PACKAGES}" ]; then python3 -m pip install ${COT_PACKAGES}; fi

# Model repository last: the layer that changes most often.
COPY model_repository /models

# Triton images ship a non-root `triton-server` user (uid 1000); the model repository is read-only.
USER triton-server

EXPOSE 8000 8001 8002

# Readiness must mean "aesrm_proxy is loaded":
#  * explicit model control loads exactly the models named in TRITON_LOAD_MODELS (the TensorRT and CoT
#    models are opt-in: a plan built for another GPU or a missing CoT checkpoint must not block
#    serving the proxy);
#  * --strict-readiness=true makes /v2/health/ready false until every loaded model is ready;
#  * --exit-on-error=true turns a failed load into a crash (CrashLoopBackOff/alert) rather than a
#    silently "live" server with no model.
#  * TRITON_MODEL_CONFIG_NAME=gpu passes --model-config-name=gpu, so models with a configs/gpu.pbtxt
#    (aesrm_proxy, aesrm_base: KIND_GPU instances) run on the GPU this image is built for; a model without
#    one falls back to its config.pbtxt. Set it empty to run the image on a CPU-only host (KIND_CPU).
ENV TRITON_LOAD_MODELS=aesrm_proxy \
    TRITON_MODEL_CONFIG_NAME=gpu
HEALTHCHECK --interval=10s --timeout=3s --start-period=180s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]

# Shell form wrapper (exec'd, so tritonserver is PID 1 and gets SIGTERM) to expand the model list and
# the config name.
ENTRYPOINT ["/bin/bash", "-c", "set -euo pipefail; args=(); for m in ${TRITON_LOAD_MODELS//,/ }; do args+=(--load-model=\"$m\"); done; if [ -n \"${TRITON_MODEL_CONFIG_NAME:-}\" ]; then args+=(--model-config-name=\"$TRITON_MODEL_CONFIG_NAME\"); fi; exec tritonserver --model-repository=/models --model-control-mode=explicit \"${args[@]}\" --strict-readiness=true --exit-on-error=true --http-port=8000 --grpc-port=8001 --metrics-port=8002 --allow-metrics=true --allow-gpu-metrics=true --log-verbose=0 \"$@\"", "--"]
