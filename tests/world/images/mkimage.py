#!/usr/bin/env python3
"""mkimage.py - write a container image as a docker-archive tar from a root filesystem folder.

    mkimage.py --rootfs DIR --ref REPO:TAG --out IMAGE.tar [--entrypoint JSON] [--cmd JSON]
               [--user UID:GID] [--workdir DIR] [--env K=V]...

The archive is what `docker save` writes and `ctr images import` reads: one uncompressed layer
(layer.tar), the image config (<sha256>.json) and manifest.json naming the tag. No registry and no
daemon are involved. The layer is reproducible: entries sorted, every owner root (0:0), every
mtime 0, so the same folder always gives the same image ID. Prints "REF ID SIZE".
"""
import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile


def write_layer(rootfs, out):
    """Writes the layer tar to out; returns its sha256 (the diff ID)."""
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries, key=lambda p: os.path.relpath(p, rootfs)):
            rel = os.path.relpath(path, rootfs)
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                sys.exit(f"mkimage.py: {path}: not a file, directory or symlink")
    digest = hashlib.sha256()
    with open(out, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plain_entry(info):
    """An archive member as docker save writes it: root's, mode 644, mtime 0."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o644
    info.mtime = 0
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--ref", required=True, help="e.g. world.local/pause:1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--entrypoint", type=json.loads, default=None)
    ap.add_argument("--cmd", type=json.loads, default=None)
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()
    if ":" not in a.ref.rsplit("/", 1)[-1]:
        sys.exit(f"mkimage.py: --ref {a.ref} needs a tag (REPO:TAG)")

    layer_path = a.out + ".layer.tmp"
    diff_id = "sha256:" + write_layer(a.rootfs, layer_path)
    config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env}
    if a.entrypoint is not None:
        config["Entrypoint"] = a.entrypoint
    if a.cmd is not None:
        config["Cmd"] = a.cmd
    if a.user:
        config["User"] = a.user
    if a.workdir:
        config["WorkingDir"] = a.workdir
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "tests/world/images/mkimage.py"}],
    }, sort_keys=True).encode()
    image_id = hashlib.sha256(image_config).hexdigest()
    manifest = json.dumps([{"Config": image_id + ".json", "RepoTags": [a.ref],
                            "Layers": ["layer.tar"]}]).encode()

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        out.add(layer_path, arcname="layer.tar", filter=plain_entry)
        for name, data in ((image_id + ".json", image_config), ("manifest.json", manifest)):
            info = plain_entry(tarfile.TarInfo(name))
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    os.remove(layer_path)
    os.replace(tmp, a.out)
    print(a.ref, "sha256:" + image_id, os.path.getsize(a.out))


if __name__ == "__main__":
    main()
