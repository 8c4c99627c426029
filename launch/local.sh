#!/usr/bin/env bash
# Starts N fajax processes on this machine, as a multi-host run would, for trying multi-process
# training without a cluster (CPU collectives over gloo).
#
#   launch/local.sh N [DEVICES_PER_PROCESS] -- --config=mnist_bp --workdir=runs/x [...]
#
# Every process gets --coordinator_address=localhost:PORT --num_processes=N --process_id=I and
# DEVICES_PER_PROCESS simulated CPU devices (default 1). Process 0 prints; the others log to
# files under ${FAJAX_LAUNCH_LOGS:-/tmp/fajax_launch}. When one process fails, the rest are
# stopped (TERM, then KILL those still running 5 s later) and the script exits with its status.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0"; exit 2
fi
num_processes=$1; shift
devices=1
if [[ $1 != -- ]]; then devices=$1; shift; fi
[[ $1 == -- ]] && shift
port=${FAJAX_COORDINATOR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}
logs=${FAJAX_LAUNCH_LOGS:-/tmp/fajax_launch}
mkdir -p "$logs"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"

pids=()
for ((i = 0; i < num_processes; i++)); do
  args=(-m fajax.main "$@" --coordinator_address="localhost:$port"
        --num_processes="$num_processes" --process_id="$i")
  if [[ $i -eq 0 ]]; then
    python3 "${args[@]}" &
  else
    python3 "${args[@]}" >"$logs/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

# The first process to fail stops the run: the others would wait for it in their collectives.
status=0
for _ in "${pids[@]}"; do
  wait -n && continue
  status=$?
  if [[ $status -eq 75 ]]; then  # fajax.preemption: every process stopped at the same step
    echo "launch/local.sh: stopped by a signal after a checkpoint (exit 75); the same command resumes" >&2
  else
    echo "launch/local.sh: a process failed (exit $status); stopping the others" >&2
  fi
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # Up to 5 s for them to exit (a checkpoint being written finishes), then KILL.
  for ((tenth = 0; tenth < 50; tenth++)); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  break
done
wait 2>/dev/null || true
exit "$status"
