#!/usr/bin/env python3
"""Build, once and cached, the container images a real local node needs.

No image registry is reachable from the machines this project runs on, so the
images a real containerd node needs are built here, from sources in this
repository and from Debian packages, and written as OCI image layout archives
that ``ctr -n k8s.io images import <tar>`` loads. They are named under the
``nodeops.local/`` prefix: they are the project's own images, not upstream
ones.

Only the standard library is used.

    images.py build     build (or reuse) every image and print name -> tar
    images.py list      print the image references
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get(
    "NODEOPS_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nodeops"),
)
PAUSE_SRC = os.path.join(REPO, "tools", "nodeimages", "pause")

PAUSE_IMAGE = "nodeops.local/pause:1"
PYTHON_IMAGE = "nodeops.local/debian-python:bookworm"
SLEEPER_IMAGE = "nodeops.local/sleeper:1"
# name -> size in bytes of the single incompressible file in its only layer
PRUNE_TEST_IMAGES = {
    "nodeops.local/prune-test-a:1": 300 * 1024,
    "nodeops.local/prune-test-b:1": 600 * 1024,
    "nodeops.local/prune-keep-c:1": 900 * 1024,
}

DEBIAN_SUITE = "bookworm"
DEBIAN_VARIANT = "minbase"
DEBIAN_PACKAGES = ["python3", "libpython3.11-stdlib", "util-linux", "ca-certificates"]
# Emptied in the rootfs to keep the image small (the directories stay).
DEBIAN_STRIP = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                "usr/share/man", "usr/share/locale"]
# Host-specific files debootstrap copies in; the runtime provides its own.
DEBIAN_DROP = ["etc/resolv.conf", "etc/hostname", "var/log/bootstrap.log"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Bump when the archive layout written here changes, so cached tars are rebuilt.
FORMAT = "nodeops-oci-1"

MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"

GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower())


def ref_names():
    """Every image reference build_all() produces."""
    return [PAUSE_IMAGE, PYTHON_IMAGE, SLEEPER_IMAGE] + list(PRUNE_TEST_IMAGES)


def images_dir():
    return os.path.join(CACHE, "images")


def _slug(ref):
    return ref.replace("nodeops.local/", "").replace("/", "_").replace(":", "_")


def _cached_path(ref, key):
    return os.path.join(images_dir(), "%s-%s.tar" % (_slug(ref), key))


def _key(*parts):
    digest = hashlib.sha256(FORMAT.encode())
    for part in parts:
        digest.update(b"\0" + (part if isinstance(part, bytes) else str(part).encode()))
    return digest.hexdigest()[:16]


def _forget_stale(ref, keep):
    """Remove cached tars of ``ref`` built from other inputs."""
    prefix = _slug(ref) + "-"
    for name in os.listdir(images_dir()):
        full = os.path.join(images_dir(), name)
        if name.startswith(prefix) and name.endswith(".tar") and full != keep \
                and len(name) == len(os.path.basename(keep)):
            os.unlink(full)


# ---------------------------------------------------------------- go


def go_inputs_hash(src):
    """Hash of a Go module's sources and the Go version: the cache key of its binary."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(src)):
        if name.endswith((".go", ".mod", ".sum")):
            with open(os.path.join(src, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    digest.update(subprocess.run(["go", "version"], capture_output=True, check=True).stdout)
    return digest.hexdigest()[:16]


def build_pause(log=print):
    """Build (or reuse) the static pause binary; return its path in CACHE/bin."""
    if not shutil.which("go"):
        sys.exit("[images] Go is required to build the pause binary (go 1.26 or newer)")
    bindir = os.path.join(CACHE, "bin")
    os.makedirs(bindir, exist_ok=True)
    out = os.path.join(bindir, "nodeops-pause-" + go_inputs_hash(PAUSE_SRC))
    if os.path.exists(out):
        return out
    log("[images] building the pause binary from %s" % os.path.relpath(PAUSE_SRC, REPO))
    tmp = "%s.tmp.%d" % (out, os.getpid())
    env = dict(os.environ, CGO_ENABLED="0", GOOS="linux", GOARCH=GOARCH)
    proc = subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, "."],
                          cwd=PAUSE_SRC, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        sys.exit("[images] building pause failed:\n" + proc.stdout + proc.stderr)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------- OCI archives


def _tarinfo(name, size=0, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _layer_bytes(entries):
    """A deterministic uncompressed layer tar from [(path, bytes-or-None, mode)]
    (None: a directory). Entries are sorted; owner root, mtime 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in sorted(entries, key=lambda e: e[0]):
            if data is None:
                tar.addfile(_tarinfo(name, mode=mode, kind=tarfile.DIRTYPE))
            else:
                tar.addfile(_tarinfo(name, len(data), mode), io.BytesIO(data))
    return buf.getvalue()


def _json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha256_file(path):
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


def _gzip_file(src, dst):
    """gzip src into dst reproducibly (no name, mtime 0)."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            shutil.copyfileobj(fin, gz, 1 << 20)


def _write_oci(ref, out, layer_path, layer_gzip, img_config, created_by):
    """Write the OCI image layout archive of a one-layer image to ``out``, atomically.

    ``layer_path`` is the uncompressed layer tar; its digest is the diff_id.
    """
    diff_id, _ = _sha256_file(layer_path)
    if layer_gzip:
        blob = layer_path + ".gz"
        _gzip_file(layer_path, blob)
        layer_mt = MT_LAYER_GZIP
    else:
        blob = layer_path
        layer_mt = MT_LAYER
    layer_digest, layer_size = _sha256_file(blob)

    config = _json({
        "architecture": GOARCH,
        "os": "linux",
        "config": img_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": created_by, "comment": "built by tools/localcluster/images.py"}],
    })
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": layer_mt, "digest": layer_digest, "size": layer_size}],
    })
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = _json({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": GOARCH, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
            },
        }],
    })
    layout = _json({"imageLayoutVersion": "1.0.0"})

    tmp = "%s.tmp.%d" % (out, os.getpid())
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo("blobs", mode=0o755, kind=tarfile.DIRTYPE))
            tar.addfile(_tarinfo("blobs/sha256", mode=0o755, kind=tarfile.DIRTYPE))
            blobs = sorted([(config_digest, config), (manifest_digest, manifest),
                            (layer_digest, None)])
            for digest, data in blobs:
                name = "blobs/sha256/" + digest.split(":", 1)[1]
                if data is None:
                    with open(blob, "rb") as f:
                        tar.addfile(_tarinfo(name, layer_size), f)
                else:
                    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            tar.addfile(_tarinfo("index.json", len(index)), io.BytesIO(index))
            tar.addfile(_tarinfo("oci-layout", len(layout)), io.BytesIO(layout))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if blob != layer_path:
        os.unlink(blob)


