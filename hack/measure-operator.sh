#!/usr/bin/env bash
# Measures the operator's memory with many pods: N KWOK pods behind 100 record sets,
# the release binary running under the chart's ServiceAccount, RSS once every record
# set's status lists its pods. A measurement, not a test (see BENCHMARKS in the notes).
#   hack/measure-operator.sh [PODS ...]      default: 1000 5000
LOG_TAG=measure
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SETS=100
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
cargo build --release -q -p mvdns-operator
OPERATOR="$ROOT/target/release/mvdns-operator"
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
  local rss hwm cpu
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$pid/stat")
  printf 'RESULT pods=%d record_sets=%d first_full_status_s=%.1f rss_mib=%.1f peak_rss_mib=%.1f cpu_s=%.2f\n' \
    "$pods" "$SETS" "$converged" "$(echo "$rss/1024" | bc -l)" "$(echo "$hwm/1024" | bc -l)" "$cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kubectl delete namespace "$ns" --wait=false >/dev/null
}

for n in "${@:-1000 5000}"; do
  for pods in $n; do measure "$pods"; done
done
