#!/usr/bin/env bash
# Run the batch-job part of the third-party openEO test suite (openeo-test-suite, PyPI) against a fresh
# local backend. Not part of `make test`. Usage (from anywhere):
#
#   local_backend/run_test_suite.sh                 # stand-in spec: status codes and job flow only
#   OPENEO_API_SPEC=/path/to/openeo-api/openapi.yaml local_backend/run_test_suite.sh   # full schema checks
#
# Why a stand-in spec: the openeo-test-suite wheel on PyPI ships neither the openEO API spec
# (assets/openeo-api/openapi.yaml, a git submodule upstream) nor its payload examples, so as installed its
# API compliance module cannot even start. This script lays out what the suite looks for in a working
# directory: our own job payloads and, unless OPENEO_API_SPEC names the real spec, a permissive spec that
# lists the batch-job endpoints with schema-less responses (the suite then checks status codes and the
# create/start/wait/results/cancel/delete flow, but not response bodies).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/build/test-suite-venv"
WORK="$REPO/build/test-suite-run"
PORT="${PORT:-8097}"
SUITE_VERSION="${SUITE_VERSION:-0.2.2}"
UV="$(command -v uv || echo "$HOME/.local/bin/uv")"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import openeo_test_suite" 2>/dev/null; then
    "$UV" venv --quiet --allow-existing --python python3 "$VENV"
    "$UV" pip install --quiet --python "$VENV/bin/python" "openeo-test-suite==$SUITE_VERSION"
fi

# The suite looks for assets/ two levels above its package (its repository layout). Its relative-path
# fallback ("./assets/...") trips over its own os.path.join, so lay them out at that absolute place, which
# is inside our own build venv.
SUITE_ROOT="$("$VENV/bin/python" -c 'import pathlib, openeo_test_suite as s; print(pathlib.Path(s.__file__).parents[2])')"
rm -rf "$WORK" "$SUITE_ROOT/assets" "$SUITE_ROOT/src"
EXAMPLES="$SUITE_ROOT/src/openeo_test_suite/tests/general/payload_examples"
SPEC_DIR="$SUITE_ROOT/assets/openeo-api"
mkdir -p "$WORK" "$SPEC_DIR" "$EXAMPLES/post_jobs" "$EXAMPLES/patch_jobs" "$EXAMPLES/empty_payload"
cat > "$EXAMPLES/post_jobs/post_jobs_local.json" <<'JSON'
{
  "title": "compliance job",
  "description": "openeo-test-suite run against the local backend",
  "process": {
    "process_graph": {
      "load": {"process_id": "load_collection", "arguments": {"id": "S2_FOOBAR", "spatial_extent": null, "temporal_extent": null}},
      "save": {"process_id": "save_result", "arguments": {"data": {"from_node": "load"}, "format": "GTiff"}, "result": true}
    }
  }
}
JSON
cat > "$EXAMPLES/patch_jobs/patch_jobs_local.json" <<'JSON'
{
  "title": "compliance job, renamed",
  "process": {
    "process_graph": {
      "sum": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": true}
    }
  }
}
JSON
echo '{}' > "$EXAMPLES/empty_payload/empty.json"

if [ -n "${OPENEO_API_SPEC:-}" ]; then
    cp "$OPENEO_API_SPEC" "$SPEC_DIR/openapi.yaml"
    SPEC_KIND="openEO API spec from $OPENEO_API_SPEC"
else
    "$VENV/bin/python" - "$SPEC_DIR/openapi.yaml" <<'PY'
import sys

import yaml

op = {"responses": {"default": {"description": "any status, any body (not validated)"}}}
job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
paths = {
    "/.well-known/openeo": {"get": {**op, "servers": [{"url": "http://localhost"}]}},
    "/jobs": {"get": op, "post": op},
    "/jobs/{job_id}": {"parameters": job_id, "get": op, "patch": op, "delete": op},
    "/jobs/{job_id}/results": {"parameters": job_id, "get": op, "post": op, "delete": op},
    "/jobs/{job_id}/estimate": {"parameters": job_id, "get": op},
    "/jobs/{job_id}/logs": {"parameters": job_id, "get": op},
}
spec = {
    "openapi": "3.1.0",
    "info": {"title": "permissive stand-in for the openEO API spec", "version": "1.2.0"},
    "servers": [{"url": "http://localhost"}],
    "paths": paths,
}
with open(sys.argv[1], "w") as f:
    yaml.safe_dump(spec, f)
PY
    SPEC_KIND="permissive stand-in spec (status codes and flow only)"
fi

"$REPO/.venv/bin/python" -m local_backend.launcher --port "$PORT" --name compliance \
    --config '{"queue_seconds": 1, "run_seconds": 2}' > "$WORK/backend.out" 2>&1 &
LAUNCHER=$!
trap 'kill -TERM $LAUNCHER 2>/dev/null; wait $LAUNCHER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$PORT/_control/health" > /dev/null && break
    sleep 0.5
done

echo "openeo-test-suite $SUITE_VERSION, batch-job tests, against http://127.0.0.1:$PORT/openeo/1.2 with $SPEC_KIND"
cd "$WORK"
set +e
OPENEO_AUTH_METHOD=client_credentials OPENEO_AUTH_PROVIDER_ID=local \
OPENEO_AUTH_CLIENT_ID=local-client OPENEO_AUTH_CLIENT_SECRET=local-client-secret \
    "$VENV/bin/python" -m pytest -p no:cacheprovider -p openeo_test_suite.lib.pytest_plugin \
    --pyargs openeo_test_suite.tests.general -k jobs \
    -U "http://127.0.0.1:$PORT/openeo/1.2/" -q -rA --junitxml="$WORK/results.xml" "$@" | tee "$WORK/pytest.out"
STATUS=${PIPESTATUS[0]}
set -e
echo "results: $WORK/results.xml, $WORK/pytest.out"
exit "$STATUS"
