#!/usr/bin/env bash
# The operator running 1,000 active health checks: 8 record sets of 125 static values,
# each with an HTTP check every 10 s against local HTTP servers on 127.0.1.1-125 (the
# same 125 endpoints serve all 8 sets). Reports the operator's RSS and CPU use over a
# minute of steady probing. A measurement, not a test.
#   hack/measure-checks.sh [SECONDS]     default 60
LOG_TAG=measure
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_STEADY=${1:-60}
PORT=18099
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
cargo_with_progress "release build" build --release --locked -p mvdns-operator
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
NS=measure-checks
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kubectl create namespace "$NS" >/dev/null

pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# 125 tiny HTTP servers, one per loopback address, in one Python process.
python3 - "$PORT" >"$MVDNS_TESTENV_DIR/measure-checks-http.log" 2>&1 <<'PY' &
import asyncio, sys
port = int(sys.argv[1])
async def handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    writer.close()
async def main():
    servers = [await asyncio.start_server(handle, f"127.0.1.{i}", port) for i in range(1, 126)]
    await asyncio.gather(*(s.serve_forever() for s in servers))
asyncio.run(main())
PY
pids+=($!)
sleep 1

for set in $(seq 0 7); do
  values=""
  for i in $(seq 1 125); do
    values+="{value: 127.0.1.$i, healthCheck: {type: HTTP, port: $PORT, path: /healthz, intervalSeconds: 10}},"
  done
  printf 'apiVersion: mvdns.io/v1alpha1\nkind: MultiValueRecordSet\nmetadata: {name: c%d, namespace: %s}\nspec: {name: c%d.checks.example.internal., type: A, values: [%s]}\n' \
    "$set" "$NS" "$set" "${values%,}" | kubectl apply -f - >/dev/null
done

"$TARGET/release/mvdns-operator" --lease-namespace "$NS" --admin-listen 127.0.0.1:18181 --log-format json \
  --probe-allow-cidr 127.0.1.0/25 \
  >"$MVDNS_TESTENV_DIR/measure-checks-operator.log" 2>&1 &
OP=$!
pids+=("$OP")
log "waiting until all 1000 checks have a first result"
until [ "$(kubectl -n "$NS" get mvrs -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for s in d["items"] for v in (s.get("status") or {}).get("values", []) if (v.get("check") or {}).get("lastResult") == "Success"))')" -ge 1000 ]; do
  kill -0 "$OP" || die "the operator exited"
  sleep 2
done
ticks() { awk '{print $14 + $15}' "/proc/$OP/stat"; }
before=$(ticks)
log "steady probing for ${SECONDS_STEADY}s"
sleep "$SECONDS_STEADY"
after=$(ticks)
probes=$(curl -s 127.0.0.1:18181/metrics | awk '/^mvdns_operator_probe_results_total/ {s += $2} END {print s}')
printf 'RESULT checks=1000 interval_s=10 rss_mib=%.1f peak_rss_mib=%.1f cpu_percent=%.2f probes_total=%s\n' \
  "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$OP/status")" "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$OP/status")" \
  "$(echo "($after - $before) / $SECONDS_STEADY" | bc -l)" "$probes"
kubectl delete namespace "$NS" --wait=false >/dev/null
