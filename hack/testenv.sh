#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for tests and the quick start:
# etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler and KWOK
# (fake nodes whose pods become Running and Ready with pod IPs). No containers.
#
#   hack/testenv.sh up       build the binaries if needed (cached), start everything
#   hack/testenv.sh down     stop what `up` started (by PID, never by name)
#   hack/testenv.sh status   show what runs
#   hack/testenv.sh env      print `export` lines for KUBECONFIG and friends
#   hack/testenv.sh acquire  for scripts (hack/test.sh): use the running control plane, or
#                            start one; prints a token only when it started one
#   hack/testenv.sh release TOKEN   stop the control plane only if TOKEN started it
#
# A script stops only what it started: `acquire` records its token in $D/owner when it
# starts the plane and prints nothing when the plane was already up (the user's, or the
# demo's), so `release` of that empty token leaves it running. Which side started the plane
# is decided from that record, never by reading `status` through a pipe.
#
# State lives in $MVDNS_TESTENV_DIR (default target/testenv). Each component has its
# own identity: static tokens for the control-plane components and the admin; the
# operator and DNS server run under real ServiceAccount tokens (see the Rust helper).
LOG_TAG=testenv
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

D="${MVDNS_TESTENV_DIR:-$ROOT/target/testenv}"
ETCD_PORT=${MVDNS_ETCD_PORT:-12379}
API_PORT=${MVDNS_API_PORT:-16443}
# Loopback unless a real node's pods must reach the API server (hack/node.sh binds it to the
# node's bridge address, where the `kubernetes` Service's endpoint then points).
API_ADDRESS=${MVDNS_API_ADDRESS:-127.0.0.1}
NODES=${MVDNS_KWOK_NODES:-3}
# The node lifecycle controller is off for KWOK's thousands of pods; a real node needs it
# (it lifts the kubelet's not-ready taint, and taints a node that stops reporting).
CONTROLLERS=${MVDNS_KCM_CONTROLLERS:-'*,-node-lifecycle-controller,-nodeipam'}
ADMIN="$D/admin.kubeconfig"

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$ADMIN" "$@"; }

# start NAME CMD...: runs CMD in the background, logging to $D/NAME.log, PID in $D/NAME.pid.
start() {
  local name=$1; shift
  "$@" >"$D/$name.log" 2>&1 &
  echo $! >"$D/$name.pid"
}

