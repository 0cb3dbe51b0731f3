#!/bin/bash
# Multiplexed SSE broadcast (2,000 subscribers of /sub/b,x, published on b), an older tree against
# this one, in turn, ROUNDS rounds, bodies of 100 B and 8 KiB: deliveries/s and the server's CPU µs
# per delivery (benchmarks/micro/broadcast-ab.ts). Each server is started fresh and stopped (by its
# PID) after its run; every run is bounded (D=8 s, 60 s at most).
#
#   git archive <commit> | tar -x -C /tmp/old && ln -s "$PWD/node_modules" /tmp/old/node_modules
#   OLD=/tmp/old bash benchmarks/micro/sse-multiplexed-ab.sh
set -u
: "${OLD:?OLD=<an older tree of the repository, with node_modules>}"
NEW=$(cd "$(dirname "$0")/../.." && pwd)
export PATH=$NEW/node_modules/.bin:$PATH
for round in $(seq 1 "${ROUNDS:-3}"); do
  for side in old new; do
    for body in 100 8192; do
      dir=$NEW; [ "$side" = old ] && dir=$OLD
      port=$((18400 + RANDOM % 500))
      (cd "$dir" && exec node bin/parkline.ts serve --port $port --host 127.0.0.1 --log-level warn > /dev/null 2>&1) &
      spid=$!
      for _ in $(seq 1 50); do curl -s -o /dev/null 127.0.0.1:$port/health && break; sleep 0.2; done
      out=$(cd "$NEW" && PORT=$port MODE=sse N=2000 K=8 D=8 BODY=$body SUB=/sub/b,x SERVER_PID=$spid timeout 60 node benchmarks/micro/broadcast-ab.ts)
      echo "$round $side $out"
      kill $spid; wait $spid 2>/dev/null
    done
  done
done
