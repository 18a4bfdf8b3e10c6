# ensure_local_redis (sourced by deploy/local/run.sh; needs redis-server and redis-cli on PATH):
# export AESRM_REDIS_URL for the local run, pointing at a Redis that is ours.
#
#  * Default: a dedicated redis-server on 127.0.0.1:${AESRM_LOCAL_REDIS_PORT:-6390}, db 0, no persistence,
#    started here when nothing answers there (pid and log in .cache/local-redis/). Never 6379: a Redis
#    already running on the default port belongs to something else.
#  * AESRM_REDIS_URL set by you is used as given.
#  * Either way, a database holding keys that are not AesRM's (all of ours start with "aesrm:") is refused
#    rather than written into.

ensure_local_redis() {
  local root port url dir
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  port="${AESRM_LOCAL_REDIS_PORT:-6390}"
  url="${AESRM_REDIS_URL:-redis://127.0.0.1:${port}/0}"
  if ! redis-cli -u "$url" ping >/dev/null 2>&1; then
    if [ -n "${AESRM_REDIS_URL:-}" ]; then
      echo "AESRM_REDIS_URL=$url does not answer" >&2
      return 1
    fi
    dir="${AESRM_LOCAL_REDIS_DIR:-$root/.cache/local-redis}"
    mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$dir" --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" >/dev/null
    local i
    for i in $(seq 50); do
      redis-cli -u "$url" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -u "$url" ping >/dev/null 2>&1 || { echo "redis-server did not start on port $port (see $dir/redis-$port.log)" >&2; return 1; }
    echo "started a dedicated redis-server on 127.0.0.1:$port (pid $(cat "$dir/redis-$port.pid"))" >&2
  fi
  local keys foreign
  keys="$(redis-cli -u "$url" --scan)" || { echo "cannot list the keys of $url" >&2; return 1; }
  foreign="$(printf '%s\n' "$keys" | grep -m1 -v -e '^aesrm:' -e '^$' || true)"
  if [ -n "$foreign" ]; then
    echo "refusing $url: it holds keys that are not AesRM's (e.g. '$foreign')." >&2
    echo "Use an empty database (AESRM_REDIS_URL=redis://HOST:PORT/N) or another port (AESRM_LOCAL_REDIS_PORT)." >&2
    return 1
  fi
  export AESRM_REDIS_URL="$url"
}
