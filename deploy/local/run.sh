#!/usr/bin/env bash
# Main job on a fresh box: install, use a Redis of our own (deploy/local/redis.sh: a dedicated redis-server on
# 127.0.0.1:6390 unless AESRM_REDIS_URL is set; a database with foreign keys is refused), serve the embedded
# default model and score an example pair. Extra args go to `aesrm-demo` (e.g. --once to exit after the example).
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/redis.sh"
.venv/bin/pip install -q -e '.[server,model]'
ensure_redis_binary
ensure_local_redis
exec .venv/bin/aesrm-demo "$@"
