#!/usr/bin/env bash
# Starts the local PostgreSQL (job-database tests) and Redis (Celery deployment test) when this machine has
# them and they are down. On a machine without them nothing fails here: those tests skip and say what is missing.
set -u
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is down; starting it" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
# Redis: the broker of the CeleryExecutor deployment test (tests/system/deploy/test_distributed.py).
if command -v redis-server >/dev/null 2>&1 \
    && ! (command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
  echo "Redis is down; starting it" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi
exit 0
