#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd from
# the Go module proxy (tools/k8s pins them), the real node's kubelet and kube-proxy, plus
# kwok, helm and crictl, into a cache directory
# keyed by version. Prints the directory holding the binaries. Safe to call repeatedly:
# a complete cached set is reused without touching Go.
LOG_TAG=k8s-build
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sum_key=$(sha256sum "$ROOT/tools/k8s/go.sum" | cut -c1-12)
BIN="$CACHE/k8s/$K8S_VERSION-$sum_key"
need=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok helm crictl)

complete() { local b; for b in "${need[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if complete; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || die "Go is required (the machine's Go 1.26 is enough)"
# A set that lacks a binary added later (crictl, say) is completed, not rebuilt: every step
# below skips binaries that are already there.
if [ -d "$BIN" ] && [ ! -d "$BIN.partial" ]; then cp -a "$BIN" "$BIN.partial"; fi
mkdir -p "$BIN.partial"
have() { local b; for b in "$@"; do [ -x "$BIN.partial/$b" ] || return 1; done; }
start=$(date +%s)
log "building the Kubernetes $K8S_VERSION test binaries missing from $BIN"
log "the first build takes 15-25 minutes on 2 cores and a few GB of Go cache; later runs reuse it"

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

(
  cd "$ROOT/tools/k8s"
  if ! have etcd; then
    log "step 1/5: etcd $ETCD_VERSION"
    go_build_with_progress "$BIN.partial" "-s -w" go.etcd.io/etcd/server/v3
    mv "$BIN.partial/server" "$BIN.partial/etcd" # go names the binary "server", the element before /v3
  fi
  have kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy && exit 0
  log "step 2/5: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy $K8S_VERSION"
  go_build_with_progress "$BIN.partial" "-s -w $kver" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
)
if ! have kwok; then
  log "step 3/5: kwok $KWOK_VERSION (a few minutes on 2 cores)"
  go_install_with_progress "$BIN.partial" "-s -w" sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
fi
if ! have helm; then
  log "step 4/5: helm $HELM_VERSION (a few minutes on 2 cores)"
  go_install_with_progress "$BIN.partial" "-s -w \
  -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
fi

if ! have crictl; then
  log "step 5/5: crictl $CRI_TOOLS_VERSION (the real node's teardown)"
  go_install_with_progress "$BIN.partial" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
    sigs.k8s.io/cri-tools/cmd/crictl "$CRI_TOOLS_VERSION"
fi
version=$("$BIN.partial/kube-apiserver" --version) || die "the built kube-apiserver does not run"
matches "$version" "$K8S_VERSION" || die "kube-apiserver reports $version, not $K8S_VERSION"
rm -rf "$BIN"; mv "$BIN.partial" "$BIN"
log "done in $(( $(date +%s) - start ))s: $(cd "$BIN" && echo *)"
echo "$BIN"
