#!/usr/bin/env bash
# The whole suite in two lanes plus one idle shard, each pytest process with its own AIRFLOW_HOME
# (tests/conftest.py, OPENEO_TEST_SHARD):
#   lane 1  tests/system/deploy: the live-Airflow tests, one after another, except those of lane 2;
#   lane 2  everything but tests/system/deploy, then the live-Airflow modules in $after_main (each starts an Airflow
#           of its own), so that both lanes end at about the same time and no more than two busy Airflow
#           deployments ever share the 2 cores;
#   readme  the README's code as written (tests/system/deploy/test_readme.py). It runs the README's DAGs with the
#           README's poll_interval=60, so its Airflow spends minutes idle between polls: beside the lanes it
#           costs little CPU, after them it would add ~5 minutes of waiting to the suite.
# Exit status: failure if any failed. Usage: scripts/run_tests.sh PYTHON [pytest args...]
set -uo pipefail
python=$1
shift
mkdir -p build
readme_tests=tests/system/deploy/test_readme.py
after_main=(tests/system/deploy/test_distributed.py tests/system/deploy/test_ui_browser.py tests/system/deploy/test_pool_check.py)
ignore_after_main=()
for module in "${after_main[@]}"; do
    ignore_after_main+=(--ignore="$module")
done

OPENEO_TEST_SHARD=deploy "$python" -m pytest -ra -p no:cacheprovider --durations=15 "$@" \
    --ignore="$readme_tests" "${ignore_after_main[@]}" tests/system/deploy >build/test-deploy.log 2>&1 &
deploy_pid=$!
OPENEO_TEST_SHARD=readme "$python" -m pytest -ra -p no:cacheprovider --durations=5 "$@" \
    "$readme_tests" >build/test-readme.log 2>&1 &
readme_pid=$!
trap 'kill "$deploy_pid" "$readme_pid" 2>/dev/null' INT TERM

OPENEO_TEST_SHARD=main "$python" -m pytest -ra --durations=15 --ignore=tests/system/deploy "$@"
main_status=$?
echo
echo "==================== live-Airflow modules after the rest: ${after_main[*]} ===================="
OPENEO_TEST_SHARD=deploy2 "$python" -m pytest -ra -p no:cacheprovider --durations=5 "$@" "${after_main[@]}"
after_main_status=$?
wait "$deploy_pid"
deploy_status=$?
wait "$readme_pid"
readme_status=$?
for shard in deploy readme; do
    echo
    echo "==================== $shard shard (ran alongside, log build/test-$shard.log) ===================="
    cat "build/test-$shard.log"
done
# Exit status 5 (nothing collected: a -k filter in PYTEST_ARGS left a shard empty) is no failure for the side shards.
for name in after_main_status deploy_status readme_status; do
    [ "${!name}" -eq 5 ] && printf -v "$name" 0
done
echo "run_tests: the rest exit $main_status, then ${after_main[*]} exit $after_main_status;" \
    "tests/system/deploy exit $deploy_status; README tests exit $readme_status"
[ "$main_status" -eq 0 ] && [ "$after_main_status" -eq 0 ] && [ "$deploy_status" -eq 0 ] && [ "$readme_status" -eq 0 ]
