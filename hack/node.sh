#!/usr/bin/env bash
# A real worker node on this machine: kubelet, kube-proxy (nftables), containerd, runc and
# the CNI bridge, joined to a control plane of its own (hack/testenv.sh in $ND/plane, its
# API server on the node's bridge address so that pods reach it). KWOK stays for the scale
# tests; this node runs containers from images built here, without a registry.
#
#   hack/node.sh up          build what is missing (cached), start the plane and the node
#   hack/node.sh down        stop what `up` started (by PID) and undo every change to the host
#   hack/node.sh status      what runs
#   hack/node.sh env         `export` lines for KUBECONFIG and friends
#   hack/node.sh snapshot    the host state `down` must restore (links, routes, nftables
#                            tables, mounts, sysctls, the node's processes and directories)
#
# Requires root (a bridge, nftables, mounts) and Debian's containerd, runc,
# containernetworking-plugins and nftables (hack/deps.sh installs them).
#
# What it changes on the machine, and how each change is kept in or undone
# (../realnode-notes.md has the facts this was built from):
# - a bridge $BRIDGE carrying the node IP $NODE_IP/16 (dummy links do not exist here, and the
#   kubelet refuses a loopback node IP), a route of the Service CIDR to it, and the nftables
#   table `inet mvdns_node_guard`, which drops every forwarded packet that does not go from
#   the bridge to the bridge: no pod packet can leave the machine, nothing else is forwarded
#   while ip_forward is on. Pods have no default route and no masquerade. `down` deletes all
#   three.
# - sysctls: the bridge plugin turns net.ipv4.ip_forward on (ClusterIP hairpin needs it); the
#   kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops once at start.
#   Saved before, the kubelet's put back as soon as the node is Ready, all put back at `down`.
# - no iptables rules: the kubelet runs with a PATH without iptables (it logs "No iptables
#   support" and installs nothing); kube-proxy's PATH holds only nft and it creates the
#   tables `ip kube-proxy` and `ip6 kube-proxy`, which `up` refuses to start beside and
#   `down` deletes. kube-proxy's conntrack sysctl tuning is off (zeros).
# - mounts under $ND (the kubelet's root, projected volumes, overlays, netns files): `down`
#   unmounts every one, deepest first.
# - paths compiled into containerd, the kubelet and libcni: /run/containerd,
#   /var/lib/kubelet, /var/lib/cni, and the cgroups /sys/fs/cgroup/*/kubepods: `up` refuses
#   to start if another runtime owns them, and `down` removes them.
LOG_TAG=node
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Normalized: the kubelet refuses paths with "..", and mounts are matched by their path.
ND=$(realpath -m "${MVDNS_NODE_DIR:-$ROOT/target/node}")
BRIDGE=mvdns0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/16
NODE_NAME=mvdns-node
CNI_NETWORK=mvdns-node
SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory kernel.panic kernel.panic_on_oops)
# Paths outside $ND that containerd, the kubelet and libcni write to whatever their config says.
HOST_PATHS=(/run/containerd /var/lib/kubelet /var/lib/cni)
# The images every pod on the node can use (imagePullPolicy: Never).
PAUSE_IMAGE=registry.k8s.io/pause:3.10
TEST_IMAGE=mvdns.invalid/testbox:dev
COREDNS_IMAGE=mvdns.invalid/coredns:${COREDNS_VERSION#v}
# kube-system/kube-dns, the cluster DNS (hack/node/coredns.yaml); the kubelet's clusterDNS.
CLUSTER_DNS=10.96.0.10
export MVDNS_TESTENV_DIR="$ND/plane" MVDNS_ETCD_PORT=${MVDNS_NODE_ETCD_PORT:-14379}
export MVDNS_API_PORT=${MVDNS_NODE_API_PORT:-18443} MVDNS_API_ADDRESS=$NODE_IP MVDNS_KWOK_NODES=1
export MVDNS_KCM_CONTROLLERS='*,-nodeipam' # with the node lifecycle controller (testenv.sh)
SOCK="$ND/containerd/containerd.sock"

# start NAME CMD...: runs CMD in the background, logging to $ND/NAME.log, PID in $ND/NAME.pid.
start() {
  local name=$1; shift
  "$@" >"$ND/$name.log" 2>&1 &
  echo $! >"$ND/$name.pid"
}
alive() { [ -f "$ND/$1.pid" ] && kill -0 "$(cat "$ND/$1.pid")" 2>/dev/null; }
kubectl_admin() { "$BIN/kubectl" --kubeconfig "$ND/plane/admin.kubeconfig" "$@"; }

# wait_until WHAT SECONDS CMD...: polls CMD every half second, at most SECONDS. With
# WATCH=NAME, stops at once when the process NAME has exited, with the end of its log.
wait_until() {
  local what=$1 limit=$2; shift 2
  local tries=$((limit * 2))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${WATCH:-}" ] && ! alive "$WATCH"; then
      tail -n 5 "$ND/$WATCH.log" >&2
      die "$WATCH exited while waiting for $what; its log: $ND/$WATCH.log"
    fi
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "$what not within ${limit}s; see $ND/*.log"
    sleep 0.5
  done
}

# --- checks before anything changes ---------------------------------------------------------

# preflight: why a real node cannot start here, or nothing. Read-only.
preflight() {
  [ "$(id -u)" = 0 ] || { echo "the real node needs root (a bridge, nftables rules, mounts)"; return; }
  local cmd
  for cmd in containerd ctr runc nft ip; do
    command -v "$cmd" >/dev/null || { echo "$cmd is missing (hack/deps.sh installs it)"; return; }
  done
  for cmd in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$cmd" ] || { echo "the CNI plugin /usr/lib/cni/$cmd is missing (containernetworking-plugins)"; return; }
  done
  if [ -n "$(awk -v p="$ND" 'index($5, p) == 1' /proc/self/mountinfo)" ]; then
    echo "mounts under $ND are left from an earlier run: hack/node.sh down"; return
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && { echo "a link $BRIDGE exists already (a node left up? hack/node.sh down)"; return; }
  local table
  for table in "ip kube-proxy" "ip6 kube-proxy" "inet mvdns_node_guard"; do
    # shellcheck disable=SC2086 # family and name are two words
    nft list table $table >/dev/null 2>&1 && { echo "the nftables table '$table' exists already: another kube-proxy runs here"; return; }
  done
  local path
  for path in "${HOST_PATHS[@]}"; do
    [ -e "$path" ] && { echo "$path exists: another container runtime or kubelet owns it"; return; }
  done
  if [ -d /sys/fs/cgroup/cpu/kubepods ] || [ -d /sys/fs/cgroup/kubepods ]; then
    echo "kubepods cgroups exist: another kubelet runs here"; return
  fi
  if [ -n "$(ip route show "$POD_CIDR")" ] || [ -n "$(ip route show "$SERVICE_CIDR")" ]; then
    echo "a route to $POD_CIDR or $SERVICE_CIDR exists: the node's networks would clash"; return
  fi
  true
}

# --- images ----------------------------------------------------------------------------------

# build_images: pause, the test image and both mvdns images as archives in $ND/images.
build_images() {
  local out="$ND/images" bin static
  mkdir -p "$out"
  log "images: pause (gcc -static), $TEST_IMAGE (busybox, glibc's getent, dig), CoreDNS, mvdns-operator, mvdns-server"
  gcc -static -O2 -s -o "$out/pause" "$ROOT/hack/node/pause.c"
  python3 "$ROOT/hack/oci.py" "$out/pause.oci" --name pause --ref "$PAUSE_IMAGE" --user 65535:65535 \
    --entrypoint '["/pause"]' --file "$out/pause:pause:0755" --archive "$out/pause.tar"
  # The test image: busybox (httpd for backends, nslookup, sh), glibc's own getent and
  # BIND's dig (the chart's `helm test` runs it) with the shared libraries ldd names: the
  # pods resolve names through glibc's stub resolver, as applications do.
  local args=(--file /bin/busybox:bin/busybox:0755 --file /usr/bin/getent:usr/bin/getent:0755
    --file /usr/bin/dig:usr/bin/dig:0755
    --text "etc/nsswitch.conf=hosts: files dns\n" --dir tmp:1777
    --text "etc/passwd=root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    --text "etc/group=root:x:0:\nnobody:x:65534:\n")
  local lib
  for lib in $(ldd /usr/bin/getent /usr/bin/dig | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i}' | sort -u); do
    args+=(--file "$lib:${lib#/}:0755")
  done
  local applet
  for applet in sh cat cut date echo env grep httpd kill ls mkdir nslookup printf ps rm sed sleep test timeout \
    touch wc wget; do
    args+=(--symlink "bin/$applet:busybox")
  done
  python3 "$ROOT/hack/oci.py" "$out/testbox.oci" --name testbox --ref "$TEST_IMAGE" --user 65534:65534 \
    --entrypoint '["/bin/sh"]' "${args[@]}" --fast --archive "$out/testbox.tar"
  # CoreDNS, the cluster DNS: the binary hack/coredns-build.sh caches (MVDNS_COREDNS names it).
  local coredns=${MVDNS_COREDNS:-$("$ROOT/hack/coredns-build.sh")}
  python3 "$ROOT/hack/oci.py" "$out/coredns.oci" --name coredns --ref "$COREDNS_IMAGE" --user 65532:65532 \
    --entrypoint '["/coredns"]' --file "$coredns:coredns:0755" --dir etc/coredns/main --dir etc/coredns/custom \
    --fast --archive "$out/coredns.tar"
  # MVDNS_STATIC_DIR: binaries built already (a test under cargo must not run cargo again).
  static=${MVDNS_STATIC_DIR:-$("$ROOT/hack/build-static.sh")}
  for bin in mvdns-operator mvdns-server; do
    MVDNS_IMAGE_VERIFY=none MVDNS_IMAGE_TAG=node MVDNS_IMAGE_ARCHIVE="$out/$bin.tar" \
      "$ROOT/hack/image.sh" "$static/$bin" "$bin" "$out/$bin.oci" 2>"$out/$bin.log" \
      || { cat "$out/$bin.log" >&2; die "hack/image.sh $bin failed"; }
  done
}

import_images() {
  local archive
  for archive in "$ND"/images/*.tar; do
    ctr --address "$SOCK" -n k8s.io images import "$archive" >/dev/null \
      || die "ctr images import $archive failed"
  done
  log "images in containerd: $(ctr --address "$SOCK" -n k8s.io images ls -q | tr '\n' ' ')"
}

# --- identities --------------------------------------------------------------------------------

# sign NAME SUBJECT EXT: a key and a certificate signed by the plane's CA, in $ND/pki.
sign() {
  local name=$1 subject=$2 ext=$3 ca="$ND/plane/pki"
  openssl req -newkey rsa:2048 -nodes -keyout "$ND/pki/$name.key" -out "$ND/pki/$name.csr" -subj "$subject" 2>/dev/null
  printf '%b' "$ext" >"$ND/pki/$name.ext"
  openssl x509 -req -in "$ND/pki/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 3650 -out "$ND/pki/$name.crt" -extfile "$ND/pki/$name.ext" 2>/dev/null
}

# cert_kubeconfig NAME: $ND/NAME.kubeconfig with the client certificate $ND/pki/NAME.
cert_kubeconfig() {
  cat >"$ND/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://$NODE_IP:$MVDNS_API_PORT", certificate-authority: "$ND/plane/pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$ND/pki/$1.crt", client-key: "$ND/pki/$1.key"}
contexts:
- name: node
  context: {cluster: node, user: $1}
current-context: node
EOF
}

make_identities() {
  mkdir -p "$ND/pki"
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" 'extendedKeyUsage=clientAuth\n'
  sign kubelet-serving "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME\nextendedKeyUsage=serverAuth\n"
  sign kube-proxy "/CN=system:kube-proxy" 'extendedKeyUsage=clientAuth\n'
  cert_kubeconfig kubelet
  cert_kubeconfig kube-proxy
}

# --- configs -----------------------------------------------------------------------------------

write_configs() {
  mkdir -p "$ND/containerd" "$ND/cni/net.d" "$ND/cni/ipam" "$ND/kubelet" "$ND/logs/pods" "$ND/path"
  cat >"$ND/containerd/config.toml" <<EOF
version = 2
root = "$ND/containerd/root"
state = "$ND/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  tolerate_missing_hugetlb_controller = true
  # Root here has no CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj (the sandbox's -998).
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ND/containerd/opt"
EOF
  cat >"$ND/cni/net.d/10-mvdns-node.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$CNI_NETWORK", "plugins": [{"type": "bridge", "bridge": "$BRIDGE",
 "isGateway": true, "isDefaultGateway": false, "ipMasq": false, "hairpinMode": true,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.1.1",
  "rangeEnd": "10.88.255.254", "gateway": "$NODE_IP"}]], "routes": [{"dst": "$SERVICE_CIDR"}],
  "dataDir": "$ND/cni/ipam"}}]}
EOF
  # Pods with dnsPolicy Default get this file: no server off the machine.
  printf 'nameserver 127.0.0.1\n' >"$ND/resolv.conf"
  cat >"$ND/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: 20250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
tlsCertFile: $ND/pki/kubelet-serving.crt
tlsPrivateKeyFile: $ND/pki/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $ND/plane/pki/ca.crt}}
authorization: {mode: Webhook}
podLogsDir: $ND/logs/pods
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: $ND/resolv.conf
failSwapOn: false
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
protectKernelDefaults: false
syncFrequency: 10s
EOF
  cat >"$ND/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: $NODE_NAME
clientConnection: {kubeconfig: $ND/kube-proxy.kubeconfig}
healthzBindAddress: 127.0.0.1:20256
metricsBindAddress: 127.0.0.1:20249
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOF
  ln -sf "$(command -v nft)" "$ND/path/nft"
}

# --- the host ------------------------------------------------------------------------------------

save_sysctls() {
  local key
  for key in "${SYSCTLS[@]}"; do echo "$key=$(sysctl -n "$key")"; done >"$ND/sysctl.saved"
}

# restore_sysctls [KEY...]: puts back the saved values (all when no key is given).
restore_sysctls() {
  [ -f "$ND/sysctl.saved" ] || return 0
  local line key
  while IFS= read -r line; do
    key=${line%%=*}
    if [ $# -eq 0 ] || [[ " $* " == *" $key "* ]]; then sysctl -q -w "$line" >/dev/null; fi
  done <"$ND/sysctl.saved"
}

host_up() {
  log "host: bridge $BRIDGE ($NODE_IP/16), Service CIDR $SERVICE_CIDR routed to it, forward guard"
  ip link add "$BRIDGE" type bridge
  echo "$BRIDGE" >"$ND/bridge"
  ip addr add "$NODE_IP/16" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  nft -f - <<EOF
table inet mvdns_node_guard {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname != "$BRIDGE" counter drop comment "nothing from elsewhere is forwarded while ip_forward is on"
    oifname != "$BRIDGE" counter drop comment "no pod packet leaves the machine"
  }
}
EOF
  echo guard >"$ND/guard"
}

host_down() {
  if [ -f "$ND/guard" ]; then
    nft delete table inet mvdns_node_guard 2>/dev/null || true
    rm -f "$ND/guard"
  fi
  if [ -f "$ND/kube-proxy.tables" ]; then
    # Created by the kube-proxy this script started (up refuses to start beside others).
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
    rm -f "$ND/kube-proxy.tables"
  fi
  if [ -f "$ND/bridge" ]; then
    local veth
    # Pods' veth ends left on the bridge (a sandbox not torn down through the CRI).
    for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$veth" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true # its address and routes go with it
    rm -f "$ND/bridge"
  fi
  restore_sysctls
  rm -f "$ND/sysctl.saved"
}

# unmount_all: every mount under $ND, deepest first (the kubelet's root bind mount, tmpfs of
# projected volumes, overlays, netns files).
unmount_all() { unmount_under "$ND"; }

# unmount_under PATH: every mount at or below PATH, deepest first.
unmount_under() {
  local mount
  awk -v p="$1" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while IFS= read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || log "warning: cannot unmount $mount"
  done
}

# remove_host_paths: what the runtime wrote outside $ND; up made sure none of it was there.
remove_host_paths() {
  [ -f "$ND/host-paths" ] || return 0
  local path
  for path in "${HOST_PATHS[@]}"; do
    [ -e "$path" ] || continue
    unmount_under "$path"
    rm -rf "$path"
  done
  local cg
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/k8s.io; do
    # Leaf first: rmdir of a cgroup works only when it has no children and no processes.
    if [ -d "$cg" ]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  rm -f "$ND/host-paths"
}

# processes_naming PATH: PIDs of processes whose command line names PATH (the shims
# containerd starts carry its socket's path; the plane's processes carry $ND/plane).
processes_naming() {
  local pid cmdline
  for pid in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' <"$pid/cmdline" 2>/dev/null) || continue
    if [[ "$cmdline" == *"$1"* ]]; then echo "${pid#/proc/}"; fi
  done
  true
}

# pod_processes: PIDs in the kubepods cgroups (containers whose shim is gone).
pod_processes() {
  local procs
  for procs in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs; do
    [ -f "$procs" ] && cat "$procs"
  done
  true
}

# stop NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
  local name=$1 pid tries=40
  [ -f "$ND/$name.pid" ] || return 0
  pid=$(cat "$ND/$name.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $tries -gt 0 ]; do sleep 0.25; tries=$((tries - 1)); done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$ND/$name.pid"
}

# --- up and down ---------------------------------------------------------------------------------

up() {
  local t0 why
  t0=$(date +%s)
  if alive kubelet; then log "already up ($ND)"; return; fi
  why=$(preflight)
  [ -z "$why" ] || die "no real node on this machine: $why"
  BIN=$("$ROOT/hack/k8s-build.sh")
  rm -rf "$ND"; mkdir -p "$ND"
  echo "$BIN" >"$ND/bin-dir"
  build_images
  save_sysctls
  echo "${HOST_PATHS[*]}" >"$ND/host-paths"
  host_up
  log "control plane for the node (API server on https://$NODE_IP:$MVDNS_API_PORT)"
  "$ROOT/hack/testenv.sh" up
  make_identities
  write_configs

  log "containerd $(containerd --version | awk '{print $3}') (config $ND/containerd/config.toml)"
  start containerd containerd --config "$ND/containerd/config.toml"
  WATCH=containerd wait_until "containerd's socket" 30 ctr --address "$SOCK" version
  import_images

  log "kubelet $K8S_VERSION as node $NODE_NAME ($NODE_IP)"
  # No iptables in its PATH: the kubelet then installs no KUBE-FIREWALL or canary chains.
  start kubelet env PATH=/usr/bin:/bin "$BIN/kubelet" --config="$ND/kubelet.yaml" \
    --kubeconfig="$ND/kubelet.kubeconfig" --root-dir="$ND/kubelet" --cert-dir="$ND/pki" \
    --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --node-labels=mvdns.io/node=real
  WATCH=kubelet wait_until "node $NODE_NAME Ready" 90 kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  # The kubelet set these once at start; the machine's values go back now (it does not
  # set them again while it runs).
  restore_sysctls vm.overcommit_memory kernel.panic kernel.panic_on_oops

  log "kube-proxy (nftables)"
  echo created >"$ND/kube-proxy.tables"
  start kube-proxy env PATH="$ND/path:/usr/bin:/bin" "$BIN/kube-proxy" --config="$ND/kube-proxy.yaml"
  WATCH=kube-proxy wait_until "kube-proxy's healthz" 60 curl -sf http://127.0.0.1:20256/healthz
  log "cluster DNS: CoreDNS ${COREDNS_VERSION} as kube-system/kube-dns on $CLUSTER_DNS"
  sed -e "s|@CLUSTER_DNS@|$CLUSTER_DNS|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$ROOT/hack/node/coredns.yaml" \
    >"$ND/coredns.yaml"
  kubectl_admin apply -f "$ND/coredns.yaml" >/dev/null
  wait_until "CoreDNS Available" 90 kubectl_admin -n kube-system wait --for=condition=Available deployment/coredns --timeout=1s
  log "node up in $(($(date +%s) - t0))s; $ND/plane/admin.kubeconfig is the admin kubeconfig"
}

down() {
  BIN=$(cat "$ND/bin-dir" 2>/dev/null || true)
  stop kube-proxy
  stop kubelet
  if alive containerd && [ -n "$BIN" ]; then
    # Through the CRI, as the kubelet would: every container stopped, the sandboxes' CNI
    # DEL (veth, IP), their netns files unmounted.
    "$BIN/crictl" --runtime-endpoint "unix://$SOCK" --timeout 20s rmp --all --force >/dev/null 2>&1 \
      || log "warning: crictl rmp failed; the sandboxes' processes are stopped by PID below"
  fi
  stop containerd
  local pid left
  left=$( (processes_naming "$ND/containerd/"; pod_processes) | sort -u)
  for pid in $left; do kill -9 "$pid" 2>/dev/null || true; done
  [ -z "$left" ] || log "stopped what the runtime had left running: pids $(echo "$left" | tr '\n' ' ')"
  [ -d "$ND/plane" ] && "$ROOT/hack/testenv.sh" down
  unmount_all
  remove_host_paths
  host_down
  log "stopped; the host is as before up"
}

status() {
  local name
  for name in containerd kubelet kube-proxy; do
    if alive "$name"; then echo "$name: running (pid $(cat "$ND/$name.pid"))"; else echo "$name: stopped"; fi
  done
  [ -d "$ND/plane" ] && "$ROOT/hack/testenv.sh" status
  true
}

env_lines() {
  echo "export MVDNS_NODE_DIR=$ND"
  echo "export MVDNS_TESTENV_DIR=$ND/plane"
  echo "export KUBECONFIG=$ND/plane/admin.kubeconfig"
  echo "export PATH=$(cat "$ND/bin-dir"):\$PATH"
}

# snapshot: the host state that `down` must leave as `up` found it, one line per fact.
# Counters and other moving values are left out (link statistics, conntrack counts).
snapshot() {
  ip -o link show | awk -F': ' '{print "link " $2}' | cut -d@ -f1
  ip -o addr show | awk '{print "addr " $2 " " $4}'
  ip route show table all | sed 's/^/route /'
  ip -6 route show table all | sed 's/^/route6 /'
  nft list ruleset 2>/dev/null | sed 's/counter packets [0-9]* bytes [0-9]*/counter/; s/^/nft /'
  awk '{print "mount " $5 " " $9}' /proc/self/mountinfo
  local key
  for key in "${SYSCTLS[@]}" net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding \
    net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables; do
    echo "sysctl $key=$(sysctl -n "$key" 2>/dev/null || echo absent)"
  done
  local path
  for path in "${HOST_PATHS[@]}" /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -e "$path" ] && echo "path $path"
  done
  local pid name
  for pid in $(processes_naming "$ND/"; pod_processes); do
    echo "process $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  done
  for name in containerd containerd-shim kubelet kube-proxy runc; do # comm: 15 characters
    for pid in $(pgrep -x "$name" || true); do echo "process $pid $name"; done
  done
  true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_lines ;;
  snapshot) snapshot ;;
  preflight) why=$(preflight); [ -z "$why" ] || { echo "$why"; exit 1; } ;;
  *) echo "usage: $0 up|down|status|env|snapshot|preflight" >&2; exit 2 ;;
esac
