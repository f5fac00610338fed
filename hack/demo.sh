#!/usr/bin/env bash
# The quick start: a local control plane, the CRD and the chart's RBAC, the operator
# and the DNS server running under the chart's ServiceAccounts, a sample record set over
# simulated pods and one health-checked endpoint the demo serves on 127.0.0.2, real DNS
# answers; then one pod turned unready, and the endpoint turned unhealthy and back, with
# how long each took to reach the answers. Every packet stays on loopback. Then the same
# on real pods, on a real node (hack/demo-node.sh), where the machine allows one.
# Leaves the first part running; `hack/testenv.sh down` stops it all.
LOG_TAG=demo
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/hack/deps.sh"
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
D=$MVDNS_TESTENV_DIR
NS=shop
SYSTEM=mvdns-system
DNS_PORT=${MVDNS_DEMO_DNS_PORT:-5353}
NAME=web.shop.example.internal.
# The health-checked static value of examples/web.yaml: an HTTP endpoint on loopback.
ENDPOINT_IP=127.0.0.2
ENDPOINT_PORT=18081

cargo_with_progress "building mvdns-operator and mvdns-server" build --locked -p mvdns-operator -p mvdns-server --bins
BIN_DIR="$TARGET/debug"

log "installing the CRD (kubectl apply -f crds/) and the chart's ServiceAccounts and RBAC"
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established crd/multivaluerecordsets.mvdns.io --timeout=30s >/dev/null
for ns in "$NS" "$SYSTEM"; do kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; done
# Only the ServiceAccounts and RBAC: the binaries run here as processes, with those
# accounts' tokens (the chart's Deployments need a real node to run containers).
helm template mvdns "$ROOT/charts/mvdns" --namespace "$SYSTEM" \
  --show-only templates/rbac-operator.yaml --show-only templates/rbac-dns.yaml | kubectl apply -f - >/dev/null

# sa_kubeconfig SA: a kubeconfig with a real token of the chart's ServiceAccount SA.
sa_kubeconfig() {
  local out="$D/demo-$1.kubeconfig"
  sed "s|^\(\s*token:\).*|\1 $(kubectl -n "$SYSTEM" create token "$1" --duration=24h)|" "$D/admin.kubeconfig" >"$out"
  echo "$out"
}

# start_bg NAME CMD...: a background process that `hack/testenv.sh down` stops, by the PID
# recorded here. A rerun of the demo first stops the one its previous run started.
start_bg() {
  local name=$1; shift
  if [ -f "$D/demo-$name.pid" ]; then kill "$(cat "$D/demo-$name.pid")" 2>/dev/null || true; fi
  "$@" >"$D/demo-$name.log" 2>&1 &
  echo $! >"$D/demo-$name.pid"
}

log "serving the health-checked endpoint on http://$ENDPOINT_IP:$ENDPOINT_PORT/healthz (hack/demo-endpoint.py)"
ENDPOINT_DOWN="$D/demo-endpoint.down"
rm -f "$ENDPOINT_DOWN"
start_bg endpoint python3 "$ROOT/hack/demo-endpoint.py" "$ENDPOINT_IP" "$ENDPOINT_PORT" "$ENDPOINT_DOWN"

log "starting the operator (ServiceAccount mvdns-operator) and the DNS server (mvdns-dns) on 127.0.0.1:$DNS_PORT"
# Health checks may reach exactly the demo's endpoint: loopback is refused by default.
KUBECONFIG=$(sa_kubeconfig mvdns-operator) start_bg operator "$BIN_DIR/mvdns-operator" \
  --lease-namespace "$SYSTEM" --admin-listen 127.0.0.1:18080 --probe-allow-cidr "$ENDPOINT_IP/32"
KUBECONFIG=$(sa_kubeconfig mvdns-dns) start_bg dns "$BIN_DIR/mvdns-server" \
  --zone example.internal. --listen "127.0.0.1:$DNS_PORT" --admin-listen 127.0.0.1:19153

log "creating 4 simulated pods (KWOK) labelled app=web"
for i in 0 1 2 3; do
  cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: web-$i, namespace: $NS, labels: {app: web}, annotations: {mvdns.io/test-ready: "true"}}
spec:
  nodeName: kwok-node-$((i % 3))
  tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
  containers: [{name: app, image: registry.invalid/web:1, ports: [{name: http, containerPort: 8080}]}]