alive() { [ -f "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }

# wait_for WHAT SECONDS CMD...: polls CMD every half second, at most SECONDS.
wait_for() {
  local what=$1 limit=$2; shift 2
  local tries=$((limit * 2))
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "$what did not come up within ${limit}s; see $D/*.log"
    sleep 0.5
  done
}

make_pki() {
  mkdir -p "$D/pki"
  [ -f "$D/pki/kubelet-client.crt" ] && return # (a plane from before that file: made anew)
  log "creating a CA, the API server certificate and the service-account key"
  (
    cd "$D/pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=mvdns-testenv-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' "$API_ADDRESS" >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out apiserver.crt -extfile san.ext 2>/dev/null
    # The API server's identity towards kubelets (logs, exec, port-forward on a real node).
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -out kubelet-client.crt -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

# One static token per control-plane identity. Usernames are the ones the API
# server's bootstrap RBAC policy already binds (system:kube-controller-manager, ...).
make_identities() {
  [ -f "$D/tokens.csv" ] && return
  local admin kcm sched kwok
  admin=$(openssl rand -hex 16); kcm=$(openssl rand -hex 16); sched=$(openssl rand -hex 16); kwok=$(openssl rand -hex 16)
  cat >"$D/tokens.csv" <<EOF
$admin,admin,uid-admin,system:masters
$kcm,system:kube-controller-manager,uid-kcm
$sched,system:kube-scheduler,uid-scheduler
$kwok,mvdns:kwok,uid-kwok
EOF
  kubeconfig admin "$admin"
  kubeconfig kube-controller-manager "$kcm"
  kubeconfig kube-scheduler "$sched"
  kubeconfig kwok "$kwok"
}

# kubeconfig NAME TOKEN: writes $D/NAME.kubeconfig for that identity.
kubeconfig() {
  cat >"$D/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://$API_ADDRESS:$API_PORT
    certificate-authority: $D/pki/ca.crt
users:
- name: $1
  user:
    token: $2
contexts:
- name: testenv
  context: {cluster: testenv, user: $1}
current-context: testenv
EOF
}

# KWOK v0.8 has no built-in stages: take the upstream "fast" pod stages and the node
# stages from the module at the pinned version, and add the stages tests use to flip
# a pod's readiness with the annotation mvdns.io/test-ready=false (and back).
make_kwok_config() {
  local stages
  stages="$(cd "$ROOT/tools/k8s" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/kustomize/stage"
  [ -d "$stages" ] || die "kwok stages not found in the Go module cache ($stages)"
  {
    for f in pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml \
      node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml; do
      echo "---"; cat "$stages/$f"
    done
    cat "$ROOT/hack/kwok-test-stages.yaml"
    # KWOK plays 4 pod stages at once by default: about 60 status writes a second here,
    # minutes for the benchmarks' tens of thousands of pods. The API server has room
    # for more (its inflight limits are lifted below). A configuration given in full:
    # KWOK does not default the options of a KwokConfiguration it reads.
    printf -- '---\napiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n'
    printf -- '  %s\n' 'podPlayStageParallelism: 16' 'nodePlayStageParallelism: 4' 'nodeLeaseParallelism: 4' \
      'podsOnNodeSyncParallelism: 1'
  } >"$D/kwok.yaml"
}

make_nodes() {
  local i v6 zones=(zone-a zone-b zone-c)
  for ((i = 0; i < NODES; i++)); do
    v6="fd00:10:244:$i::/64"; [ "$i" = 0 ] && v6="fd00:10:244::/64" # RFC 5952 canonical form
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/zone: ${zones[$((i % 3))]}
spec:
  # /20: KWOK hands out pod IPs from the node's podCIDR and reuses them when it runs
  # out, and a /24 (254 addresses) is too small for thousands of pods on three nodes.
  podCIDR: 10.244.$((i * 16)).0/20
  podCIDRs: [10.244.$((i * 16)).0/20, "$v6"]
  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "5000"}
  capacity: {cpu: "32", memory: 256Gi, pods: "5000"}
EOF
  done
}

# start_apiserver: the kube-apiserver with the flags every start (up, apiserver-start) uses.
start_apiserver() {
  log "starting kube-apiserver on https://$API_ADDRESS:$API_PORT (RBAC on)"
  # Why the flags: --advertise-address avoids needing a default route; Node,RBAC and
  # NodeRestriction make permissions real (a real node's kubelet gets only its own); the
  # endpoint reconciler would publish a loopback endpoint, so it runs only when the address
  # is one pods reach; kubelets' serving certificates are verified against the CA; the
  # inflight and priority-and-fairness limits are lifted for thousands of KWOK pods.
  local reconciler=none
  [ "$API_ADDRESS" = 127.0.0.1 ] || reconciler=lease
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$API_ADDRESS" --advertise-address="$API_ADDRESS" --secure-port="$API_PORT" \
    --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
    --client-ca-file="$D/pki/ca.crt" --cert-dir="$D/pki" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$D/pki/sa.pub" --service-account-signing-key-file="$D/pki/sa.key" \
    --token-auth-file="$D/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$D/pki/kubelet-client.crt" --kubelet-client-key="$D/pki/kubelet-client.key" \
    --kubelet-certificate-authority="$D/pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true --endpoint-reconciler-type="$reconciler" \
    --max-requests-inflight=0 --max-mutating-requests-inflight=0 --enable-priority-and-fairness=false
}

# Fault injection for tests (API server outages): stop and start the kube-apiserver
# alone; etcd and everything else keep running.
# The stop is a crash (SIGKILL): connections drop at once, as when a node dies.
apiserver_stop() {
  alive kube-apiserver || die "kube-apiserver is not running"
  local pid tries=40
  pid=$(cat "$D/kube-apiserver.pid")
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null && [ $tries -gt 0 ]; do sleep 0.25; tries=$((tries - 1)); done
  rm -f "$D/kube-apiserver.pid"
  log "kube-apiserver stopped"
}

apiserver_start() {
  alive kube-apiserver && { log "kube-apiserver already running"; return; }
  BIN=$(cat "$D/bin-dir")
  start_apiserver
  wait_for "kube-apiserver" 90 kubectl_admin get --raw=/readyz
}

# Fault injection for tests (expired resource versions): compact etcd's history up to its
# current revision, through etcd's JSON gateway, so that every watch resuming from an
# older resourceVersion gets 410 Gone and must list again.
etcd_compact() {
  local revision
  revision=$(curl -sf -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/range" -d '{"key":"AA=="}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])') ||
    die "cannot read etcd's revision"
  curl -sf -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/compaction" \
    -d "{\"revision\": \"$revision\", \"physical\": true}" >/dev/null || die "etcd compaction failed"
  log "etcd compacted at revision $revision"
}

up() {
  local t0; t0=$(date +%s)
  BIN=$("$ROOT/hack/k8s-build.sh")
  mkdir -p "$D"
  if alive kube-apiserver; then log "already running ($D)"; return; fi
  rm -f "$D/owner" # a plane started by `up` is the user's until `acquire` claims it
  make_pki
  make_identities
  make_kwok_config
  echo "$BIN" >"$D/bin-dir"

  log "starting etcd on 127.0.0.1:$ETCD_PORT (data on tmpfs)"
  local etcd_data
  etcd_data="/dev/shm/mvdns-etcd-$(echo "$D" | sha256sum | cut -c1-8)"
  rm -rf "$etcd_data"
  echo "$etcd_data" >"$D/etcd-data-dir"
  start etcd "$BIN/etcd" --name=testenv --data-dir="$etcd_data" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster="testenv=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls="http://127.0.0.1:$((ETCD_PORT + 2))" \
    --unsafe-no-fsync=true --log-level=warn --quota-backend-bytes=4294967296

  start_apiserver
  wait_for "etcd" 30 alive etcd
  wait_for "kube-apiserver" 90 kubectl_admin get --raw=/readyz

  log "starting kube-controller-manager, kube-scheduler and kwok ($NODES fake nodes)"
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$D/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$D/kube-controller-manager.kubeconfig" --authorization-kubeconfig="$D/kube-controller-manager.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt" \
    --controllers="$CONTROLLERS" \
    --kube-api-qps=500 --kube-api-burst=1000
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$D/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$D/kube-scheduler.kubeconfig" --authorization-kubeconfig="$D/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 \
    --kube-api-qps=500 --kube-api-burst=1000
  # KWOK stands in for every kubelet; it gets its own identity with cluster-admin.
  kubectl_admin create clusterrolebinding mvdns:kwok --clusterrole=cluster-admin --user=mvdns:kwok \
    --dry-run=client -o yaml | kubectl_admin apply -f - >/dev/null
  start kwok "$BIN/kwok" --kubeconfig="$D/kwok.kubeconfig" --config="$D/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --server-address=127.0.0.1:0 \
    --cidr=10.244.0.0/16 --node-ip=10.0.0.1
  make_nodes | kubectl_admin apply -f - >/dev/null
  # kubectl wait spends its timeout over all nodes in turn (~0.1 s each).
  wait_for "kwok nodes" 60 kubectl_admin wait --for=condition=Ready node --all --timeout=10s
  wait_for "the default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
  log "control plane up in $(($(date +%s) - t0))s; $D/admin.kubeconfig is the admin kubeconfig"
}

# Any live component means a plane is there (the API server may be down for a fault test).
running() { alive etcd || alive kube-apiserver; }

acquire() {
  if running; then
    log "using the control plane already running in $D (it stays up afterwards)"
    return
  fi
  up >&2
  local token
  token="$(date +%s)-$$-$RANDOM"
  echo "$token" >"$D/owner"
  echo "$token"
}

release() {
  local token=${1:-}
  if [ -n "$token" ] && [ -f "$D/owner" ] && [ "$(cat "$D/owner")" = "$token" ]; then
    down
  else
    log "leaving the control plane in $D running: this run did not start it"
  fi
}

down() {
  local name pidfile
  # Processes the demo or tests started beside the control plane (demo-operator, ...).
  for pidfile in "$D"/demo-*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if alive "$name"; then kill "$(cat "$D/$name.pid")" 2>/dev/null || true; fi
  done
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local pid tries=40
    [ -f "$D/$name.pid" ] || continue
    pid=$(cat "$D/$name.pid")
    while kill -0 "$pid" 2>/dev/null && [ $tries -gt 0 ]; do sleep 0.25; tries=$((tries - 1)); done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$D/$name.pid"
  done
  [ -f "$D/etcd-data-dir" ] && rm -rf "$(cat "$D/etcd-data-dir")"
  rm -f "$D/owner"
  log "stopped"
}

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if alive "$name"; then echo "$name: running (pid $(cat "$D/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

env_lines() {
  echo "export MVDNS_TESTENV_DIR=$D"
  echo "export KUBECONFIG=$ADMIN"
  echo "export PATH=$(cat "$D/bin-dir"):\$PATH"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_lines ;;
  acquire) acquire ;;
  release) release "${2:-}" ;;
  apiserver-stop) apiserver_stop ;;
  apiserver-start) apiserver_start ;;
  etcd-compact) etcd_compact ;;
  *) echo "usage: $0 up|down|status|env|acquire|release TOKEN|apiserver-stop|apiserver-start|etcd-compact" >&2; exit 2 ;;
esac
