# Shared by deploy/local/run.sh and tests/run.sh: a project venv and a redis-server binary.
# Idempotent: re-running reuses what is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# torch first and pinned: on project machines 2.13.0 is a local CPU wheel; an open range on a box
# without torch would download a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0

# ensure_apt_package COMMAND PACKAGE: install PACKAGE from Debian when COMMAND is missing.
ensure_apt_package() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}

ensure_redis_binary() { ensure_apt_package redis-server redis-server; }