YAML
done | kubectl apply -f - >/dev/null
kubectl -n "$NS" wait --for=condition=Ready pod -l app=web --timeout=60s >/dev/null

log "applying examples/web.yaml"
kubectl -n "$NS" apply -f "$ROOT/examples/web.yaml" >/dev/null

# wait_healthy N: until the record set reports N healthy values (at most 60 s).
wait_healthy() {
  local i
  for ((i = 0; i < 120; i++)); do
    [ "$(kubectl -n "$NS" get mvrs web -o jsonpath='{.status.healthyCount}')" = "$1" ] && return
    sleep 0.5
  done
  die "the record set did not reach $1 healthy values; see $D/demo-operator.log"
}

# served: the A records the DNS server gives now, one per line (empty if it does not answer).
served() { dig @127.0.0.1 -p "$DNS_PORT" +time=1 +tries=1 "$NAME" A +short 2>/dev/null || true; }

# wait_for_endpoint in|out: until $ENDPOINT_IP is in (or out of) the answers, at most 60 s;
# prints how long that took.
wait_for_endpoint() {
  local t0 i where
  t0=$(date +%s.%N)
  for ((i = 0; i < 240; i++)); do
    where=out; matches "$(served)" "^${ENDPOINT_IP//./\\.}\$" && where=in
    [ "$where" != "$1" ] || break
    sleep 0.25
  done
  [ "$i" -lt 240 ] || die "$ENDPOINT_IP did not go $1 of the answers within 60 s; see $D/demo-operator.log"
  printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)"
}

# check_of VALUE: the health check's state in the record set's status.
check_of() {
  kubectl -n "$NS" get mvrs web -o jsonpath="{.status.values[?(@.value=='$1')].check}"
}

# answers: the A records the DNS server gives, sorted (UDP and TCP must agree).
answers() {
  local i
  for ((i = 0; i < 40; i++)); do
    if dig @127.0.0.1 -p "$DNS_PORT" +time=1 +tries=1 "$NAME" A >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  echo "\$ dig @127.0.0.1 -p $DNS_PORT $NAME A +short   (UDP, twice: the order is random)"
  dig @127.0.0.1 -p "$DNS_PORT" "$NAME" A +short
  echo "--"
  dig @127.0.0.1 -p "$DNS_PORT" "$NAME" A +short
  echo "\$ dig @127.0.0.1 -p $DNS_PORT $NAME A +tcp +short | sort"
  dig @127.0.0.1 -p "$DNS_PORT" "$NAME" A +tcp +short | sort
}

wait_healthy 5
echo
echo "\$ kubectl -n $NS get pods -o wide"
kubectl -n "$NS" get pods -o wide
echo
echo "\$ kubectl -n $NS get mvrs"
kubectl -n "$NS" get mvrs
echo
answers
echo
log "turning pod web-0 unready (KWOK, standing in for the kubelet, reports Ready=False)"
kubectl -n "$NS" annotate pod web-0 mvdns.io/test-ready=false --overwrite >/dev/null
wait_healthy 4
echo "\$ kubectl -n $NS get mvrs"
kubectl -n "$NS" get mvrs
echo
sleep 1
answers
echo
log "pod web-0 Ready again"
kubectl -n "$NS" annotate pod web-0 mvdns.io/test-ready=true --overwrite >/dev/null
wait_healthy 5

echo
log "the health check: $ENDPOINT_IP:$ENDPOINT_PORT now answers /healthz with 503 (probed every 5 s, 2 failures flip it)"
touch "$ENDPOINT_DOWN"
took=$(wait_for_endpoint out)
log "$ENDPOINT_IP left the answers ${took}s after its endpoint failed"
echo "\$ kubectl -n $NS get mvrs web -o jsonpath='{.status.values[?(@.value==\"$ENDPOINT_IP\")].check}'"
check_of "$ENDPOINT_IP"; echo
answers
echo
log "the endpoint answers 200 again (2 successes flip it back)"
rm -f "$ENDPOINT_DOWN"
took=$(wait_for_endpoint in)
log "$ENDPOINT_IP is back in the answers ${took}s after its endpoint recovered"
check_of "$ENDPOINT_IP"; echo
answers
echo
echo
log "part 2: the same on real pods (a kubelet, containerd and kube-proxy on this machine)"
"$ROOT/hack/demo-node.sh"
echo
log "still running: the first part's plane; eval \"\$(hack/testenv.sh env)\" for kubectl; logs in $D/demo-*.log; hack/testenv.sh down stops everything"
