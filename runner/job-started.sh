#!/usr/bin/env bash
# Self-hosted runner hook: ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/coldstart/runner/job-started.sh
# (in the runner's .env). Runs before every job on the GPU pool: kills stray GPU processes a
# previous job left (the runner user's only: no root), cleans the workspace's cold-start
# leftovers, then runs the NVML pre-flight. A non-zero exit fails the job before it starts,
# so a cold start is never measured on a busy, throttled or degraded machine.
#
#   COLDSTART_BIN   coldstart of a tools venv on the host (default: coldstart on PATH); without
#                   it the pre-flight is skipped with a warning (the workflows run it again).
#   COLDSTART_GPUS  GPUs this runner must have (default 8).
set -uo pipefail

log() { echo "[coldstart job-started] $*"; }

stray_gpu_pids() {
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-compute-apps=pid --format=csv,noheader,nounits 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$' || true
}

kill_stray() {
  local me pid owner
  me=$(id -u)
  for pid in $(stray_gpu_pids); do
    owner=$(stat -c %u "/proc/$pid" 2>/dev/null) || continue
    if [ "$owner" = "$me" ]; then
      log "killing stray GPU process $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120))"
      kill -TERM "$pid" 2>/dev/null || true
    else
      log "GPU process $pid belongs to uid $owner, not this runner: the pre-flight will fail on it"
    fi
  done
  sleep "${COLDSTART_KILL_GRACE_S:-5}"
  for pid in $(stray_gpu_pids); do
    [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = "$me" ] && kill -KILL "$pid" 2>/dev/null || true
  done
}

clean_workspace() {
  local ws=${GITHUB_WORKSPACE:-}
  [ -n "$ws" ] && [ -d "$ws" ] || return 0
  if [ -d "$ws/head/.git" ]; then git -C "$ws/head" worktree prune 2>/dev/null || true; fi
  rm -rf "$ws"/runs-* "$ws/runs" "$ws/base" "$ws/head" "$ws/comment.md"
  log "cleaned cold-start leftovers under $ws"
}

kill_stray
clean_workspace
bin=${COLDSTART_BIN:-coldstart}
if command -v "$bin" >/dev/null; then
  "$bin" preflight --gpus "${COLDSTART_GPUS:-8}"
  rc=$?
  [ "$rc" -eq 0 ] || log "pre-flight failed (exit $rc): this job will not run on this machine"
  exit "$rc"
fi
log "warning: $bin not found; pre-flight skipped (set COLDSTART_BIN in the runner's .env)"
exit 0
