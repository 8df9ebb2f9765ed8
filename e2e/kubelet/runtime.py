"""The container runtime: OCI archives unpacked once, each container a `runc run` in the
foreground (its exit status is the container's), or a host command standing in for an image
that has no archive.

Containers share the host's network namespace (no netns, no CNI): they reach each other, and
servers the test starts, on 127.0.0.1. The cgroup namespace is left out too, as in
e2e/images-test.sh, which this follows.
"""

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading

import yaml

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg):
    print(f"kubelet: {msg}", flush=True)


class ImageError(Exception):
    """An image with no archive or host command: the pod waits (ErrImagePull)."""


class Images:
    """Maps image references to OCI archives or host commands (a YAML file, read at each use so
    a mapping can be added while the kubelet runs):

        ghcr.io/brotr-dev/brotr-probe:0.1.0: {archive: /path/brotr-probe-0.1.0.oci.tar}
        docker.io/fphammerle/tor-proxy:latest: {hostCommand: [python3, socks5.py, ...]}
        docker.io/fphammerle/tor-proxy: {hostCommand: [...], shared: true}

    A key without a tag or digest matches every tag of that repository. `shared: true`: one
    process of the host command per node, which every container of that image attaches to
    (SharedHosts).
    """

    def __init__(self, map_file, cache_dir):
        self.map_file = map_file
        self.cache_dir = cache_dir
        self.lock = threading.Lock()

    def lookup(self, ref):
        """The map's entry for a reference (None when absent); nothing is unpacked."""
        with open(self.map_file) as f:
            m = yaml.safe_load(f) or {}
        repo = ref.split("@")[0]
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        return m.get(ref) or m.get(repo)

    def resolve(self, ref):
        entry = self.lookup(ref)
        if not entry:
            raise ImageError(f"image {ref} is not in the image map {self.map_file}")
        if "hostCommand" in entry:
            return {"hostCommand": [str(a) for a in entry["hostCommand"]],
                    "shared": bool(entry.get("shared"))}
        archive = entry["archive"]
        if not os.path.isfile(archive):
            raise ImageError(f"image {ref}: no archive at {archive} (run e2e/images.sh)")
        return self.unpack(archive)

    def unpack(self, archive):
        """{rootfs, config} of an archive, unpacked once per archive content (path + size +
        mtime: a rebuilt image is unpacked again)."""
        st = os.stat(archive)
        key = hashlib.sha256(f"{archive}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        d = os.path.join(self.cache_dir, key)
        with self.lock:
            if not os.path.exists(os.path.join(d, "done")):
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(os.path.join(d, "rootfs"))
                os.chmod(d, 0o755)  # the container user must traverse to its rootfs
                with tarfile.open(archive) as t:
                    blob = lambda digest: t.extractfile("blobs/" + digest.replace(":", "/")).read()
                    index = json.loads(t.extractfile("index.json").read())
                    manifest = json.loads(blob(index["manifests"][0]["digest"]))
                    config = json.loads(blob(manifest["config"]["digest"]))
                    for layer in manifest["layers"]:
                        path = os.path.join(d, "layer.tar.gz")
                        with open(path, "wb") as f:
                            f.write(blob(layer["digest"]))
                        names = subprocess.run(["tar", "-tzf", path], check=True,
                                               capture_output=True, text=True).stdout
                        # Whiteouts need an overlay-aware unpacker; e2e/images.sh makes one
                        # layer without any.
                        if ".wh." in names:
                            raise ImageError(f"{archive}: layer with whiteouts is not supported")
                        subprocess.run(["tar", "-xzf", path, "-C", os.path.join(d, "rootfs"),
                                        "--numeric-owner", "--same-permissions"], check=True)
                        os.unlink(path)
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump(config, f)
                open(os.path.join(d, "done"), "w").close()
                log(f"unpacked {archive} into {d}/rootfs")
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        return {"rootfs": os.path.join(d, "rootfs"), "config": config.get("config", {})}


class Runc:
    def __init__(self, state_dir):
        self.root = os.path.join(state_dir, "runc")
        os.makedirs(self.root, exist_ok=True)
        # The defaults of `runc spec` (mounts of /proc, /dev…, masked paths, rlimits), then
        # changed per container.
        tmp = os.path.join(state_dir, "spec-template")
        os.makedirs(tmp, exist_ok=True)
        if os.path.exists(os.path.join(tmp, "config.json")):
            os.unlink(os.path.join(tmp, "config.json"))
        subprocess.run(["runc", "spec", "--bundle", tmp], check=True)
        with open(os.path.join(tmp, "config.json")) as f:
            self.template = json.load(f)

    def cmd(self, *args):
        return ["runc", "--root", self.root, *args]

    def list(self):
        out = subprocess.run(self.cmd("list", "-q"), capture_output=True, text=True).stdout
        return out.split()

    def delete(self, cid):
        subprocess.run(self.cmd("delete", "-f", cid), capture_output=True)

    def kill(self, cid, sig):
        return subprocess.run(self.cmd("kill", cid, sig), capture_output=True).returncode == 0

    def spec(self, *, rootfs, readonly, args, env, cwd, uid, gid, groups, caps, no_new_privs,
             mounts, hostname):
        s = copy.deepcopy(self.template)
        s["root"] = {"path": rootfs, "readonly": readonly}
        s["hostname"] = hostname
        p = s["process"]
        p["terminal"] = False
        p["user"] = {"uid": uid, "gid": gid, "additionalGids": groups}
        p["args"] = args
        p["env"] = env
        p["cwd"] = cwd
        p["noNewPrivileges"] = no_new_privs
        if caps is not None:
            p["capabilities"] = {k: list(caps) for k in
                                 ("bounding", "effective", "inheritable", "permitted", "ambient")}
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"]
                                    if n["type"] not in ("network", "cgroup")]
        s["mounts"] += mounts
        return s

    def default_caps(self):
        return list(self.template["process"]["capabilities"]["bounding"])


