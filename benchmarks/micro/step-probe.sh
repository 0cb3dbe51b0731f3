#!/usr/bin/env bash
# One step of the suite's one-to-one ladder, looked at from outside the server while it runs:
#
#   bash benchmarks/micro/step-probe.sh <server> <scenario> <rate> <probe> [seconds]
#
#   server    parkline | floor | nchan      (the suite's names; Parkline in its default topology)
#   scenario  one2one | longpoll            (SSE or long-poll subscribers)
#   probe     sched   per thread of the server, the load generator and the publisher: CPU and the
#                     time spent runnable but waiting for a core (/proc/<pid>/task/<tid>/schedstat)
#             strace  system calls of the server by count (strace -c -f; it slows the server)
#             perf    the server's CPU samples by symbol and by library (perf record -e cpu-clock;
#                     Parkline runs with --perf-basic-prof so its JIT code has names)
#             ctx     context switches per second of the main thread (the event loop) of the server's,
#                     the load generator's and the publisher's processes (/proc/<pid>/status, the
#                     leader thread's counts): voluntary (it waited for I/O) and involuntary (the
#                     scheduler took the core from it, e.g. for a task its write woke)
#             (Nchan: strace and perf watch one of its two workers)
#
# The step runs for 20 s right after the ladder's warm-up (STEP_DURATION=20, one rate; WARMUP must
# stay above 0); the probe starts about 1 s into it and lasts `seconds` (default 8). Other knobs of
# benchmarks/run.ts (SUBSCRIBERS, ...) pass through. The suite's own report goes to
# /tmp/step-probe-<server>.md, the probe's to stdout. The script only reads /proc and attaches
# strace or perf to the server; the one process it may signal is the suite run it started.
# Needs strace or perf for those probes: apt-get install strace linux-perf
set -euo pipefail
server=${1:?server}; scenario=${2:?scenario}; rate=${3:?rate}; probe=${4:?probe}; secs=${5:-8}
case $probe in
  sched|ctx) ;;
  strace) command -v strace >/dev/null || { echo "strace is missing: apt-get install strace" >&2; exit 2; } ;;
  perf) command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 2; } ;;
  *) echo "unknown probe $probe (sched, ctx, strace, perf)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
export PATH="$PWD/node_modules/.bin:$PATH"
export LC_ALL=C
log=$(mktemp)
rm -f "/tmp/step-probe-$server.md"
extra=()
[ "$probe" = perf ] && extra=(PARKLINE_NODE_ARGS="${PARKLINE_NODE_ARGS:-} --perf-basic-prof")
env "${extra[@]}" SERVERS="$server" SCENARIOS="$scenario" ONE2ONE_RATES="$rate" STEP_DURATION=20 \
  BENCH_OUT="/tmp/step-probe-$server.md" node benchmarks/run.ts >"$log" 2>&1 &
run=$!
# on an early exit, stop the suite run, if that pid is still it
stop_run () { tr '\0' ' ' < "/proc/$run/cmdline" 2>/dev/null | grep -q 'benchmarks/run.ts' && kill "$run" 2>/dev/null; rm -f "$log"; }
trap stop_run EXIT

# the measured step starts when the warm-up's summary line is printed (at most 120 s)
for _ in $(seq 1200); do
  grep -q "warm-up: " "$log" && break
  kill -0 $run 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep -q "warm-up: " "$log" || { echo "no warm-up line in 120 s" >&2; exit 1; }
sleep 2

# the server's processes: descendants of this run that are the server (nginx: master and workers)
descendants () { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
all=$(descendants $run)
pick () { for p in $all; do tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qE "$1" && echo "$p"; done; true; }
case $server in
  nchan) servers=$(pick 'nginx') ;;
  floor) servers=$(pick 'floor-server') ;;
  *) servers=$(pick 'parkline.ts') ;;
esac
[ -n "$servers" ] || { echo "no $server process found under the run" >&2; exit 1; }
main=$(echo "$servers" | head -1)
[ "$server" = nchan ] && main=$(echo "$servers" | tail -1)

