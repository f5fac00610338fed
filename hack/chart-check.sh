#!/usr/bin/env bash
# Checks the Helm chart and the install artifacts:
#   hack/chart-check.sh
# Offline: helm lint (strict) and helm template with default and with every optional part
# on (charts/mvdns/ci/test-values.yaml); the default render keeps the ServiceAccounts and
# cluster RBAC the tests use; the schema rejects misspelled keys and wrong types, naming
# them; the chart's CRD copy matches crds/; the CoreDNS stub block renders; the image
# assembles (hack/image.sh, from the static release binaries, hack/build-static.sh; the
# real-node test, tests/tests/realnode.rs, then runs these images).
# With a control plane reachable through KUBECONFIG (hack/testenv.sh up; this script never
# starts one): helm install --dry-run=server and kubectl apply --dry-run=server in a fresh
# namespace, then Pod Security "restricted" enforced on it and the pods of both Deployments
# and of the helm test created with --dry-run=server (a non-compliant control pod must be
# rejected). Then least privilege: the chart's RBAC (cluster scope, and namespaces scope)
# applied for real and `kubectl auth can-i --as=system:serviceaccount:...` asked what each
# ServiceAccount can and cannot do (DNS: read record sets only; operator: status patches,
# pod reads, Events, its own Lease; neither: secrets, spec writes, pod writes). The
# namespaces and cluster RBAC are deleted at the end. Last, when Tilt is cached
# (hack/tilt-build.sh) or MVDNS_TILT=build: `tilt alpha tiltfile-result` evaluates the
# Tiltfile against the control plane's context, with both image builders.
LOG_TAG=chart-check
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN_DIR=$("$ROOT/hack/k8s-build.sh")
export PATH="$BIN_DIR:$PATH"
CHART="$ROOT/charts/mvdns"
CI_VALUES="$CHART/ci/test-values.yaml"
WORK=$(mktemp -d)
namespaces=()
applied=() # manifests applied for real (cluster-scoped RBAC): deleted at the end
cleanup() {
  local ns f
  for f in "${applied[@]}"; do kubectl delete -f "$f" --wait=false --ignore-not-found >/dev/null 2>&1 || true; done
  for ns in "${namespaces[@]}"; do kubectl delete namespace "$ns" --wait=false --ignore-not-found >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# expect FILE PATTERN WHAT: the rendered FILE must contain a line matching PATTERN.
expect() { grep -Eq -- "$2" "$1" || die "$3: no line matching '$2' in $(basename "$1")"; }
count() { grep -Ec -- "$2" "$1" || true; }

log "1. helm lint --strict (default values, ci/test-values.yaml)"
helm lint --strict "$CHART" >"$WORK/lint.log" 2>&1 || { cat "$WORK/lint.log" >&2; die "helm lint failed (default values)"; }
helm lint --strict "$CHART" -f "$CI_VALUES" >"$WORK/lint.log" 2>&1 || { cat "$WORK/lint.log" >&2; die "helm lint failed (test values)"; }

log "2. helm template, default values (release mvdns in mvdns-system)"
helm template mvdns "$CHART" --namespace mvdns-system >"$WORK/default.yaml" || die "helm template failed (default values)"
d="$WORK/default.yaml"
[ "$(count "$d" '^kind: ServiceAccount$')" = 2 ] || die "default render: want 2 ServiceAccounts"
expect "$d" '^  name: mvdns-operator$' "default render: ServiceAccount/ClusterRole mvdns-operator"
expect "$d" '^  name: mvdns-dns$' "default render: ServiceAccount/ClusterRole mvdns-dns"
# Per binary: its rules, and a read-only one on Nodes (topology; cluster-scoped in both scopes).
[ "$(count "$d" '^kind: ClusterRole$')" = 4 ] || die "default render: want 4 ClusterRoles"
[ "$(count "$d" '^kind: ClusterRoleBinding$')" = 4 ] || die "default render: want 4 ClusterRoleBindings"
expect "$d" '^  name: mvdns-operator-nodes$' "default render: ClusterRole mvdns-operator-nodes"
expect "$d" '^  name: mvdns-dns-nodes$' "default render: ClusterRole mvdns-dns-nodes"
expect "$d" '^  name: mvdns-operator-leader-election$' "default render: leader-election Role"
[ "$(count "$d" '^kind: Deployment$')" = 2 ] || die "default render: want 2 Deployments"
expect "$d" '^kind: PodDisruptionBudget$' "default render: PDB"
expect "$d" '^  name: mvdns$' "default render: Service mvdns"
expect "$d" '\{name: dns, port: 53, targetPort: dns, protocol: UDP\}' "default render: Service UDP 53"
expect "$d" '\{name: dns-tcp, port: 53, targetPort: dns-tcp, protocol: TCP\}' "default render: Service TCP 53"
expect "$d" '\{name: dns, containerPort: 5353, protocol: UDP\}' "default render: DNS container port"
expect "$d" '^        - --lease-namespace=mvdns-system$' "default render: lease in the release namespace"
expect "$d" 'fieldPath: metadata.name' "default render: POD_NAME from the downward API"
expect "$d" 'preferredDuringSchedulingIgnoredDuringExecution' "default render: pod anti-affinity"
for key in 'runAsNonRoot: true' 'runAsUser: 65532' 'readOnlyRootFilesystem: true' \
    'allowPrivilegeEscalation: false' 'drop: \[ALL\]' 'type: RuntimeDefault' 'path: /livez' 'path: /readyz'; do
  [ "$(count "$d" "$key")" -ge 2 ] || die "default render: '$key' missing from a Deployment"
done
for kind in ServiceMonitor NetworkPolicy ConfigMap; do
  ! grep -q "^kind: $kind\$" "$d" || die "default render: $kind must be off by default"
done
# Tests render the chart with release = namespace: the names they rely on.
helm template shop "$CHART" --namespace shop >"$WORK/shop.yaml" || die "helm template failed (release shop)"
expect "$WORK/shop.yaml" '^- \{kind: ServiceAccount, name: shop-operator, namespace: shop\}$' "release shop: operator binding"
expect "$WORK/shop.yaml" '^- \{kind: ServiceAccount, name: shop-dns, namespace: shop\}$' "release shop: dns binding"

log "3. helm template, ci/test-values.yaml (every optional part on)"
helm template mvdns-ci "$CHART" --namespace mvdns-ci -f "$CI_VALUES" >"$WORK/ci.yaml" || die "helm template failed (test values)"
c="$WORK/ci.yaml"
[ "$(count "$c" '^kind: ServiceMonitor$')" = 2 ] || die "test render: want 2 ServiceMonitors"
[ "$(count "$c" '^kind: NetworkPolicy$')" = 3 ] || die "test render: want 3 NetworkPolicies (DNS and operator ingress, operator egress)"
expect "$c" '^  name: mvdns-ci-operator-egress$' "test render: the operator's egress policy"
expect "$c" '^  - to: \[\{ipBlock: \{cidr: 127.0.0.1/32\}\}\]$' "test render: egress to the API server endpoint given"
expect "$c" '^    - ipBlock: \{cidr: 0.0.0.0/0, except: \["169.254.0.0/16","10.96.0.0/16"\]\}$' "test render: egress probe blocks without link-local and the deny list"
expect "$c" '^        - --probe-restrict-cidr=10.20.0.0/16:443,8000-8099=mvdns-ci-apps$' "test render: a per-namespace probe rule"
expect "$c" '^        - --probe-rate-per-namespace=5.5$' "test render: the probe rate per namespace"
expect "$c" '^  ipFamilyPolicy: PreferDualStack$' "test render: the DNS Service's address families"
expect "$c" '^        - --listen=\[::\]:5353$' "test render: DNS listens on both families"
if helm template x "$CHART" --set networkPolicy.operatorEgress.enabled=true >/dev/null 2>"$WORK/err"; then
  die "the operator's egress policy without API server endpoints must fail"
fi
expect "$WORK/err" 'networkPolicy.operatorEgress.apiServer' "egress without API server endpoints: the error names the value"
[ "$(count "$c" '^kind: ClusterRole')" = 4 ] || die "test render: rbac.scope=namespaces: only the Nodes ClusterRoles and bindings"
[ "$(count "$c" '^  name: mvdns-ci-(dns|operator)-nodes$')" = 4 ] || die "test render: rbac.scope=namespaces: cluster RBAC other than on Nodes"
[ "$(count "$c" '^  namespace: mvdns-ci-apps$')" = 4 ] || die "test render: want Role+RoleBinding per binary in mvdns-ci-apps"
expect "$c" 'topologySpreadConstraints:' "test render: topology spread"
expect "$c" 'requiredDuringSchedulingIgnoredDuringExecution' "test render: required anti-affinity"
expect "$c" '^        - --namespace=mvdns-ci-apps$' "test render: DNS watches the one RBAC namespace"
expect "$c" 'value: "example.internal.,svc.example.org."' "test render: zones"
expect "$c" '^  clusterIP: 10.96.200.53$' "test render: Service pinned to coredns.serviceIP"
# The CoreDNS stub block, exactly as CoreDNS reads it.
helm template mvdns-ci "$CHART" --namespace mvdns-ci -f "$CI_VALUES" -s templates/coredns-stub.yaml >"$WORK/stub.yaml"
expect "$WORK/stub.yaml" '^    example.internal:53 \{$' "stub domain: server block"
expect "$WORK/stub.yaml" '^        forward \. 10\.96\.200\.53$' "stub domain: forward to the Service IP"
expect "$WORK/stub.yaml" '^    svc.example.org:53 \{$' "stub domain: second zone"
if helm template x "$CHART" --set coredns.stubDomain.enabled=true >/dev/null 2>"$WORK/err"; then
  die "stub domain without a known Service IP must fail"
fi
grep -q 'coredns.serviceIP' "$WORK/err" || die "stub-domain failure does not say to set coredns.serviceIP"
helm template mvdns-ci "$CHART" --namespace mvdns-ci -f "$CI_VALUES" -s templates/tests/test-resolve.yaml >"$WORK/test-pod.yaml"
expect "$WORK/test-pod.yaml" 'helm.sh/hook: test' "helm test pod"
expect "$WORK/test-pod.yaml" 'check "web.example.internal." A \+tcp' "helm test pod: sample name over TCP"

log "4. the schema rejects typos and wrong types, naming the key"
reject() { # WHAT KEY YAML
  printf '%s\n' "$3" >"$WORK/bad.yaml"
  if helm template x "$CHART" -f "$WORK/bad.yaml" >/dev/null 2>"$WORK/err"; then
    die "schema accepted $1: $3"
  fi
  grep -q -- "$2" "$WORK/err" || { cat "$WORK/err" >&2; die "schema error for $1 does not name '$2'"; }
  log "   rejected $1: $(grep -m1 -- "$2" "$WORK/err" | sed 's/^ *//')"
}
reject "a misspelled key" replicaz 'dns: {replicaz: 3}'
reject "a misspelled top-level key" serviceMonitr 'serviceMonitr: {enabled: true}'
reject "a misspelled nested key" maxSkeww 'dns: {topologySpread: {maxSkeww: 2}}'
reject "a misspelled resource name" memroy 'operator: {resources: {limits: {memroy: 1Gi}}}'
reject "a wrong type" '/dns/replicas' 'dns: {replicas: two}'
reject "an unknown log format" '/logFormat' 'logFormat: xml'
reject "an unknown RBAC scope" '/rbac/scope' 'rbac: {scope: namespace}'
reject "an unknown IP family policy" '/service/ipFamilyPolicy' 'service: {ipFamilyPolicy: DualStack}'

log "5. the chart's CRD is the generated one"
for crd in mvdns.io_multivaluerecordsets.yaml mvdns.io_multivaluerecordslices.yaml; do
  cmp -s "$ROOT/crds/$crd" "$CHART/crds/$crd" \
    || die "charts/mvdns/crds/ is stale: cp crds/$crd charts/mvdns/crds/ (crdgen should write both)"
done

log "6. the image assembles without a container engine (hack/image.sh)"
static=$("$ROOT/hack/build-static.sh")
for name in mvdns-operator mvdns-server; do
  bin="$static/$name"
  log "   $name: $(file -b "$bin" | cut -d, -f1-5), $(du -k "$bin" | cut -f1) KiB"
  "$ROOT/hack/image.sh" "$bin" "$name" "$WORK/image-$name" 2>"$WORK/image.log" || { cat "$WORK/image.log" >&2; die "hack/image.sh $name failed"; }
  grep -E '^ok:|crane' "$WORK/image.log" | sed 's/files=.*//' | while read -r line; do log "   $name: $line"; done
done

# The control plane part.
if [ -z "${KUBECONFIG:-}" ] && [ -f "$ROOT/target/testenv/admin.kubeconfig" ]; then
  export KUBECONFIG="$ROOT/target/testenv/admin.kubeconfig"
fi
if ! kubectl get --raw /readyz >/dev/null 2>&1; then
  log "no control plane reachable through KUBECONFIG=${KUBECONFIG:-}: skipped the server-side checks"
  log "offline checks passed"
  exit 0
fi
log "7. server-side validation on $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
NS="mvdns-chart-check-$$"
APPS="$NS-apps"
namespaces=("$NS" "$APPS")
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$APPS" >/dev/null
# Pods (the helm test pod) need the namespace's default ServiceAccount, made by a controller.
for _ in $(seq 60); do kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.5; done
kubectl -n "$NS" get serviceaccount default >/dev/null || die "no default ServiceAccount in $NS after 30s"
# Without the Prometheus Operator's CRD the API server cannot validate a ServiceMonitor.
sm=()
if ! matches "$(kubectl api-resources --api-group=monitoring.coreos.com -o name 2>/dev/null)" '^servicemonitors'; then
  sm=(--set serviceMonitor.enabled=false)
  log "   (no monitoring.coreos.com CRD on this cluster: ServiceMonitor left out of the server-side checks)"
fi
# Release = namespace, so cluster-scoped names do not collide with anything else; the ci
# values' Service IP is swapped for a free one from this cluster's service CIDR.
ci_set=(--set "rbac.namespaces={$APPS}" --set "fullnameOverride=$NS" "${sm[@]}")
cidr=$(kubectl get servicecidrs kubernetes -o jsonpath='{.spec.cidrs[0]}' 2>/dev/null || true)
if [ -n "$cidr" ]; then
  ip=$(python3 - "$cidr" "$(kubectl get svc -A -o jsonpath='{.items[*].spec.clusterIP}')" <<'PY'
import ipaddress, random, sys
net, used = ipaddress.ip_network(sys.argv[1]), set(sys.argv[2].split())
for _ in range(1000):  # the upper half: the allocator prefers the lower one for dynamic IPs
    ip = str(net.network_address + random.randrange(net.num_addresses // 2, net.num_addresses - 1))
    if ip not in used:
        print(ip); break
PY
)
  ci_set+=(--set "coredns.serviceIP=$ip")
fi

log "   helm install --dry-run=server (default values)"
helm install "$NS" "$CHART" --namespace "$NS" --dry-run=server >"$WORK/dry-default.log" 2>&1 \
  || { cat "$WORK/dry-default.log" >&2; die "helm install --dry-run=server failed (default values)"; }
log "   helm install --dry-run=server (test values)"
helm install "$NS" "$CHART" --namespace "$NS" -f "$CI_VALUES" "${ci_set[@]}" --dry-run=server >"$WORK/dry-ci.log" 2>&1 \
  || { cat "$WORK/dry-ci.log" >&2; die "helm install --dry-run=server failed (test values)"; }

log "   kubectl apply --dry-run=server of the rendered objects"
helm template "$NS" "$CHART" --namespace "$NS" >"$WORK/srv-default.yaml"
helm template "$NS" "$CHART" --namespace "$NS" -f "$CI_VALUES" "${ci_set[@]}" >"$WORK/srv-ci.yaml"
for f in srv-default srv-ci; do
  kubectl apply --dry-run=server -f "$WORK/$f.yaml" >"$WORK/$f.log" 2>&1 \
    || { cat "$WORK/$f.log" >&2; die "kubectl apply --dry-run=server failed ($f)"; }
  log "   $f: $(grep -c 'server dry run' "$WORK/$f.log") objects accepted"
done

log "   Pod Security: enforce=restricted on $NS"
# The pods below are only dry-run created, but admission looks up their ServiceAccounts.
kubectl -n "$NS" create serviceaccount "$NS-operator" >/dev/null
kubectl -n "$NS" create serviceaccount "$NS-dns" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest pod-security.kubernetes.io/warn=restricted >/dev/null
# Control: a pod that violates "restricted" is rejected, so enforcement is really on.
if kubectl -n "$NS" run psa-control --image=registry.invalid/x --restart=Never --dry-run=server >/dev/null 2>"$WORK/psa-control.log"; then
  die "a non-compliant pod was admitted: Pod Security admission is not enforcing in $NS"
fi
grep -q 'violates PodSecurity "restricted' "$WORK/psa-control.log" || { cat "$WORK/psa-control.log" >&2; die "control pod rejected for another reason"; }
for f in srv-default srv-ci; do
  vals=(--set "fullnameOverride=$NS")
  [ "$f" = srv-default ] || vals=(-f "$CI_VALUES" "${ci_set[@]}")
  # Deployments: admission checks their templates against warn=restricted; any warning fails.
  helm template "$NS" "$CHART" --namespace "$NS" -s templates/deployment-operator.yaml -s templates/deployment-dns.yaml \
    "${vals[@]}" >"$WORK/$f-deploy.yaml"
  kubectl apply --dry-run=server -f "$WORK/$f-deploy.yaml" >"$WORK/$f-deploy.log" 2>&1 \
    || { cat "$WORK/$f-deploy.log" >&2; die "Deployments rejected in a restricted namespace ($f)"; }
  ! grep -qi 'violate' "$WORK/$f-deploy.log" || { cat "$WORK/$f-deploy.log" >&2; die "Deployments would violate restricted ($f)"; }
  # Their pods, and the helm test pod, under enforce=restricted.
  kubectl apply --dry-run=server -o json -f "$WORK/$f-deploy.yaml" >"$WORK/$f-deploy.json"
  python3 - "$WORK/$f-deploy.json" "$NS" >"$WORK/$f-pods.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
items = doc["items"] if doc.get("kind") == "List" else [doc]
pods = [{"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": d["metadata"]["name"] + "-psa", "namespace": sys.argv[2],
                      "labels": d["spec"]["template"]["metadata"].get("labels", {})},
         "spec": d["spec"]["template"]["spec"]} for d in items if d["kind"] == "Deployment"]
assert len(pods) == 2, len(pods)
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
PY
  kubectl create --dry-run=server -f "$WORK/$f-pods.json" >"$WORK/$f-pods.log" 2>&1 \
    || { cat "$WORK/$f-pods.log" >&2; die "the Deployments' pods are rejected by Pod Security restricted ($f)"; }
  helm template "$NS" "$CHART" --namespace "$NS" -s templates/tests/test-resolve.yaml \
    "${vals[@]}" >"$WORK/$f-test.yaml"
  kubectl create --dry-run=server -f "$WORK/$f-test.yaml" >"$WORK/$f-test.log" 2>&1 \
    || { cat "$WORK/$f-test.log" >&2; die "the helm test pod is rejected by Pod Security restricted ($f)"; }
  log "   $f: Deployments, their pods and the test pod admitted under restricted"
done

log "8. least privilege: kubectl auth can-i as the chart's ServiceAccounts"
# The chart's ServiceAccounts and RBAC applied for real (the tests run the binaries with
# these identities; here we ask the authorizer what else they could do). Release = the
# namespace's name, so the ClusterRoles do not collide; they are deleted at the end.
RB="mvdns-rbac-check-$$"
RB_APPS="$RB-apps"   # the one namespace of the rbac.scope=namespaces release
RB_OTHER="$RB-other" # a namespace nobody was granted anything in
namespaces+=("$RB" "$RB_APPS" "$RB_OTHER")
for ns in "$RB" "$RB_APPS" "$RB_OTHER"; do kubectl create namespace "$ns" >/dev/null; done
rbac_only=(-s templates/rbac-operator.yaml -s templates/rbac-dns.yaml)
helm template "$RB" "$CHART" --namespace "$RB" "${rbac_only[@]}" >"$WORK/rbac-cluster.yaml"
helm template "$RB-scoped" "$CHART" --namespace "$RB" "${rbac_only[@]}" \
  --set rbac.scope=namespaces --set "rbac.namespaces={$RB_APPS}" >"$WORK/rbac-scoped.yaml"
for f in rbac-cluster rbac-scoped; do
  applied+=("$WORK/$f.yaml")
  kubectl apply -f "$WORK/$f.yaml" >"$WORK/$f.log" 2>&1 || { cat "$WORK/$f.log" >&2; die "kubectl apply of the chart's RBAC failed ($f)"; }
done
MVRS=multivaluerecordsets.mvdns.io
MVSLICE=multivaluerecordslices.mvdns.io
# `kubectl auth can-i` resolves the resource through discovery: the CRD must be served (on
# a fresh control plane no test has installed it yet). The tests' own field manager, so
# that their installs and this one never conflict.
kubectl apply --server-side --force-conflicts --field-manager=mvdns-tests -f "$ROOT/crds/" >/dev/null
kubectl wait --for condition=established --timeout=60s "crd/$MVRS" "crd/$MVSLICE" >/dev/null
checks=0
# can_i yes|no ACCOUNT VERB RESOURCE [--subresource=S] (-A | -n NS): asks the API server's
# authorizer (SubjectAccessReview through impersonation: the user
# system:serviceaccount:$RB:ACCOUNT with its ServiceAccount groups) and fails naming the
# verb, resource and scope when the answer is not the expected one.
can_i() {
  local want=$1 account=$2 verb=$3 resource=$4; shift 4
  local got what
  what="$verb $resource${1:+ $*}"
  what=${what/ -A/ in all namespaces}; what=${what/ -n / in namespace }; what=${what/ --subresource=//}
  got=$(kubectl auth can-i "$verb" "$resource" "$@" --as="system:serviceaccount:$RB:$account" 2>"$WORK/can-i.err") || true
  case "$got" in
    yes | no) ;;
    *) cat "$WORK/can-i.err" >&2; die "kubectl auth can-i $verb $resource $* as $account gave no yes/no answer" ;;
  esac
  if [ "$got" != "$want" ]; then
    [ "$want" = yes ] && die "RBAC too narrow: ServiceAccount $account cannot $what, which it needs"
    die "RBAC too broad: ServiceAccount $account can $what, which it must not"
  fi
  checks=$((checks + 1))
}
# Sanity: impersonation reaches the authorizer (a bogus account is denied what the chart grants).
can_i no "$RB-nobody" list "$MVRS" -A

# rbac.scope=cluster (default). DNS: reads record sets everywhere, nothing else.
dns="$RB-dns"
for verb in get list watch; do can_i yes "$dns" "$verb" "$MVRS" -A; done
can_i yes "$dns" list "$MVRS" -n "$RB_OTHER"
for verb in create update patch delete deletecollection; do can_i no "$dns" "$verb" "$MVRS" -A; done
for verb in update patch; do can_i no "$dns" "$verb" "$MVRS" --subresource=status -A; done
for verb in get list watch; do can_i no "$dns" "$verb" secrets -n "$RB"; can_i no "$dns" "$verb" secrets -A; done
for verb in get list watch; do can_i no "$dns" "$verb" pods -A; done
can_i no "$dns" list pods -n "$RB"
can_i no "$dns" list configmaps -n "$RB"
can_i no "$dns" create events.events.k8s.io -n "$RB"
can_i no "$dns" create leases.coordination.k8s.io -n "$RB"
for verb in list watch; do can_i yes "$dns" "$verb" "$MVSLICE" -A; done
for verb in create update patch delete; do can_i no "$dns" "$verb" "$MVSLICE" -A; done
log "   $dns: get/list/watch record sets, list/watch their slices, cluster-wide; no writes, no status, no secrets, no pods, no events, no leases"

# Operator: reads record sets, writes only their status (server-side apply = patch), reads
# pods and EndpointSlices, writes Events, and its Lease in its own namespace only.
op="$RB-operator"
for verb in get list watch; do can_i yes "$op" "$verb" "$MVRS" -A; done
can_i yes "$op" patch "$MVRS" --subresource=status -A
can_i yes "$op" patch "$MVRS" --subresource=status -n "$RB_OTHER"
can_i no "$op" update "$MVRS" --subresource=status -A
for verb in create update patch delete deletecollection; do can_i no "$op" "$verb" "$MVRS" -A; done
can_i no "$op" update "$MVRS" -n "$RB_OTHER"
for verb in list watch; do can_i yes "$op" "$verb" pods -A; done
can_i yes "$op" list pods -n "$RB_OTHER"
for verb in create update patch delete deletecollection; do can_i no "$op" "$verb" pods -A; done
can_i no "$op" update pods --subresource=status -A
can_i no "$op" create pods --subresource=eviction -A
for verb in list watch; do can_i yes "$op" "$verb" endpointslices.discovery.k8s.io -A; done
for verb in get create update patch delete; do can_i no "$op" "$verb" endpointslices.discovery.k8s.io -A; done
can_i no "$dns" list endpointslices.discovery.k8s.io -A
for verb in list create patch delete; do can_i yes "$op" "$verb" "$MVSLICE" -A; done
for verb in watch update deletecollection; do can_i no "$op" "$verb" "$MVSLICE" -A; done
can_i yes "$op" create events.events.k8s.io -n "$RB_OTHER"
can_i yes "$op" patch events.events.k8s.io -n "$RB_OTHER"
can_i no "$op" delete events.events.k8s.io -n "$RB_OTHER"
can_i no "$op" create events -n "$RB_OTHER" # the core/v1 Events API: not used
for verb in get list watch; do can_i no "$op" "$verb" secrets -n "$RB"; can_i no "$op" "$verb" secrets -A; done
can_i no "$op" list configmaps -n "$RB"
for verb in get create update; do can_i yes "$op" "$verb" leases.coordination.k8s.io -n "$RB"; done
can_i no "$op" delete leases.coordination.k8s.io -n "$RB"
for verb in get create update; do can_i no "$op" "$verb" leases.coordination.k8s.io -n "$RB_OTHER"; done
can_i no "$op" create leases.coordination.k8s.io -A
log "   $op: read record sets, patch their status, list/patch/delete their slices, list/watch pods and EndpointSlices, create/patch events.k8s.io Events;"
log "   get/create/update Leases in $RB only; no spec writes, no pod writes, no secrets, no other Leases"

# Both read Nodes (topology zones: labels, addresses, pod CIDRs), list/watch only.
for account in "$dns" "$op"; do
  for verb in list watch; do can_i yes "$account" "$verb" nodes; done
  for verb in get create update patch delete; do can_i no "$account" "$verb" nodes; done
  can_i no "$account" patch nodes --subresource=status
done
log "   both: list/watch Nodes (topology), no get, no writes"

# rbac.scope=namespaces: the same rules, in the listed namespace only.
sdns="$RB-scoped-dns" sop="$RB-scoped-operator"
can_i yes "$sdns" list "$MVRS" -n "$RB_APPS"
can_i yes "$sdns" watch "$MVRS" -n "$RB_APPS"
can_i no "$sdns" list "$MVRS" -n "$RB_OTHER"
can_i no "$sdns" list "$MVRS" -A
can_i no "$sdns" patch "$MVRS" --subresource=status -n "$RB_APPS"
can_i yes "$sop" patch "$MVRS" --subresource=status -n "$RB_APPS"
can_i yes "$sop" list pods -n "$RB_APPS"
can_i yes "$sop" create events.events.k8s.io -n "$RB_APPS"
can_i no "$sop" patch "$MVRS" --subresource=status -n "$RB_OTHER"
can_i no "$sop" list pods -n "$RB_OTHER"
can_i no "$sop" list pods -A
can_i yes "$sop" watch endpointslices.discovery.k8s.io -n "$RB_APPS"
can_i no "$sop" list endpointslices.discovery.k8s.io -n "$RB_OTHER"
can_i no "$sop" list "$MVRS" -A
can_i yes "$sop" patch "$MVSLICE" -n "$RB_APPS"
can_i yes "$sop" create "$MVSLICE" -n "$RB_APPS"
can_i no "$sop" patch "$MVSLICE" -n "$RB_OTHER"
can_i yes "$sdns" watch "$MVSLICE" -n "$RB_APPS"
can_i no "$sdns" watch "$MVSLICE" -n "$RB_OTHER"
can_i no "$sop" get secrets -n "$RB_APPS"
can_i yes "$sop" update leases.coordination.k8s.io -n "$RB"
can_i no "$sop" update leases.coordination.k8s.io -n "$RB_APPS"
can_i yes "$sop" list nodes # Nodes are cluster-scoped: a ClusterRole in both scopes
can_i yes "$sdns" watch nodes
log "   rbac.scope=namespaces: both accounts limited to $RB_APPS (leases: $RB)"
log "   $checks kubectl auth can-i answers as expected"

log "9. the Tiltfile evaluates (tilt alpha tiltfile-result)"
# Runs when Tilt is cached (hack/tilt-build.sh, ~11 minutes on 2 cores to build once, needs
# gcc for cgo), or with MVDNS_TILT=build, which builds it first; MVDNS_TILT=skip skips it.
# Evaluation loads the Tiltfile (helm template, docker_build/custom_build registration,
# port-forward and resource settings) against the current kube context; it builds and
# deploys nothing. The options file allows that context and is a temporary one: a
# developer's tilt_options.json is neither read nor written.
tilt=""
case "${MVDNS_TILT:-auto}" in
  skip) ;;
  build) tilt=$("$ROOT/hack/tilt-build.sh") || die "hack/tilt-build.sh failed" ;;
  *) tilt=$("$ROOT/hack/tilt-build.sh" --cached 2>/dev/null) || tilt="" ;;
