#!/usr/bin/env python3
"""Writes a one-layer OCI image layout without a container engine.

    hack/oci.py OUTDIR --name NAME --ref REF --user UID:GID --entrypoint JSON [options]

    --file SRC:DEST[:MODE]    a regular file from the host (MODE octal, default 0755 for
                              executables, 0644 otherwise)
    --text DEST=TEXT          a regular file (0644) with TEXT as its content (\\n for newlines)
    --dir DEST[:MODE[:UID]]   a directory (parents of files are added as 0755 root)
    --symlink DEST:TARGET     a symbolic link
    --cmd JSON                the image's Cmd
    --env K=V                 added to PATH=/usr/local/bin:/usr/bin:/bin
    --workdir DIR
    --label K=V               OCI labels (config) and the manifest's title/version/revision
    --archive FILE            also pack the layout as a tar, as `ctr images import` takes it
    --fast                    gzip level 1 instead of 9 (big test images, built on every run)

OUTDIR gets oci-layout, index.json and blobs/sha256/. The index entry names the image twice:
`org.opencontainers.image.ref.name` (REF's tag, as OCI tools read it) and
`io.containerd.image.name` (the whole REF, which containerd's import uses as the image name).
The layer is reproducible: fixed mtimes, owners and order, so the same inputs give the same
digest. Used by hack/image.sh (the mvdns binaries) and hack/node.sh (pause and test images).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = "1970-01-01T00:00:00Z"


def tar_entry(path, kind, mode, data=b"", uid=0, gid=0, link=""):
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = 0
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def split_spec(spec, parts, what):
    fields = spec.split(":", parts - 1)
    if len(fields) < 2 and what != "dir":
        sys.exit(f"oci.py: --{what} {spec!r}: expected at least two ':'-separated fields")
    return fields


def layer_entries(args):
    """Every entry of the layer, directories first for each path, in a fixed order."""
    entries = {}

    def add_parents(dest):
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, tar_entry(d, tarfile.DIRTYPE, 0o755))

    for spec in args.dir:
        fields = spec.split(":")
        dest = fields[0].strip("/")
        mode = int(fields[1], 8) if len(fields) > 1 else 0o755
        owner = int(fields[2]) if len(fields) > 2 else 0
        add_parents(dest)
        entries[dest] = tar_entry(dest, tarfile.DIRTYPE, mode, uid=owner, gid=owner)
    for spec in args.file:
        src, dest, *mode = split_spec(spec, 3, "file")
        with open(src, "rb") as f:
            data = f.read()
        default = 0o755 if os.access(src, os.X_OK) else 0o644
        add_parents(dest)
        entries[dest.strip("/")] = tar_entry(dest, tarfile.REGTYPE, int(mode[0], 8) if mode else default, data)
    for spec in args.text:
        if "=" not in spec:
            sys.exit(f"oci.py: --text {spec!r}: expected DEST=TEXT")
        dest, text = spec.split("=", 1)
        add_parents(dest)
        entries[dest.strip("/")] = tar_entry(dest, tarfile.REGTYPE, 0o644, text.replace("\\n", "\n").encode())
    for spec in args.symlink:
        dest, target = split_spec(spec, 2, "symlink")
        add_parents(dest)
        entries[dest.strip("/")] = tar_entry(dest, tarfile.SYMTYPE, 0o777, link=target)
    return [entries[k] for k in sorted(entries)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--name", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--entrypoint", required=True, type=json.loads)
    p.add_argument("--cmd", type=json.loads)
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--text", action="append", default=[])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--symlink", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--archive")
    p.add_argument("--fast", action="store_true")
    args = p.parse_args()

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in layer_entries(args):
            tar.addfile(info, data)
    layer_tar = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1 if args.fast else 9) as g:
        g.write(layer_tar)

    os.makedirs(f"{args.out}/blobs/sha256", exist_ok=True)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(f"{args.out}/blobs/sha256/{digest}", "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    labels = dict(kv.split("=", 1) for kv in args.label)
    config = {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": args.entrypoint,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", *args.env],
            "WorkingDir": args.workdir,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created": EPOCH, "created_by": f"hack/oci.py {args.name}"}],
    }
    if args.cmd is not None:
        config["config"]["Cmd"] = args.cmd
    compact = {"sort_keys": True, "separators": (",", ":")}
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(json.dumps(config, **compact).encode())}
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz.getvalue())}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {k: v for k, v in labels.items() if k in (
            "org.opencontainers.image.title", "org.opencontainers.image.version", "org.opencontainers.image.revision")},
    }
    tag = args.ref.rsplit(":", 1)[1] if ":" in args.ref.rsplit("/", 1)[-1] else "latest"
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     **blob(json.dumps(manifest, **compact).encode()),
                     "platform": {"architecture": "amd64", "os": "linux"},
                     "annotations": {"org.opencontainers.image.ref.name": tag,
                                     "io.containerd.image.name": args.ref}}
    with open(f"{args.out}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [manifest_desc]}, f, indent=2)
    with open(f"{args.out}/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    if args.archive:
        with tarfile.open(args.archive, "w") as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(f"{args.out}/{name}", arcname=name)


if __name__ == "__main__":
    main()
