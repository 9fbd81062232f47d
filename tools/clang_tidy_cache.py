#!/usr/bin/env python3
"""clang_tidy_cache.py - which of src/'s files clang-tidy must look at again.

  clang_tidy_cache.py misses BUILD ROOT CACHE   prints the files whose key is not in CACHE, one
                                                per line, and writes their keys to CACHE/pending
  clang_tidy_cache.py commit CACHE              records the pending keys (after a clean run)

A file's key is the SHA-256 of everything clang-tidy's verdict on it depends on: clang-tidy's
version, .clang-tidy, the file's compile flags and the file preprocessed with its comments kept
(`c++ -E -C -P`: every header it includes, NOLINT comments included). Paths under ROOT are
written as "<root>", so that clones in other folders share the cache. Only clean verdicts are
recorded: a file with a finding is looked at on every run until it is clean.
"""
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys


def tidy_identity(root):
    version = subprocess.run(["clang-tidy-14", "--version"], capture_output=True,
                             check=False).stdout
    with open(os.path.join(root, ".clang-tidy"), "rb") as f:
        return version + b"\0" + f.read()


def preprocess_args(command):
    """The compile command with -E -C -P instead of -o/-c (the compiler's own preprocessor)."""
    args = shlex.split(command)
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-c":
            continue
        out.append(a)
    return out + ["-E", "-C", "-P"]


def key_of(entry, root, identity):
    args = preprocess_args(entry["command"])
    res = subprocess.run(args, cwd=entry["directory"], capture_output=True, check=False)
    if res.returncode != 0:
        return None  # clang-tidy will say why
    h = hashlib.sha256()
    h.update(identity)
    flags = [a for a in args if a != entry["file"]]
    h.update("\0".join(flags).replace(root, "<root>").encode())
    h.update(b"\0")
    h.update(res.stdout.replace(root.encode(), b"<root>"))
    return h.hexdigest()


def misses(build, root, cache):
    with open(os.path.join(build, "compile_commands.json"), encoding="utf-8") as f:
        db = json.load(f)
    prefix = os.path.join(root, "src") + os.sep
    entries = [e for e in db if e["file"].startswith(prefix)]
    identity = tidy_identity(root)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        keys = list(pool.map(lambda e: key_of(e, root, identity), entries))
    os.makedirs(cache, exist_ok=True)
    pending = []
    for entry, key in zip(entries, keys):
        if key is not None and os.path.exists(os.path.join(cache, key)):
            continue
        print(entry["file"])
        if key is not None:
            pending.append(key)
    with open(os.path.join(cache, "pending"), "w", encoding="utf-8") as f:
        f.write("\n".join(pending))
    return 0


def commit(cache):
    path = os.path.join(cache, "pending")
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        for key in f.read().split():
            with open(os.path.join(cache, key), "w", encoding="utf-8"):
                pass
    os.remove(path)
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == "misses":
        return misses(argv[2], os.path.realpath(argv[3]), argv[4])
    if len(argv) == 3 and argv[1] == "commit":
        return commit(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