esac
if [ -z "$tilt" ]; then
  log "   tilt $TILT_VERSION not built: skipped (hack/tilt-build.sh, or MVDNS_TILT=build, enables it)"
else
  context=$(kubectl config current-context)
  printf '{"allow_k8s_contexts": ["%s"], "namespace": "%s"}\n' "$context" "$NS-tilt" >"$WORK/tilt_options.json"
  for builder in docker oci; do
    if [ "$builder" = oci ]; then
      printf '{"allow_k8s_contexts": ["%s"], "namespace": "%s", "image_builder": "oci", "default_registry": "localhost:5001"}\n' \
        "$context" "$NS-tilt" >"$WORK/tilt_options.json"
    fi
    (cd "$ROOT" && MVDNS_TILT_OPTIONS="$WORK/tilt_options.json" TILT_DISABLE_ANALYTICS=1 \
      "$tilt" alpha tiltfile-result -f Tiltfile >"$WORK/tilt-$builder.json" 2>"$WORK/tilt-$builder.log") \
      || { cat "$WORK/tilt-$builder.log" >&2; die "tilt alpha tiltfile-result failed (image_builder=$builder)"; }
    python3 - "$WORK/tilt-$builder.json" "$builder" "$NS-tilt" <<'PY' >"$WORK/tilt-check.txt" 2>&1 \
      || { cat "$WORK/tilt-check.txt" >&2; die "Tiltfile result (image_builder=$builder) is not what it should be"; }
