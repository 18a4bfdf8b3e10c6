#!/usr/bin/env bash
# Main job on a fresh box: install, start Redis if none answers, serve the embedded default model and
# score an example pair. Extra args go to `aesrm-demo` (e.g. --once to exit after the example).
source "$(dirname "$0")/common.sh"
.venv/bin/pip install -q -e '.[server,model]'
ensure_redis_binary
export AESRM_REDIS_URL="${AESRM_REDIS_URL:-redis://127.0.0.1:6379/0}"
if ! .venv/bin/python -c "import redis,sys; redis.Redis.from_url('$AESRM_REDIS_URL').ping()" 2>/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
exec .venv/bin/aesrm-demo "$@"
