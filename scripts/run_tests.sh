#!/usr/bin/env bash
# The whole suite as three pytest processes at once, each with its own AIRFLOW_HOME (tests/conftest.py,
# OPENEO_TEST_SHARD):
#   main    everything but tests/deploy;
#   deploy  the live-Airflow tests, one after another (two busy Airflow deployments at once starve 2 cores);
#   readme  the README's code as written (tests/deploy/test_readme.py). It runs the README's DAGs with the
#           README's poll_interval=60, so its Airflow spends minutes idle between polls: beside the others it
#           costs little CPU, after them it would add ~6 minutes of waiting to the suite.
# Exit status: failure if any failed. Usage: scripts/run_tests.sh PYTHON [pytest args...]
set -uo pipefail
python=$1
shift
mkdir -p build
readme_tests=tests/deploy/test_readme.py

OPENEO_TEST_SHARD=deploy "$python" -m pytest -ra -p no:cacheprovider --durations=15 "$@" \
    --ignore="$readme_tests" tests/deploy >build/test-deploy.log 2>&1 &
deploy_pid=$!
OPENEO_TEST_SHARD=readme "$python" -m pytest -ra -p no:cacheprovider --durations=5 "$@" \
    "$readme_tests" >build/test-readme.log 2>&1 &
readme_pid=$!
trap 'kill "$deploy_pid" "$readme_pid" 2>/dev/null' INT TERM

OPENEO_TEST_SHARD=main "$python" -m pytest -ra --durations=15 --ignore=tests/deploy "$@"
main_status=$?
wait "$deploy_pid"
deploy_status=$?
wait "$readme_pid"
readme_status=$?
for shard in deploy readme; do
    echo
    echo "==================== $shard shard (ran alongside, log build/test-$shard.log) ===================="
    cat "build/test-$shard.log"
done
echo "run_tests: main exit $main_status, tests/deploy exit $deploy_status, README tests exit $readme_status"
[ "$main_status" -eq 0 ] && [ "$deploy_status" -eq 0 ] && [ "$readme_status" -eq 0 ]