def _build_small(ref, key, entries, img_config, created_by, log):
    """Build a one-layer image from in-memory entries unless cached."""
    out = _cached_path(ref, key)
    if os.path.exists(out):
        return out
    log("[images] building %s" % ref)
    work = tempfile.mkdtemp(prefix="build-", dir=images_dir())
    try:
        layer = os.path.join(work, "layer.tar")
        with open(layer, "wb") as f:
            f.write(_layer_bytes(entries))
        _write_oci(ref, out, layer, False, img_config, created_by)
    finally:
        shutil.rmtree(work)
    _forget_stale(ref, out)
    return out


# ---------------------------------------------------------------- images


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def build_pause_image(pause_bin, log=print):
    data = _read(pause_bin)
    key = _key(PAUSE_IMAGE, hashlib.sha256(data).hexdigest())
    return _build_small(PAUSE_IMAGE, key, [("pause", data, 0o755)],
                        {"Entrypoint": ["/pause"], "Env": [PATH_ENV]},
                        "COPY tools/nodeimages/pause /pause", log)


SLEEPER_MARKER = b"nodeops sleeper test image: the pause binary run as '/sleeper sleep'.\n"


def build_sleeper_image(pause_bin, log=print):
    data = _read(pause_bin)
    key = _key(SLEEPER_IMAGE, hashlib.sha256(data).hexdigest(), SLEEPER_MARKER)
    return _build_small(SLEEPER_IMAGE, key,
                        [("sleeper", data, 0o755), ("etc", None, 0o755),
                         ("etc/nodeops-sleeper", SLEEPER_MARKER, 0o644)],
                        {"Entrypoint": ["/sleeper", "sleep"], "Env": [PATH_ENV]},
                        "COPY tools/nodeimages/pause /sleeper", log)


def prune_test_content(ref, size):
    """Deterministic, incompressible bytes: a SHA-256 counter stream seeded by ``ref``."""
    seed = hashlib.sha256(("nodeops prune test " + ref).encode()).digest()
    chunks = []
    for i in range((size + 31) // 32):
        chunks.append(hashlib.sha256(seed + i.to_bytes(8, "big")).digest())
    return b"".join(chunks)[:size]


def build_prune_image(ref, size, log=print):
    key = _key(ref, size, "sha256-counter-v1")
    fname = "data-" + _slug(ref).rsplit("_", 1)[0] + ".bin"
    return _build_small(ref, key, [(fname, prune_test_content(ref, size), 0o644)],
                        {"Env": [PATH_ENV]}, "ADD %s (%d bytes, seeded)" % (fname, size), log)


def debian_mirror():
    """The host's Debian mirror: deb822 sources first, then sources.list, else the default."""
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for line in f:
                if line.strip().startswith("URIs:"):
                    uris = line.split(":", 1)[1].split()
                    if uris:
                        return uris[0]
    except OSError:
        pass
    try:
        with open("/etc/apt/sources.list") as f:
            for line in f:
                line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0])  # drop [options]
                words = line.split()
                if len(words) > 1 and words[0] == "deb":
                    return words[1]
    except OSError:
        pass
    return DEFAULT_MIRROR


def _mounts_under(top):
    top = os.path.realpath(top)
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].encode().decode("unicode_escape")
            if point == top or point.startswith(top + "/"):
                found.append(point)
    return found


