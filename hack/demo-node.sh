#!/usr/bin/env bash
# The demo's second part (hack/demo.sh runs it): the same on real pods. A real node
# (hack/node.sh), `helm install` of the chart with its stub-domain block for the node's
# CoreDNS, three backend pods with HTTP readiness probes and a record set over them
# (examples/real-pods.yaml), a pod resolving the name through its own glibc resolver; then
# one backend's probe broken and mended, with how long the answers took to follow.
#
# Where a real node cannot start (not root, a package missing: `hack/node.sh preflight`
# says why) it says so and stops: the first part, on KWOK, is then the demo.
# The node is taken down at the end (it changes the machine: a bridge, nftables tables,
# ip_forward), unless MVDNS_DEMO_KEEP_NODE=1; then `hack/node.sh down` stops it.
LOG_TAG=demo-node
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! why=$("$ROOT/hack/node.sh" preflight); then
  log "no real node on this machine ($why): the part above, on KWOK pods, is the demo"
  exit 0
fi
NS=shop
SYSTEM=mvdns-system
NAME=web.mv.test
MVDNS_STATIC_DIR=$("$ROOT/hack/build-static.sh")
export MVDNS_STATIC_DIR
if [ "${MVDNS_DEMO_KEEP_NODE:-}" != 1 ]; then trap '"$ROOT/hack/node.sh" down' EXIT; fi
"$ROOT/hack/node.sh" up
eval "$("$ROOT/hack/node.sh" env)"

log "helm install of charts/mvdns on the real node (images built here, pullPolicy Never)"
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
# The Service is pinned to 10.96.0.53 so that the stub-domain block (forward to it) can be
# rendered at install time; it goes to kube-system/coredns-custom, which the node's CoreDNS
# imports.
helm install mvdns "$ROOT/charts/mvdns" -n "$SYSTEM" --create-namespace \
  --set operator.image.repository=ghcr.io/mvdns/mvdns-operator --set operator.image.tag=node \
  --set operator.image.pullPolicy=Never \
  --set dns.image.repository=ghcr.io/mvdns/mvdns-server --set dns.image.tag=node --set dns.image.pullPolicy=Never \
  --set 'dns.zones={mv.test.}' --set coredns.serviceIP=10.96.0.53 --set coredns.stubDomain.enabled=true \
  --set coredns.stubDomain.configMap.namespace=kube-system --set coredns.stubDomain.configMap.name=coredns-custom \
  --set tests.image=mvdns.invalid/testbox:dev --wait --timeout 180s >/dev/null
kubectl apply -f "$ROOT/examples/real-pods.yaml" >/dev/null
kubectl -n "$NS" wait --for=condition=Ready pod -l app=web --timeout=90s >/dev/null
kubectl -n "$NS" wait --for=condition=Ready pod/resident --timeout=90s >/dev/null
echo
echo "\$ kubectl get pods -A -o wide"
kubectl get pods -A -o wide
echo
echo "\$ helm test mvdns -n $SYSTEM"
helm test mvdns -n "$SYSTEM" --timeout 120s | sed -n '/^TEST SUITE/,/^Phase/p'

# resolved: the addresses the resident pod's glibc gives for the name, one line, sorted.
resolved() {
  kubectl -n "$NS" exec resident -- getent ahosts "$NAME" 2>/dev/null | awk '$2 == "STREAM" {print $1}' | sort | tr '\n' ' '
}
# wait_resolved WANT: seconds until the pod resolves the name to WANT (at most 60 s).
wait_resolved() {
  local start tries=300
  start=$(date +%s.%N)
  until [ "$(resolved)" = "$1" ]; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "the resident pod never resolved $NAME to: $1 (it gives: $(resolved))"
    sleep 0.1
  done
  echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f'
}
all=$(kubectl -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' | sort | tr '\n' ' ')
log "waiting for CoreDNS to import the stub domain (the kubelet refreshes the ConfigMap within ~10 s)"
wait_resolved "$all" >/dev/null
echo
echo "\$ kubectl -n $NS exec resident -- getent ahosts $NAME   (glibc -> CoreDNS -> mvdns)"
kubectl -n "$NS" exec resident -- getent ahosts "$NAME"
echo
pod=$(kubectl -n "$NS" get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
ip=$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}')
log "breaking the readiness probe of $pod ($ip): its /ready file removed"
kubectl -n "$NS" exec "$pod" -- rm /tmp/www/ready
without=$(for a in $all; do [ "$a" = "$ip" ] || echo "$a"; done | sort | tr '\n' ' ')
took=$(wait_resolved "$without")
log "$ip left the pod's answers ${took}s after its probe broke"
echo "\$ kubectl -n $NS get mvrs"
kubectl -n "$NS" get mvrs
kubectl -n "$NS" exec resident -- getent ahosts "$NAME"
log "mending the probe"
kubectl -n "$NS" exec "$pod" -- sh -c 'echo ok > /tmp/www/ready'
took=$(wait_resolved "$all")
log "$ip is back in the pod's answers ${took}s after its probe passed again"
if [ "${MVDNS_DEMO_KEEP_NODE:-}" = 1 ]; then
  log "the real node keeps running: eval \"\$(hack/node.sh env)\"; hack/node.sh down stops it"
else
  log "taking the real node down (MVDNS_DEMO_KEEP_NODE=1 keeps it)"
fi
