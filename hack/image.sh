#!/usr/bin/env bash
# Assembles a container image as an OCI image layout, without a container engine, from
# one statically linked binary (glibc with crt-static, see hack/build-static.sh):
#   hack/image.sh BIN NAME OUTDIR
# OUTDIR gets oci-layout, index.json and blobs/sha256/: one gzip layer holding
# /usr/local/bin/NAME, /etc/passwd and /etc/group (user nonroot 65532, as in
# gcr.io/distroless/static:nonroot), /home/nonroot and /tmp; a config with User 65532:65532,
# Entrypoint [/usr/local/bin/NAME] and OCI labels. The layer is reproducible (fixed mtimes,
# owners and order), so the same binary gives the same digest.
#
# Then it checks what it wrote: re-reads index -> manifest -> config -> layer, verifies every
# digest and size, the user and that the entrypoint is an executable file in the layer. With
# MVDNS_IMAGE_VERIFY=crane (the default when crane is cached) it also pushes the layout to a
# throwaway in-memory registry (`crane registry serve`) and runs `crane validate` and
# `crane config` on it, an independent reader. MVDNS_IMAGE_VERIFY=none skips that.
#
# Environment: MVDNS_IMAGE_TAG (ref name in index.json, default "dev"), MVDNS_IMAGE_REPO
# (default ghcr.io/mvdns/NAME; REPO:TAG is the name containerd imports it as),
# MVDNS_IMAGE_ARCHIVE=FILE (also a tar of the layout, for `ctr images import`),
# MVDNS_IMAGE_VERSION (label, default the tag), MVDNS_IMAGE_PUSH=REF (push the result with
# crane, e.g. to Tilt's $EXPECTED_REF).
# Push elsewhere yourself: crane push OUTDIR REGISTRY/NAME:TAG; or load into Docker/Podman
# with `skopeo copy oci:OUTDIR docker-daemon:NAME:TAG`.
LOG_TAG=image
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 3 ] || die "usage: hack/image.sh BIN NAME OUTDIR"
bin=$1 name=$2 out=$3
[ -f "$bin" ] || die "no such binary: $bin"
[[ "$name" =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad image name: $name"
command -v python3 >/dev/null || die "python3 is required"
if [ "$(od -An -tx1 -N4 "$bin" | tr -d ' \n')" = 7f454c46 ] && command -v file >/dev/null; then # ELF
  matches "$(file -L "$bin")" 'statically linked|static-pie' \
    || log "warning: $bin does not look statically linked; it will not run on an empty base"
fi

tag=${MVDNS_IMAGE_TAG:-dev}
repo=${MVDNS_IMAGE_REPO:-ghcr.io/mvdns/$name}
version=${MVDNS_IMAGE_VERSION:-$tag}
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)

CRANE_VERSION=v0.22.1
CRANE="$CACHE/tools/crane-$CRANE_VERSION/crane"
ensure_crane() {
  [ -x "$CRANE" ] && return 0
  command -v go >/dev/null || die "crane needs Go to build (go install from the module proxy)"
  log "building crane $CRANE_VERSION into $(dirname "$CRANE") (about a minute on 2 cores)"
  go_install_with_progress "$(dirname "$CRANE").partial" "-s -w" \
    github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  mv "$(dirname "$CRANE").partial" "$(dirname "$CRANE")"
}

rm -rf "$out"
mkdir -p "$out"
passwd='root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n'
group='root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n'
label=org.opencontainers.image
python3 "$ROOT/hack/oci.py" "$out" --name "$name" --ref "$repo:$tag" --user 65532:65532 \
  --entrypoint "[\"/usr/local/bin/$name\"]" --workdir /home/nonroot --env HOME=/home/nonroot \
  --text "etc/passwd=$passwd" --text "etc/group=$group" --dir home/nonroot:0700:65532 --dir tmp:1777 \
  --file "$bin:usr/local/bin/$name:0755" ${MVDNS_IMAGE_ARCHIVE:+--archive "$MVDNS_IMAGE_ARCHIVE"} \
  --label "$label.title=$name" \
  --label "$label.description=mvdns: Route 53 style multivalue answer routing for Kubernetes" \
  --label "$label.source=https://github.com/mvdns/mvdns" --label "$label.version=$version" \
  --label "$label.revision=$revision" --label "$label.licenses=Apache-2.0"

# Self-check: read back what is on disk, trusting nothing from the writer above.
python3 - "$out" "$name" <<'PY'
import gzip, hashlib, io, json, sys, tarfile
out, name = sys.argv[1:3]
def fail(msg): sys.exit(f"image check failed: {msg}")
def read_blob(desc, media_type):
    if desc.get("mediaType") != media_type: fail(f"media type {desc.get('mediaType')} != {media_type}")
    algo, hexd = desc["digest"].split(":")
    data = open(f"{out}/blobs/{algo}/{hexd}", "rb").read()
    if hashlib.sha256(data).hexdigest() != hexd: fail(f"digest mismatch for {desc['digest']}")
    if len(data) != desc["size"]: fail(f"size mismatch for {desc['digest']}")
    return data
if json.load(open(f"{out}/oci-layout")) != {"imageLayoutVersion": "1.0.0"}: fail("oci-layout")
index = json.load(open(f"{out}/index.json"))
if index.get("schemaVersion") != 2 or len(index.get("manifests", [])) != 1: fail("index.json")
manifest = json.loads(read_blob(index["manifests"][0], "application/vnd.oci.image.manifest.v1+json"))
config = json.loads(read_blob(manifest["config"], "application/vnd.oci.image.config.v1+json"))
layers = [read_blob(l, "application/vnd.oci.image.layer.v1.tar+gzip") for l in manifest["layers"]]
diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(l)).hexdigest() for l in layers]
if diff_ids != config["rootfs"]["diff_ids"]: fail("rootfs.diff_ids do not match the layers")
user = config["config"].get("User", "")
if not user or user.split(":")[0] in ("", "0", "root"): fail(f"user {user!r} is root")
if not user.split(":")[0].isdigit(): fail(f"user {user!r} is not numeric (runAsNonRoot cannot verify names)")
entry = config["config"]["Entrypoint"]
if entry != [f"/usr/local/bin/{name}"]: fail(f"entrypoint {entry}")
if (config["os"], config["architecture"]) != ("linux", "amd64"): fail("platform")
files = {}
for l in layers:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(l))) as t:
        for m in t.getmembers(): files["/" + m.name] = m
