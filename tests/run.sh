#!/usr/bin/env bash
# The whole test suite on a fresh box (CI runs exactly this). Tests start their own redis-server and
# tritonserver; set REDIS_URL to use an existing Redis instead. Extra args go to pytest.
source "$(dirname "$0")/../deploy/local/common.sh"
.venv/bin/pip install -q -e '.[test]'
ensure_redis_binary
ensure_apt_package chromium chromium  # the web page test drives Debian's headless Chromium
ensure_apt_package promtool prometheus  # promtool checks the alert rules and Prometheus config
exec .venv/bin/python -m pytest "$@"