class Process:
    """One run of a container: `runc run` in the foreground (its exit status is the
    container's), or a host command standing in for an image."""

    def __init__(self, popen, runc=None, cid=None):
        self.proc, self.runc, self.cid = popen, runc, cid

    @classmethod
    def container(cls, runc, cid, bundle, spec, stdout, stderr):
        os.makedirs(bundle, exist_ok=True)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f, indent=1)
        runc.delete(cid)  # a leftover of an earlier run of the same container
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            p = subprocess.Popen(runc.cmd("run", "--bundle", bundle, cid), stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, start_new_session=True)
        return cls(p, runc, cid)

    @classmethod
    def host(cls, argv, env, stdout, stderr):
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                 start_new_session=True)
        return cls(p)

    def poll(self):
        """The exit code once it has ended (runc gives 128+N for a signal N), else None."""
        rc = self.proc.poll()
        if rc is not None and rc < 0:  # a host command killed by a signal
            rc = 128 - rc
        if rc is not None and self.runc:
            self.runc.delete(self.cid)
        return rc

    def signal(self, name):
        """Whether the signal was delivered (runc refuses while the container is still being
        created: the caller sends it again)."""
        if self.proc.poll() is not None:
            return True
        if self.runc:
            return self.runc.kill(self.cid, name)
        try:
            os.killpg(self.proc.pid, getattr(signal, "SIG" + name))
        except ProcessLookupError:
            pass
        return True

    def force(self):
        """Last resort when KILL did not end it: remove the container, then its runc."""
        if self.runc:
            self.runc.delete(self.cid)
        if self.proc.poll() is None:
            self.proc.kill()


class SharedHosts:
    """Host commands run once per node (image map `shared: true`), e.g. the Tor sidecar's
    stand-in: every pod's sidecar serves the same fixed port (the probe's config names
    127.0.0.1:9050), which only one process can bind. The first container of such an image
    starts the process; the others attach to it; it is stopped when the last one detaches (or
    at kubelet shutdown), and started again by the next container after it died."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.lock = threading.Lock()
        self.procs = {}  # argv tuple → [Popen, attachments]

    def attach(self, argv, env):
        key = tuple(argv)
        with self.lock:
            entry = self.procs.get(key)
            if entry is None or entry[0].poll() is not None:
                os.makedirs(self.log_dir, exist_ok=True)
                name = hashlib.sha256(" ".join(argv).encode()).hexdigest()[:8]
                path = os.path.join(self.log_dir, f"stand-in-{name}.log")
                with open(path, "ab") as out:
                    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
                entry = self.procs[key] = [p, 0, path]
                log(f"shared stand-in started: pid {p.pid} {argv} (log {path})")
            entry[1] += 1
            return SharedAttachment(self, key, entry[0], entry[2])

    def detach(self, key, popen):
        with self.lock:
            entry = self.procs.get(key)
            if entry is None or entry[0] is not popen:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self.procs[key]
        self._stop(popen, key)

    @staticmethod
    def _stop(popen, key):
        if popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGTERM)
                popen.wait(5)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        log(f"shared stand-in stopped: pid {popen.pid} {list(key)}")

    def stop_all(self):
        with self.lock:
            entries = list(self.procs.items())
            self.procs.clear()
        for key, (popen, _, _) in entries:
            self._stop(popen, key)


class SharedAttachment:
    """A container's hold on a shared host process, with Process's interface: it runs while the
    shared process does; TERM or KILL detaches it (exit code 0); the shared process ending ends
    it with that process's code (the container restarts and starts a new one)."""

    def __init__(self, shared, key, popen, log_path):
        self.shared, self.key, self.popen, self.log_path = shared, key, popen, log_path
        self.runc, self.cid = None, None
        self.code = None

    @property
    def pid(self):
        return self.popen.pid

    def poll(self):
        if self.code is None:
            rc = self.popen.poll()
            if rc is not None:
                self.code = 128 - rc if rc < 0 else rc
                self.shared.detach(self.key, self.popen)
        return self.code

    def signal(self, name):
        if self.code is None:
            self.code = 0
            self.shared.detach(self.key, self.popen)
        return True

    def force(self):
        self.signal("KILL")