exe = files.get(entry[0])
if exe is None or not exe.isfile() or not exe.mode & 0o111: fail(f"{entry[0]} is not an executable file in the layer")
if "nonroot:x:65532:65532" not in tarfile.open(fileobj=io.BytesIO(gzip.decompress(layers[0]))).extractfile("etc/passwd").read().decode():
    fail("/etc/passwd lacks nonroot")
print(f"ok: {index['manifests'][0]['digest']} user={user} entrypoint={entry} "
      f"layer={manifest['layers'][0]['size']}B files={sorted(files)}", file=sys.stderr)
PY

verify=${MVDNS_IMAGE_VERIFY:-}
[ -n "$verify" ] || { [ -x "$CRANE" ] && verify=crane || verify=none; }
if [ "$verify" = crane ] || [ -n "${MVDNS_IMAGE_PUSH:-}" ]; then ensure_crane; fi
if [ "$verify" = crane ]; then
  # An independent reader: push to a throwaway registry, validate, read the config back.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$CRANE" registry serve --address "127.0.0.1:$port" >/dev/null 2>&1 &
  reg_pid=$!
  trap 'kill "$reg_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  ref="127.0.0.1:$port/$name:$tag"
  "$CRANE" push --insecure "$out" "$ref" >/dev/null 2>&1 || die "crane push of the layout failed"
  "$CRANE" validate --insecure --remote "$ref" >&2 || die "crane validate failed"
  cfg=$("$CRANE" config --insecure "$ref")
  python3 - "$cfg" "$name" <<'PY' || die "crane reads a different config"
import json, sys
c = json.loads(sys.argv[1])["config"]
assert c["User"] == "65532:65532", c
assert c["Entrypoint"] == [f"/usr/local/bin/{sys.argv[2]}"], c
PY
  log "crane: validated $ref (user 65532:65532, entrypoint /usr/local/bin/$name)"
  kill "$reg_pid" 2>/dev/null || true
  trap - EXIT
fi
if [ -n "${MVDNS_IMAGE_PUSH:-}" ]; then
  "$CRANE" push "$out" "$MVDNS_IMAGE_PUSH" >&2
fi
log "wrote OCI layout $out ($name:$tag)"
