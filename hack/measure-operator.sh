#!/usr/bin/env bash
# Measures the operator's and the DNS server's memory with many pods: N KWOK pods behind
# 100 record sets, the release binaries running under the chart's ServiceAccounts, RSS
# once every record set's status lists its pods (operator) and once the DNS server
# serves them all, plus the status size per record set. A measurement, not a test
# (see BENCHMARKS.md).
#   hack/measure-operator.sh [PODS ...]      default: 1000 5000
LOG_TAG=measure
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SETS=100
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
cargo_with_progress "release build" build --release --locked -p mvdns-operator -p mvdns-server
OPERATOR="$TARGET/release/mvdns-operator"
DNS="$TARGET/release/mvdns-server"
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null

# pods_yaml NS COUNT: COUNT pods spread over the fake nodes, label set=<i mod SETS>.
pods_yaml() {
  local ns=$1 count=$2 i
  for ((i = 0; i < count; i++)); do
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: p-%d, namespace: %s, labels: {set: "s%d"}}\nspec:\n  nodeName: kwok-node-%d\n  tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]\n  containers: [{name: app, image: registry.invalid/app:1}]\n' \
      "$i" "$ns" $((i % SETS)) $((i % 3))
  done
}

sets_yaml() {
  local ns=$1 i
  for ((i = 0; i < SETS; i++)); do
    printf -- '---\napiVersion: mvdns.io/v1alpha1\nkind: MultiValueRecordSet\nmetadata: {name: s%d, namespace: %s}\nspec: {name: s%d.%s.example.internal., type: A, podSelector: {matchLabels: {set: "s%d"}}}\n' \
      "$i" "$ns" "$i" "$ns" "$i"
  done
}

measure() {
  local pods=$1 ns="measure-$1"
  log "$pods pods in $SETS record sets (namespace $ns)"
  kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  kubectl create namespace "$ns" >/dev/null
  helm template "$ns" "$ROOT/charts/mvdns" --namespace "$ns" --show-only templates/rbac-operator.yaml --show-only templates/rbac-dns.yaml | kubectl apply -f - >/dev/null
  local t0; t0=$(date +%s)
  pods_yaml "$ns" "$pods" | kubectl apply -f - >/dev/null
  log "created $pods pods in $(($(date +%s) - t0))s; waiting for KWOK to make them Ready"
  until [ "$(kubectl -n "$ns" get pods --field-selector=status.phase=Running -o name | wc -l)" -ge "$pods" ]; do sleep 2; done
  sets_yaml "$ns" | kubectl apply -f - >/dev/null

  local kubeconfig="$MVDNS_TESTENV_DIR/$ns-operator.kubeconfig"
  sed "s|^\(\s*token:\).*|\1 $(kubectl -n "$ns" create token "$ns-operator" --duration=1h)|" "$MVDNS_TESTENV_DIR/admin.kubeconfig" >"$kubeconfig"
  KUBECONFIG="$kubeconfig" "$OPERATOR" --lease-namespace "$ns" --admin-listen 127.0.0.1:0 --log-format json >"$MVDNS_TESTENV_DIR/$ns-operator.log" 2>&1 &
  local pid=$! started; started=$(date +%s.%N)
  until [ "$(kubectl -n "$ns" get mvrs -o jsonpath='{range .items[*]}{.status.healthyCount}{"\n"}{end}' | awk '{s+=$1} END {print s+0}')" -ge "$pods" ]; do
    kill -0 "$pid" 2>/dev/null || die "the operator exited; see $MVDNS_TESTENV_DIR/$ns-operator.log"
    sleep 1
  done
  local converged; converged=$(echo "$(date +%s.%N) - $started" | bc)
  sleep 5 # let the allocator settle after the initial burst
  local rss hwm cpu status_bytes
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat")
  status_bytes=$(kubectl -n "$ns" get mvrs s0 -o json | python3 -c 'import json, sys; print(len(json.dumps(json.load(sys.stdin)["status"], separators=(",", ":"))))')
  printf 'RESULT operator pods=%d record_sets=%d first_full_status_s=%.1f rss_mib=%.1f peak_rss_mib=%.1f cpu_s=%.2f status_bytes_per_set=%d\n' \
    "$pods" "$SETS" "$converged" "$(echo "$rss/1024" | bc -l)" "$(echo "$hwm/1024" | bc -l)" "$cpu" "$status_bytes"

  # The DNS server, serving every value of every record set.
  local dns_kubeconfig="$MVDNS_TESTENV_DIR/$ns-dns.kubeconfig"
  sed "s|^\(\s*token:\).*|\1 $(kubectl -n "$ns" create token "$ns-dns" --duration=1h)|" "$MVDNS_TESTENV_DIR/admin.kubeconfig" >"$dns_kubeconfig"
  KUBECONFIG="$dns_kubeconfig" "$DNS" --zone example.internal. --listen 127.0.0.1:15399 --admin-listen 127.0.0.1:19154 \
    --namespace "$ns" --log-format json >"$MVDNS_TESTENV_DIR/$ns-dns.log" 2>&1 &
  local dns_pid=$! served=0 tries=0
  while [ "$served" -lt "$pods" ] && [ $tries -lt 120 ]; do
    sleep 0.5; tries=$((tries + 1))
    served=$(curl -sf 127.0.0.1:19154/metrics | awk '/^mvdns_dns_values_served / {print $2}')
    served=${served:-0}
  done
  [ "$served" -ge "$pods" ] || die "the DNS server serves $served of $pods values; see $MVDNS_TESTENV_DIR/$ns-dns.log"
  sleep 2
  printf 'RESULT dns values_served=%d rss_mib=%.1f peak_rss_mib=%.1f answers=%d\n' "$served" \
    "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$dns_pid/status")" "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$dns_pid/status")" \
    "$(dig @127.0.0.1 -p 15399 "s1.$ns.example.internal." A +short | wc -l)"
  kill "$dns_pid" "$pid"; wait "$pid" "$dns_pid" 2>/dev/null || true
  kubectl delete namespace "$ns" --wait=false >/dev/null
}

for n in "${@:-1000 5000}"; do
  for pods in $n; do measure "$pods"; done
done
