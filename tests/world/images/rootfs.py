#!/usr/bin/env python3
"""rootfs.py - assemble a container root filesystem from this machine's Debian packages.

    rootfs.py OUT_DIR [--pkg NAME]... [--file SRC[=DEST]]... [--link TARGET=DEST]...
                      [--user NAME:UID:GID]... [--dir PATH[:MODE]]...

  --pkg NAME       every file and symlink of the installed package NAME (`dpkg -L`); /usr/share/doc,
                   man pages and locales are left out
  --file SRC=DEST  one file (DEST defaults to SRC)
  --link T=DEST    a symlink DEST -> T
  --user N:U:G     a line in /etc/passwd and /etc/group (root is always there)
  --dir PATH:MODE  an empty directory (mode in octal, default 755)

Every ELF file that ends up in the tree brings the shared libraries it needs (`ldd`, then again
for each library until nothing is missing), so a binary from `build/` or a package runs in the
image as it runs here. The tree is merged-/usr like Debian 12: /bin, /sbin, /lib and /lib64 are
symlinks into /usr. Prints the installed package versions it used (for the cache key) with
--print-versions. Ownership is not kept (mkimage.py makes everything root's).
"""
import argparse
import os
import shutil
import stat
import subprocess
import sys

MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
SKIP_PREFIXES = ("/usr/share/doc", "/usr/share/man", "/usr/share/locale", "/usr/share/lintian",
                 "/usr/share/info", "/usr/share/bug")


def fail(msg):
    print(f"rootfs.py: {msg}", file=sys.stderr)
    sys.exit(1)


def canonical(path):
    """/lib/x86_64-linux-gnu/libc.so.6 -> usr/lib/x86_64-linux-gnu/libc.so.6 (relative, merged-/usr)."""
    rel = os.path.normpath(path).lstrip("/")
    top, _, rest = rel.partition("/")
    if top in MERGED:
        rel = MERGED[top] + ("/" + rest if rest else "")
    return rel


def package_files(name):
    try:
        out = subprocess.run(["dpkg", "-L", name], check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        fail(f"package {name} is not installed ({e.stderr.strip()}); tools/install-deps.sh installs it")
    return [p for p in out.splitlines()
            if p.startswith("/") and p != "/." and not p.startswith(SKIP_PREFIXES)]


def package_version(name):
    return subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", name],
                          check=True, capture_output=True, text=True).stdout.strip()


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def needed_libraries(path):
    """Absolute paths of the libraries `ldd` resolves for an ELF file (none for a static one)."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    if r.returncode != 0:  # "not a dynamic executable"
        return []
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            fail(f"{path}: ldd cannot resolve {line}")
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" ")[0]
        else:
            target = line.split(" ")[0]
        if target.startswith("/"):
            libs.append(target)
    return libs


class Tree:
    def __init__(self, root):
        self.root = root
        self.done = set()
        self.elves = []

    def dest(self, rel):
        return os.path.join(self.root, rel)

    def ensure_dir(self, rel, mode=0o755):
        d = self.dest(rel)
        if not os.path.isdir(d):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, mode)

    def add(self, src, dst=None):
        """Copies src (a file, symlink or directory entry of the host) to dst in the tree."""
        rel = canonical(dst or src)
        if rel in self.done:
            return
        self.done.add(rel)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            fail(f"{src} does not exist")
        self.ensure_dir(os.path.dirname(rel))
        out = self.dest(rel)
        if stat.S_ISDIR(st.st_mode):
            self.ensure_dir(rel, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            if os.path.isdir(out) and not os.path.islink(out):
                return  # /bin, /lib, ...: the tree's own merged-/usr directories
            target = os.readlink(src)
            if os.path.lexists(out):
                os.unlink(out)
            os.symlink(target, out)
            # What the link points to comes too, link by link (a package's .so link, an
            # /etc/alternatives chain), so that no link in the image dangles.
            nxt = os.path.normpath(os.path.join(os.path.dirname(src), target))
            if os.path.lexists(nxt) and not os.path.isdir(nxt):
                self.add(nxt)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, out)
            os.chmod(out, stat.S_IMODE(st.st_mode))
            if is_elf(src):
                self.elves.append(src)
        # sockets, devices and fifos of a package list are not image content

    def close_libraries(self):
        seen = set()
        while self.elves:
            elf = self.elves.pop()
            if elf in seen:
                continue
            seen.add(elf)
            for lib in needed_libraries(elf):
                self.add(lib)
                # ldd prints the name the loader looks up; that name must exist in the image
                real = os.path.realpath(lib)
                if real != lib:
                    self.add(real)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--pkg", action="append", default=[])
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--link", action="append", default=[])
    ap.add_argument("--user", action="append", default=[])
    ap.add_argument("--dir", action="append", default=[])
    ap.add_argument("--print-versions", action="store_true",
                    help="only print 'package version' of every --pkg and exit")
    a = ap.parse_args()
    if a.print_versions:
        for p in a.pkg:
            print(package_version(p))
        return
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    t = Tree(a.out)
    t.ensure_dir("usr")
    for top, target in MERGED.items():
        t.ensure_dir(target)
        os.symlink(target, t.dest(top))
    for d in ("etc", "proc", "sys", "dev", "run", "var"):
        t.ensure_dir(d)
    t.ensure_dir("tmp", 0o1777)
    for p in a.pkg:
        for f in package_files(p):
            if os.path.lexists(f):
                t.add(f)
    for spec in a.file:
        src, _, dst = spec.partition("=")
        t.add(src, dst or None)
    for spec in a.link:
        target, _, dst = spec.partition("=")
        rel = canonical(dst)
        t.ensure_dir(os.path.dirname(rel))
        if os.path.lexists(t.dest(rel)):
            os.unlink(t.dest(rel))
        os.symlink(target, t.dest(rel))
        t.done.add(rel)
    for spec in a.dir:
        path, _, mode = spec.partition(":")
        t.ensure_dir(canonical(path), int(mode or "755", 8))
    t.close_libraries()
    users = [("root", 0, 0)] + [(n, int(u), int(g)) for n, u, g in (s.split(":") for s in a.user)]
    with open(t.dest("etc/passwd"), "w") as f:
        for n, u, g in users:
            home = "/root" if u == 0 else "/tmp"
            shell = "/bin/sh" if u == 0 else "/usr/sbin/nologin"
            f.write(f"{n}:x:{u}:{g}:{n}:{home}:{shell}\n")
    with open(t.dest("etc/group"), "w") as f:
        groups = {}
        for n, _, g in users:
            groups.setdefault(g, n)
        for g, n in sorted(groups.items()):
            f.write(f"{n}:x:{g}:\n")
    for name in ("passwd", "group"):
        os.chmod(t.dest("etc/" + name), 0o644)


if __name__ == "__main__":
    main()