case $probe in
  sched)
    roles="$(for p in $servers; do echo "$server:$p"; done) $(for p in $(pick 'loadgen.ts child'); do echo "loadgen:$p"; done) $(for p in $(pick 'publisher.ts child'); do echo "publisher:$p"; done)"
    snap () {
      for r in $roles; do p=${r#*:}; for t in /proc/$p/task/*; do
        [ -r "$t/schedstat" ] || continue
        echo "${r%%:*}/$p/${t##*/} $(tr ' ' _ < "$t/comm") $(cat "$t/schedstat")"
      done; done | sort -k1,1
    }
    a=$(snap); sleep "$secs"; b=$(snap)
    echo "role/pid/tid thread: CPU and runnable-but-waiting time as % of one core over ${secs} s (schedstat)"
    join <(echo "$a") <(echo "$b") | awk -v s="$secs" '{
      cpu = ($7 - $3) / s / 1e7; wait = ($8 - $4) / s / 1e7; n = $9 - $5
      if (cpu >= 0.5) printf "%s %s cpu %.1f%% waiting %.1f%% runs %d (%.0f us waited each)\n", $1, $2, cpu, wait, n, (n > 0 ? ($8 - $4) / n / 1000 : 0)
    }'
    ;;
  ctx)
    roles="$(for p in $servers; do echo "$server:$p"; done) $(for p in $(pick 'loadgen.ts child'); do echo "loadgen:$p"; done) $(for p in $(pick 'publisher.ts child'); do echo "publisher:$p"; done)"
    snap () {
      for r in $roles; do p=${r#*:}
        [ -r "/proc/$p/status" ] || continue
        echo "${r%%:*}/$p $(awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v, n }' "/proc/$p/status")"
      done | sort -k1,1
    }
    a=$(snap); sleep "$secs"; b=$(snap)
    echo "role/pid: the main thread's context switches per second over ${secs} s (/proc/<pid>/status)"
    join <(echo "$a") <(echo "$b") | awk -v s="$secs" '{ printf "%s voluntary %d/s involuntary %d/s\n", $1, ($4 - $2) / s, ($5 - $3) / s }'
    ;;
  strace)
    out=$(mktemp)
    timeout -s INT "$secs" strace -c -f -o "$out" -p "$main" >/dev/null 2>&1 || true
    echo "system calls of pid $main over ${secs} s:"
    head -16 "$out"; rm -f "$out"
    ;;
  perf)
    data=$(mktemp)
    perf record -e cpu-clock -F 2000 -o "$data" -p "$main" -- sleep "$secs" >/dev/null 2>&1 ||
      { rm -f "$data"; echo "perf record failed (perf_event_paranoid? perf for this kernel?)" >&2; exit 1; }
    perf report -i "$data" --stdio 2>/dev/null | grep '^# Samples' || true
    perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null | awk '!/^#/ && NF > 0 && n++ < 8' || true
    perf report -i "$data" --no-children --sort sym --stdio 2>/dev/null | awk -v top="${TOP:-40}" '!/^#/ && NF > 0 && n++ < top' || true
    rm -f "$data"
    ;;
esac
wait $run || true
trap - EXIT
rm -f "$log"
row=$(grep -E "^\| [^|]+ \| (one2one|long-poll) $rate/s \| [0-9,]+ \| [0-9.]+ \|" "/tmp/step-probe-$server.md" 2>/dev/null | tail -1 || true)
if [ -n "$row" ]; then
  echo "$row" | awk -F'|' '{ printf "step latency (ms): p50 %s p99 %s p99.9 %s\n", $9, $10, $11 }'
else
  echo "no latency row for the step in /tmp/step-probe-$server.md"
fi
# the step's server CPU per message (the ladder's row at this rate, not the warm-up's)
fmt=$(echo "$rate" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')
cpu=$(grep -E "^\| [^|]+ \| (SSE|long-poll) \| $fmt \|" "/tmp/step-probe-$server.md" 2>/dev/null | grep -v warm-up | tail -1 | awk -F'|' '{ gsub(/ /, "", $11); print $11 }' || true)
[ -n "$cpu" ] && echo "step server CPU per message (µs, utime + stime of its processes): $cpu"
true
