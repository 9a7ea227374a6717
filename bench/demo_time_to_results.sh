#!/bin/bash
# The offline demo timed as a person sees it (issue 15: Results with numbers in under 5 minutes on 2 cores):
# `emtui demo` in tmux at 80x24, seconds from the command to the TUI, to the chain's last job, and to the
# Results screen (key 7) showing a CI. Needs tmux, sqlite3 and bc.
#   bench/demo_time_to_results.sh [FOLDER]      (default: a new temporary folder; PYTHON=... to choose python)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${1:-$(mktemp -d /tmp/emtui-demo-time.XXXXXX)}
PY=${PYTHON:-python}
S=demo-time-$$
mkdir -p "$D"; rm -rf "$D/x.db" "$D/x.db-wal" "$D/x.db-shm" "$D/x.db.runs"
t0=$(date +%s.%N)
el() { echo "$(date +%s.%N) - $t0" | bc; }
tmux new-session -d -s "$S" -x 80 -y 24 "cd $ROOT && PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} $PY -m emtui demo --db $D/x.db"
trap 'tmux kill-session -t "$S" 2>/dev/null || true' EXIT
until tmux capture-pane -p -t "$S" | grep -q "Studies"; do sleep 0.5; done
echo "TUI open: +$(el) s"
while true; do
  left=$(sqlite3 "$D/x.db" "SELECT count(*) FROM jobs WHERE status NOT IN ('done', 'failed', 'cancelled')" 2>/dev/null || echo x)
  all=$(sqlite3 "$D/x.db" "SELECT count(*) FROM jobs" 2>/dev/null || echo 0)
  [ "$all" != 0 ] && [ "$left" = 0 ] && break
  sleep 1
done
echo "every job done: +$(el) s"
sqlite3 "$D/x.db" "SELECT id, kind, status, started_at, finished_at FROM jobs"
tmux send-keys -t "$S" 7
until tmux capture-pane -p -t "$S" | grep -q "\[[0-9.]*,"; do sleep 0.3; done
echo "Results with numbers: +$(el) s"
sleep 0.5
tmux capture-pane -p -t "$S" | sed -n 3,11p