def _remove_tree(top):
    """rm -rf a build root, but never through a mount left inside it."""
    for point in sorted(_mounts_under(top), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    left = _mounts_under(top)
    if left:
        sys.exit("[images] refusing to remove %s: still mounted: %s" % (top, ", ".join(left)))
    shutil.rmtree(top, ignore_errors=True)


def _empty_dir(path):
    if not os.path.isdir(path) or os.path.islink(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _rootfs_layer(root, out):
    """Tar a root filesystem as a layer: modes, owners, symlinks (as-is, absolute
    ones too), hardlinks and mtimes preserved; sorted; device nodes, fifos and
    sockets skipped (the /dev directory itself is kept)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(full, arc):
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or \
                    stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                return
            info = tar.gettarinfo(full, arc)
            info.uname = info.gname = ""
            info.mtime = int(st.st_mtime)
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir() and not os.path.islink(full):
                for name in sorted(os.listdir(full)):
                    add(os.path.join(full, name), arc + "/" + name)

        for name in sorted(os.listdir(root)):
            add(os.path.join(root, name), name)


def build_python_image(log=print):
    key = _key(PYTHON_IMAGE, DEBIAN_SUITE, DEBIAN_VARIANT, ",".join(DEBIAN_PACKAGES),
               ",".join(DEBIAN_STRIP), ",".join(DEBIAN_DROP), GOARCH)
    out = _cached_path(PYTHON_IMAGE, key)
    if os.path.exists(out):
        return out
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
    if not debootstrap:
        sys.exit("[images] debootstrap is required to build %s (apt-get install debootstrap)"
                 % PYTHON_IMAGE)
    if os.geteuid() != 0:
        sys.exit("[images] building %s needs root (debootstrap)" % PYTHON_IMAGE)
    mirror = debian_mirror()
    log("[images] building %s with debootstrap from %s (first time: about 1-2 minutes)"
        % (PYTHON_IMAGE, mirror))
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="build-", dir=images_dir())
    logfile = os.path.join(images_dir(), "debootstrap.log")
    try:
        root = os.path.join(work, "rootfs")
        cmd = [debootstrap, "--variant=" + DEBIAN_VARIANT, "--arch=" + GOARCH,
               "--include=" + ",".join(DEBIAN_PACKAGES), DEBIAN_SUITE, root, mirror]
        # A private mount namespace: whatever debootstrap mounts inside the
        # target (proc, sys, dev) disappears with it, even if it is killed.
        if shutil.which("unshare"):
            cmd = ["unshare", "--mount", "--propagation", "private"] + cmd
        with open(logfile, "wb") as lf:
            proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
            while True:
                try:
                    rc = proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    log("[images]   still running debootstrap ... %ds"
                        % (time.monotonic() - started))
        if rc != 0:
            with open(logfile, errors="replace") as lf:
                tail = "".join(lf.readlines()[-20:])
            sys.exit("[images] debootstrap failed (exit %d), see %s:\n%s" % (rc, logfile, tail))
        for rel in ("usr/bin/python3", "usr/bin/nsenter"):
            if not os.path.lexists(os.path.join(root, rel)):
                sys.exit("[images] debootstrap rootfs lacks /%s" % rel)
        for rel in DEBIAN_STRIP:
            _empty_dir(os.path.join(root, rel))
        for rel in DEBIAN_DROP:
            p = os.path.join(root, rel)
            if os.path.lexists(p) and not os.path.isdir(p):
                os.unlink(p)
        log("[images]   debootstrap done in %ds; writing the image" % (time.monotonic() - started))
        layer = os.path.join(work, "layer.tar")
        _rootfs_layer(root, layer)
        _write_oci(PYTHON_IMAGE, out, layer, True, {"Env": [PATH_ENV], "Cmd": ["python3"]},
                   "debootstrap --variant=%s --include=%s %s"
                   % (DEBIAN_VARIANT, ",".join(DEBIAN_PACKAGES), DEBIAN_SUITE))
    finally:
        _remove_tree(work)
    _forget_stale(PYTHON_IMAGE, out)
    log("[images] built %s in %ds" % (PYTHON_IMAGE, time.monotonic() - started))
    return out


def build_all(log=print):
    """Build every missing image; return {ref: tar path} for all of them."""
    os.makedirs(images_dir(), exist_ok=True)
    pause_bin = build_pause(log)
    result = {
        PAUSE_IMAGE: build_pause_image(pause_bin, log),
        PYTHON_IMAGE: build_python_image(log),
        SLEEPER_IMAGE: build_sleeper_image(pause_bin, log),
    }
    for ref, size in PRUNE_TEST_IMAGES.items():
        result[ref] = build_prune_image(ref, size, log)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "list"])
    args = parser.parse_args(argv)
    if args.command == "list":
        for ref in ref_names():
            print(ref)
        return 0
    for ref, tar in build_all(lambda msg: print(msg, flush=True)).items():
        print("%s -> %s" % (ref, tar))
    return 0


if __name__ == "__main__":
    sys.exit(main())
