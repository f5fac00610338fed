#!/usr/bin/env bash
# The quick start: a local control plane, the CRD, a sample record set over simulated
# pods, and what mvdns makes of it. Leaves the control plane running; stop it with
# `hack/testenv.sh down`.
LOG_TAG=demo
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/hack/deps.sh"
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
NS=shop

log "installing the CRD (kubectl apply -f crds/)"
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established crd/multivaluerecordsets.mvdns.io --timeout=30s >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

log "creating 4 simulated pods (KWOK) labelled app=web"
for i in 0 1 2 3; do
  cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: web-$i, namespace: $NS, labels: {app: web}}
spec:
  nodeName: kwok-node-$((i % 3))
  tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
  containers: [{name: app, image: registry.invalid/web:1, ports: [{name: http, containerPort: 8080}]}]
YAML
done | kubectl apply -f - >/dev/null
kubectl -n "$NS" wait --for=condition=Ready pod -l app=web --timeout=60s >/dev/null

log "applying examples/web.yaml"
kubectl -n "$NS" apply -f "$ROOT/examples/web.yaml" >/dev/null

echo
echo "\$ kubectl -n $NS get pods -o wide"
kubectl -n "$NS" get pods -o wide
echo
echo "\$ kubectl -n $NS get mvrs"
kubectl -n "$NS" get mvrs
echo
log "the control plane keeps running: eval \"\$(hack/testenv.sh env)\" to use kubectl; hack/testenv.sh down to stop"
