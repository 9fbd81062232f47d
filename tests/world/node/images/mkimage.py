#!/usr/bin/env python3
"""mkimage.py OUT.tar REF ENTRYPOINT_JSON SRC=DEST... - a docker-archive image from local files.

One layer holding each SRC file at DEST (mode kept, owner root, mtime 0) plus the directories
tmp, proc, sys, dev and etc; a config with ENTRYPOINT_JSON; manifest.json naming REF. The same
inputs give the same bytes. `ctr images import` (containerd) reads the result.
"""
import hashlib
import io
import json
import os
import sys
import tarfile


def add_dir(tar, path, dirs, mode=0o755):
    if path in dirs:
        return
    info = tarfile.TarInfo(path)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)
    dirs.add(path)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, ref, entrypoint = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    files = sorted(a.split("=", 1) for a in sys.argv[4:])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        dirs = set()
        for d in ("dev", "etc", "proc", "sys"):
            add_dir(layer, d, dirs)
        add_dir(layer, "tmp", dirs, 0o1777)
        for src, dest in files:
            parts = dest.strip("/").split("/")
            for i in range(1, len(parts)):
                add_dir(layer, "/".join(parts[:i]), dirs)
            info = tarfile.TarInfo("/".join(parts))
            info.size = os.path.getsize(src)
            info.mode = os.stat(src).st_mode & 0o7777
            with open(src, "rb") as f:
                layer.addfile(info, f)
    blob = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(blob).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out + ".tmp", "w") as tar:
        for name, data in (("layer.tar", blob), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(out + ".tmp", out)
    print(out, ref, diff_id)


main()
