#!/usr/bin/env bash
# Self-hosted runner hook: ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/opt/coldstart/runner/job-completed.sh
# After every job (also a cancelled one): stop what a job may have left behind — GPU compute
# processes and a Ray cluster of the runner user — and remove the workspace's cold-start files
# (runs-*, worktrees, .coldstart scratch), so the next job starts on a clean machine.
set -uo pipefail

log() { echo "[coldstart job-completed] $*"; }
me=$(id -u)

if command -v ray >/dev/null; then ray stop --force >/dev/null 2>&1 && log "ray stopped" || true; fi
if command -v nvidia-smi >/dev/null; then
  for sig in TERM KILL; do
    for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader,nounits 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$'); do
      [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = "$me" ] || continue
      log "$sig GPU process $pid"
      kill "-$sig" "$pid" 2>/dev/null || true
    done
    [ "$sig" = TERM ] && sleep "${COLDSTART_KILL_GRACE_S:-10}"
  done
fi
ws=${GITHUB_WORKSPACE:-}
if [ -n "$ws" ] && [ -d "$ws" ]; then
  if [ -d "$ws/head/.git" ]; then git -C "$ws/head" worktree prune 2>/dev/null || true; fi
  rm -rf "$ws"/runs-* "$ws/runs" "$ws/base" "$ws/head" "$ws/.coldstart" "$ws/comment.md"
  log "cleaned $ws"
fi
exit 0
