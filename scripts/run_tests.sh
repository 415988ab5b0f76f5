#!/usr/bin/env bash
# The whole suite as two pytest processes at once: the live-Airflow tests (tests/deploy, one after another:
# two Airflow deployments at once would starve a 2-core machine) beside everything else. Each process has its
# own AIRFLOW_HOME (tests/conftest.py, OPENEO_TEST_SHARD). Exit status: failure if either failed.
# Usage: scripts/run_tests.sh PYTHON [pytest args...]
set -uo pipefail
python=$1
shift
log=build/test-deploy.log
mkdir -p build
OPENEO_TEST_SHARD=deploy "$python" -m pytest -ra -p no:cacheprovider "$@" tests/deploy >"$log" 2>&1 &
deploy_pid=$!
trap 'kill "$deploy_pid" 2>/dev/null' INT TERM
OPENEO_TEST_SHARD=main "$python" -m pytest -ra --ignore=tests/deploy "$@"
main_status=$?
wait "$deploy_pid"
deploy_status=$?
echo
echo "==================== tests/deploy (live Airflow; ran alongside, log $log) ===================="
cat "$log"
echo "run_tests: tests/deploy exit $deploy_status, the rest exit $main_status"
[ "$main_status" -eq 0 ] && [ "$deploy_status" -eq 0 ]