import json, sys
path, builder, ns = sys.argv[1:4]
result = json.load(open(path))
assert not result.get("Error"), f"Tiltfile error: {result['Error']}"
manifests = {m["Name"]: m for m in result["Manifests"]}
assert set(manifests) == {"crds", "binaries", "mvdns-dns", "mvdns-operator", "uncategorized"}, sorted(manifests)
images = {"mvdns-dns": "ghcr.io/mvdns/mvdns-server", "mvdns-operator": "ghcr.io/mvdns/mvdns-operator"}
forwards = {"mvdns-dns": {(5353, 5353), (19153, 9153)}, "mvdns-operator": {(18080, 8080)}}
for name, ref in images.items():
    m, deploy = manifests[name], manifests[name]["DeployTarget"]
    assert sorted(m["ResourceDependencies"] or []) == ["binaries", "crds"], (name, m["ResourceDependencies"])
    targets = [t["selector"] for t in m["ImageTargets"] or []]
    assert targets == [ref], (name, targets)
    build = m["ImageTargets"][0]
    if builder == "docker":
        assert build["BuildDetails"].get("dockerfileContents"), f"{name}: no docker_build"
    else:
        assert "hack/image.sh" in json.dumps(build["BuildDetails"]), f"{name}: no custom_build with hack/image.sh"
    got = {(f["localPort"], f["containerPort"]) for f in deploy["portForwardTemplateSpec"]["forwards"]}
    assert got == forwards[name], (name, got)
    assert f"namespace: {ns}" in deploy["yaml"], f"{name} not deployed to {ns}"
registry = json.dumps(result.get("DefaultRegistry") or {})
assert ("localhost:5001" in registry) == (builder == "oci"), registry
for m in result["Manifests"]:
    assert "kind: CustomResourceDefinition" not in (m["DeployTarget"] or {}).get("yaml", ""), f"{m['Name']} deploys a CRD"
print("ok")
PY
    log "   image_builder=$builder: no errors; resources crds, binaries, mvdns-dns, mvdns-operator; images, port-forwards, namespace and deps as set"
  done
fi
log "all checks passed"
