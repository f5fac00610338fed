#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd from
# the Go module proxy (tools/k8s pins them), plus kwok and helm, into a cache directory
# keyed by version. Prints the directory holding the binaries. Safe to call repeatedly:
# a complete cached set is reused without touching Go.
LOG_TAG=k8s-build
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sum_key=$(sha256sum "$ROOT/tools/k8s/go.sum" | cut -c1-12)
BIN="$CACHE/k8s/$K8S_VERSION-$sum_key"
need=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)

complete() { local b; for b in "${need[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if complete; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || die "Go is required (the machine's Go 1.26 is enough)"
mkdir -p "$BIN.partial"
start=$(date +%s)
log "first build of the Kubernetes $K8S_VERSION test binaries into $BIN"
log "this takes 10-20 minutes on 2 cores and a few GB of Go cache; later runs reuse it"

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

(
  cd "$ROOT/tools/k8s"
  if [ ! -x "$BIN.partial/etcd" ]; then
    log "step 1/4: etcd $ETCD_VERSION"
    go_build_with_progress "$BIN.partial" "-s -w" go.etcd.io/etcd/server/v3
    mv "$BIN.partial/server" "$BIN.partial/etcd" # go names the binary "server", the element before /v3
  fi
  log "step 2/4: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION"
  go_build_with_progress "$BIN.partial" "-s -w $kver" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
)
log "step 3/4: kwok $KWOK_VERSION (a few minutes on 2 cores)"
go_install_with_progress "$BIN.partial" "-s -w" sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
log "step 4/4: helm $HELM_VERSION (a few minutes on 2 cores)"
go_install_with_progress "$BIN.partial" "-s -w \
  -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
  helm.sh/helm/v3/cmd/helm "$HELM_VERSION"

version=$("$BIN.partial/kube-apiserver" --version) || die "the built kube-apiserver does not run"
matches "$version" "$K8S_VERSION" || die "kube-apiserver reports $version, not $K8S_VERSION"
rm -rf "$BIN"; mv "$BIN.partial" "$BIN"
log "done in $(( $(date +%s) - start ))s: $(cd "$BIN" && echo *)"
echo "$BIN"
