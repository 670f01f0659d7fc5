#!/usr/bin/env bash
# Ephemeral GPU runners by just-in-time registration: every job gets a freshly registered runner
# that takes exactly one job and is then removed by GitHub, so nothing a job did survives into
# the next one's registration (together with the job-started/job-completed hooks for the host).
#
#   GITHUB_REPOSITORY   owner/repo the runner serves
#   GITHUB_PAT_FILE     file holding a token allowed to administer the repository's runners
#                       (fine-grained: "Administration: write"); read here, never echoed
#   RUNNER_DIR          an unpacked actions/runner release (default /opt/actions-runner)
#   RUNNER_LABELS       default self-hosted,linux,x64,gpu,8xH100 (the workflows' runs-on)
#
# Run it as a service (systemd Restart=always): one loop iteration = one job.
set -euo pipefail

: "${GITHUB_REPOSITORY:?owner/repo}"
: "${GITHUB_PAT_FILE:?file with a runner-admin token}"
RUNNER_DIR=${RUNNER_DIR:-/opt/actions-runner}
LABELS=${RUNNER_LABELS:-self-hosted,linux,x64,gpu,8xH100}
API=${GITHUB_API_URL:-https://api.github.com}

jit_config() {
  local name=$1 labels_json
  labels_json=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1].split(",")))' "$LABELS")
  curl -fsS -X POST "$API/repos/$GITHUB_REPOSITORY/actions/runners/generate-jitconfig" \
    -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" \
    -H "Authorization: Bearer $(cat "$GITHUB_PAT_FILE")" \
    -d "{\"name\": \"$name\", \"runner_group_id\": 1, \"labels\": $labels_json, \"work_folder\": \"_work\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["encoded_jit_config"])'
}

while true; do
  name="coldstart-$(hostname -s)-$(date +%s)"
  config=$(jit_config "$name")
  echo "[jit-runner] registered $name; waiting for one job"
  (cd "$RUNNER_DIR" && ./run.sh --jitconfig "$config") || echo "[jit-runner] runner exited $?"
  unset config
  rm -rf "$RUNNER_DIR/_work"   # the next job starts from an empty work folder
done
