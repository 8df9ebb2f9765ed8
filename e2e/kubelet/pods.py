"""One thread per pod: volumes, init containers, sidecars, containers, probes, restarts, status,
deletion. The loop ticks every 0.25 s and writes the pod status whenever it changed.
"""

import base64
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import traceback
from datetime import datetime, timezone

from api import ApiError
from runtime import DEFAULT_PATH, ImageError, Process, log

TICK = 0.25
MAX_BACKOFF = 300  # the kubelet's cap on the crash-loop back-off (seconds)
# A listen address in an argument or environment value: `HOST:PORT` or `--flag=HOST:PORT`, HOST
# an IP literal, `localhost` or empty. Per-pod ports rewrite its PORT when the pod declares it.
LISTEN_ADDR = re.compile(r"^((?:--?[A-Za-z0-9][\w.-]*=)?"
                         r"(?:\[[0-9A-Fa-f:.]*\]|\d{1,3}(?:\.\d{1,3}){3}|localhost)?:)(\d{1,5})$")
# The pod condition that shows a pod's host ports (per-pod ports): the pod's own port space.
HOST_PORTS_CONDITION = "brotr.dev/HostPorts"


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotYet(Exception):
    """Something the pod needs is missing (a Secret, an image, a port): retried, and shown as
    the containers' waiting reason as the kubelet would."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def expand(s, env):
    """Kubernetes' $(VAR) expansion in command, args and env values: $$ is a literal $, and an
    unknown $(VAR) is left as written."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, s)


class Probe:
    """State of one probe (startup, readiness or liveness) of one container run."""

    def __init__(self, spec, started_at):
        self.spec = spec
        self.next_at = started_at + spec.get("initialDelaySeconds", 0)
        self.ok = 0
        self.failed = 0
        self.result = None  # None until the thresholds decide

    def due(self, t):
        return t >= self.next_at

    def record(self, t, success):
        self.next_at = t + self.spec.get("periodSeconds", 10)
        if success:
            self.ok, self.failed = self.ok + 1, 0
            if self.ok >= self.spec.get("successThreshold", 1):
                self.result = True
        else:
            self.ok, self.failed = 0, self.failed + 1
            if self.failed >= self.spec.get("failureThreshold", 3):
                self.result = False


class Container:
    def __init__(self, spec, kind):
        self.spec = spec
        self.name = spec["name"]
        self.kind = kind  # "init", "sidecar" (init with restartPolicy Always) or "main"
        self.proc = None
        self.cid = None
        self.image_id = ""
        self.restarts = 0
        self.state = {"waiting": {"reason": "PodInitializing" if kind == "main" else
                                  "ContainerCreating"}}
        self.last = {}
        self.started_at = 0.0
        self.not_before = 0.0  # crash-loop back-off: no restart before this time
        self.probes = {}
        self.stopping_at = None  # when TERM was sent (liveness/startup failure or deletion)
        self.killed_at = None
        self.exit_code = None  # of the last run
        self.runs = 0  # runs started (a pod that ran a container is Running, even in back-off)

    @property
    def running(self):
        return self.proc is not None

    @property
    def started(self):
        p = self.probes.get("startup")
        return self.running and (p is None or p.result is True)

    @property
    def ready(self):
        p = self.probes.get("readiness")
        return self.started and (p is None or p.result is True)


class PodWorker(threading.Thread):
    def __init__(self, kubelet, pod):
        super().__init__(daemon=True, name="pod-" + pod["metadata"]["name"])
        self.k = kubelet
        self.pod = pod
        m = pod["metadata"]
        self.uid, self.ns, self.name = m["uid"], m["namespace"], m["name"]
        self.key = f"{self.ns}/{self.name}"
        self.path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
        self.dir = os.path.join(kubelet.state_dir, "pods", f"{self.ns}_{self.name}_{self.uid[:8]}")
        self.logs = os.path.join(self.dir, "logs")
        spec = pod["spec"]
        self.policy = spec.get("restartPolicy", "Always")
        self.inits = [Container(c, "sidecar" if c.get("restartPolicy") == "Always" else "init")
                      for c in spec.get("initContainers", [])]
        self.mains = [Container(c, "main") for c in spec["containers"]]
        self.stage = "prepare"  # prepare → init → main → done
        self.init_index = 0
        self.phase = pod.get("status", {}).get("phase", "Pending")
        self.ports = []
        self.port_map = {}  # per-pod ports: declared port → host port
        self.transitions = {}
        self.written = None
        self.lock = threading.Lock()
        self.gone = False  # the object is no longer in the API
        self.stop_now = False  # the kubelet is shutting down
        self.said = None  # the last waiting message logged (each is logged once)
        # A pod that finished before this kubelet saw it: nothing to run, its status stays.
        self.adopted = self.phase in ("Succeeded", "Failed")
        if self.adopted:
            self.stage = "done"
        self.start_time = pod.get("status", {}).get("startTime") or now_iso()

    # --- input from the watch -------------------------------------------------------------

    def update(self, pod):
        with self.lock:
            self.pod = pod

    def deleted_timestamp(self):
        with self.lock:
            return self.pod["metadata"].get("deletionTimestamp")

    # --- the loop --------------------------------------------------------------------------

    def run(self):
        try:
            self.loop()
        except Exception:
            log(f"{self.key}: worker crashed:\n{traceback.format_exc()}")
            self.kill_all(0)

    def loop(self):
        if not self.adopted:
            os.makedirs(self.logs, exist_ok=True)
            log(f"{self.key}: new pod (restartPolicy {self.policy}); logs in {self.logs}/")
        while True:
            if self.stop_now:
                return self.kill_all(self.k.shutdown_grace)
            if self.deleted_timestamp() or self.gone:
                return self.terminate()
            try:
                self.tick()
            except Exception as e:  # the API server unreachable for a moment: next tick
                log(f"{self.key}: {type(e).__name__}: {e}; retrying")
                time.sleep(1)
            time.sleep(TICK)

    def tick(self):
        if self.stage == "prepare":
            self.prepare()
        if self.stage in ("init", "main"):
            self.reap()
            self.run_probes()
        if self.stage == "init":
            self.step_init()
        if self.stage == "main":
            self.step_main()
        if not self.adopted:
            self.write_status()

    # --- preparation: ports, volumes -------------------------------------------------------

    def prepare(self):
        try:
            self.claim_ports()
            self.make_volumes()
        except NotYet as e:
            for c in self.inits + self.mains:
                c.state = {"waiting": {"reason": e.reason, "message": str(e)}}
            if self.said != str(e):
                log(f"{self.key}: waiting: {e.reason}: {e}")
                self.said = str(e)
            self.k.release_ports(self)
            self.ports = []
            self.port_map = {}
            time.sleep(1)
            return
        self.stage = "init"

    def declared_ports(self):
        """The pod's declared TCP ports, less those of shared host-command images (the node's
        one process of that image serves them)."""
        want = set()
        for c in self.inits + self.mains:
            if (self.k.images.lookup(c.spec.get("image", "")) or {}).get("shared"):
                continue
            want |= {p["containerPort"] for p in c.spec.get("ports", [])
                     if p.get("protocol", "TCP") == "TCP"}
        return sorted(want)

    def claim_ports(self):
        """Pods share the host's network. Host mode: two pods serving the same port cannot both
        run; a pod whose declared port is taken (by a pod here or any process) waits, Pending.
        Per-pod mode: each declared port gets a free host port of this pod's own (the
        listen addresses and probes are rewritten to it, see remap)."""
        want = self.declared_ports()
        if self.k.per_pod_ports:
            if not self.port_map and want:
                self.port_map = self.k.allocate_ports(self, want)
                log(f"{self.key}: per-pod ports: " + ", ".join(
                    f"{p}→{h}" for p, h in sorted(self.port_map.items())))
            self.ports = want
            return
        owner = self.k.claim_ports(self, want)
        if owner:
            raise NotYet("PortInUse", f"port {owner[0]} is used by pod {owner[1]} on this node "
                         "(pods share the host network)")
        self.ports = want
        for port in want:
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
            except OSError:
                raise NotYet("PortInUse", f"port {port} is in use on the host by another "
                             "process (pods share the host network)") from None
            finally:
                s.close()

    def volume_dir(self, name):
        return os.path.join(self.dir, "volumes", name)

    def make_volumes(self):
        spec = self.pod["spec"]
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        for v in spec.get("volumes", []):
            d = self.volume_dir(v["name"])
            if "emptyDir" in v:
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o777)  # as the kubelet makes them: writable by any user
                continue
            files = None
            if "configMap" in v or "secret" in v:
                files = self.source_files(v)
            elif "projected" in v:
                files = {}
                for src in v["projected"].get("sources", []):
                    if "configMap" in src or "secret" in src:
                        files.update(self.source_files(src, v["projected"].get("defaultMode")))
                    elif "downwardAPI" in src:
                        files.update(self.downward_files(src["downwardAPI"]))
                    elif "serviceAccountToken" in src:
                        files.update(self.token_file(src["serviceAccountToken"],
                                                     v["projected"].get("defaultMode", 0o644)))
                    else:
                        raise NotYet("CreateContainerConfigError", f"volume {v['name']}: "
                                     f"projected source {list(src)} is not supported here")
            elif "downwardAPI" in v:
                files = self.downward_files(v["downwardAPI"])
            else:
                kind = next((k for k in v if k != "name"), "?")
                raise NotYet("CreateContainerConfigError",
                             f"volume {v['name']}: {kind} volumes are not supported by this kubelet")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            os.chmod(d, 0o755)
            for rel, (data, mode) in files.items():
                p = os.path.join(d, rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data)
                os.chmod(p, mode)
                if fs_group is not None:
                    # As the kubelet does for fsGroup: the pod's group owns the files, so a
                    # 0440 Secret is readable by the containers' user through that group.
                    os.chown(p, 0, fs_group)
            if fs_group is not None:
                os.chown(d, 0, fs_group)

    def source_files(self, v, default_mode=None):
        """{path: (bytes, mode)} of a configMap or secret volume (or projected source)."""
        is_cm = "configMap" in v
        src = v["configMap"] if is_cm else v["secret"]
        name = src.get("name") if is_cm else src.get("secretName", src.get("name"))
        kind = "configmaps" if is_cm else "secrets"
        obj = self.k.api.get_or_none(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        if obj is None:
            if src.get("optional"):
                return {}
            raise NotYet("CreateContainerConfigError", f'{kind[:-1]} "{name}" not found')
        data = {k: b.encode() for k, b in obj.get("data", {}).items()} if is_cm else {
            k: base64.b64decode(b) for k, b in obj.get("data", {}).items()}
        data.update({k: base64.b64decode(b) for k, b in obj.get("binaryData", {}).items()})
        mode = src.get("defaultMode", default_mode if default_mode is not None else 0o644)
        if "items" not in src:
            return {k: (b, mode) for k, b in data.items()}
        out = {}
        for it in src["items"]:
            if it["key"] not in data:
                if src.get("optional"):
                    continue
                raise NotYet("CreateContainerConfigError",
                             f'key "{it["key"]}" not found in {kind[:-1]} "{name}"')
            out[it["path"]] = (data[it["key"]], it.get("mode", mode))
        return out

    def token_file(self, src, mode):
        """A bound service-account token (TokenRequest), as the kubelet projects it."""
        sa = self.pod["spec"].get("serviceAccountName", "default")
        spec = {"expirationSeconds": src.get("expirationSeconds", 3600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                                   "uid": self.uid}}
        if src.get("audience"):
            spec["audiences"] = [src["audience"]]
        try:
            tr = self.k.api.create(f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
                                   {"apiVersion": "authentication.k8s.io/v1",
                                    "kind": "TokenRequest", "spec": spec})
        except ApiError as e:
            raise NotYet("CreateContainerConfigError", f"token for {sa}: {e}") from None
        return {src["path"]: (tr["status"]["token"].encode(), mode)}

    def downward_files(self, src):
        mode = src.get("defaultMode", 0o644)
        return {it["path"]: (self.field(it["fieldRef"]["fieldPath"]).encode(), it.get("mode", mode))
                for it in src.get("items", []) if "fieldRef" in it}

    def field(self, path):
        """A fieldRef value (the downward API)."""
        m = self.pod["metadata"]
        simple = {"metadata.name": m["name"], "metadata.namespace": m["namespace"],
                  "metadata.uid": m["uid"], "spec.nodeName": self.k.node,
                  "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
                  "status.podIP": "127.0.0.1", "status.podIPs": "127.0.0.1",
                  "status.hostIP": "127.0.0.1", "status.hostIPs": "127.0.0.1"}
        if path in simple:
            return simple[path]
        g = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if g:
            return m.get(g.group(1), {}).get(g.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            return "\n".join(f'{k}="{v}"' for k, v in sorted(m.get(path[9:], {}).items()))
        raise NotYet("CreateContainerConfigError", f"fieldRef {path} is not supported here")

    # --- one container run -----------------------------------------------------------------

    def key_ref(self, kind, ref):
        obj = self.k.api.get_or_none(f"/api/v1/namespaces/{self.ns}/{kind}/{ref['name']}")
        data = (obj or {}).get("data", {})
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            what = f'{kind[:-1]} "{ref["name"]}"'
            raise NotYet("CreateContainerConfigError",
                         f'{what} not found' if obj is None else f'key "{ref["key"]}" not in {what}')
        v = data[ref["key"]]
        return base64.b64decode(v).decode() if kind == "secrets" else v

    def environment(self, c, image_env):
        env = dict(e.split("=", 1) for e in image_env)
        # What the kubelet gives every container for in-cluster clients. With no kube-proxy and
        # the host's network, the API server's own address stands in for the Service IP.
        env.update(self.k.service_env)
        for ef in c.spec.get("envFrom", []):
            kind, ref = (("configmaps", ef["configMapRef"]) if "configMapRef" in ef
                         else ("secrets", ef["secretRef"]))
            obj = self.k.api.get_or_none(f"/api/v1/namespaces/{self.ns}/{kind}/{ref['name']}")
            if obj is None and not ref.get("optional"):
                raise NotYet("CreateContainerConfigError", f'{kind[:-1]} "{ref["name"]}" not found')
            for k, v in (obj or {}).get("data", {}).items():
                env[ef.get("prefix", "") + k] = (base64.b64decode(v).decode()
                                                 if kind == "secrets" else v)
        for e in c.spec.get("env", []):
            if "valueFrom" not in e:
                env[e["name"]] = expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            if "secretKeyRef" in vf:
                v = self.key_ref("secrets", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                v = self.key_ref("configmaps", vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                v = self.field(vf["fieldRef"]["fieldPath"])
            else:
                raise NotYet("CreateContainerConfigError",
                             f"env {e['name']}: {list(vf)} is not supported here")
            if v is not None:
                env[e["name"]] = v
        return env

    def identity(self, c, image, rootfs):
        """uid, gid, extra groups: the container's securityContext, then the pod's, then the
        image's User."""
        psc = self.pod["spec"].get("securityContext", {})
        sc = c.spec.get("securityContext", {})
        user = image.get("User", "") or "0"
        u, _, g = user.partition(":")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        gid = sc.get("runAsGroup", psc.get("runAsGroup"))
        if uid is None:
            if u.isdigit():
                uid = int(u)
            else:  # a user name: the image's /etc/passwd
                with open(os.path.join(rootfs, "etc/passwd")) as passwd:
                    for f in (line.split(":") for line in passwd):
                        if f[0] == u:
                            uid, gid = int(f[2]), gid if gid is not None else int(f[3])
                if uid is None:
                    raise NotYet("CreateContainerConfigError", f"image user {u} not in /etc/passwd")
        if gid is None:
            gid = int(g) if g.isdigit() else 0
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
            raise NotYet("CreateContainerConfigError",
                         "container has runAsNonRoot and image will run as root")
        groups = list(psc.get("supplementalGroups", []))
        if "fsGroup" in psc:
            groups.append(psc["fsGroup"])
        return uid, gid, sorted(set(groups))

    def capabilities(self, c):
        caps = c.spec.get("securityContext", {}).get("capabilities", {})
        drop = {("CAP_" + x).upper() for x in caps.get("drop", [])}
        # drop ALL gives empty sets: no capability at all, even for uid 0.
        base = [] if "CAP_ALL" in drop else [x for x in self.k.runc.default_caps() if x not in drop]
        add = [("CAP_" + x).upper() for x in caps.get("add", [])]
        return base + [x for x in add if x not in base]

    def mounts(self, c):
        # Every runtime gives containers the node's resolver config and a hosts file.
        ms = [{"destination": p, "type": "bind", "source": p,
               "options": ["rbind", "ro", "nosuid", "nodev"]}
              for p in ("/etc/resolv.conf", "/etc/hosts")]
        vols = {v["name"] for v in self.pod["spec"].get("volumes", [])}
        for vm in c.spec.get("volumeMounts", []):
            if vm["name"] not in vols:
                raise NotYet("CreateContainerConfigError", f"volume {vm['name']} not in the pod")
            src = self.volume_dir(vm["name"])
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, mode=0o777)
            ms.append({"destination": vm["mountPath"], "type": "bind", "source": src,
                       "options": ["rbind", "ro" if vm.get("readOnly") else "rw",
                                   "nosuid", "nodev"]})
        return ms

    def remap(self, s):
        """Per-pod ports: a listen address on a declared port, moved to the pod's host port."""
        m = LISTEN_ADDR.match(s) if self.port_map else None
        if m and int(m.group(2)) in self.port_map:
            return f"{m.group(1)}{self.port_map[int(m.group(2))]}"
        return s

    def start_container(self, c):
        """Starts one run of a container; on a missing input the container waits instead."""
        ref = c.spec.get("image", "")
        try:
            img = self.k.images.resolve(ref)
            host_cmd = img.get("hostCommand")
            image = img.get("config", {})
            env = self.environment(c, image.get("Env") or [f"PATH={DEFAULT_PATH}"])
            cmd = [expand(a, env) for a in c.spec.get("command", image.get("Entrypoint") or [])]
            args = c.spec.get("args")
            if args is None:
                args = [] if "command" in c.spec else (image.get("Cmd") or [])
            argv = cmd + [expand(a, env) for a in args]
            if self.port_map:
                moved = [f"{a} → {self.remap(a)}" for a in argv if self.remap(a) != a]
                moved += [f"{k}={v} → {self.remap(v)}" for k, v in env.items()
                          if self.remap(v) != v]
                argv = [self.remap(a) for a in argv]
                env = {k: self.remap(v) for k, v in env.items()}
                if moved and c.runs == 0:
                    log(f"{self.key}/{c.name}: per-pod ports: rewrote {'; '.join(moved)}")
            run_no = c.restarts
            out = os.path.join(self.logs, f"{c.name}.{run_no}.stdout")
            err = os.path.join(self.logs, f"{c.name}.{run_no}.stderr")
            if host_cmd:
                # No image archive: a host command stands in for this image (e.g. a SOCKS5
                # proxy for the Tor sidecar). It is not the image, and runs unconfined.
                if img.get("shared"):
                    # One process per node for this image (its port is fixed by what uses it):
                    # this container attaches to it, starting it if it is not running.
                    c.proc = self.k.shared.attach(host_cmd, {**os.environ, **env})
                    log(f"{self.key}/{c.name}: STAND-IN: image {ref} has no archive; attached "
                        f"to the node's shared host command {host_cmd} (pid {c.proc.pid}, log "
                        f"{c.proc.log_path}; not in a container)")
                    with open(out, "a") as f:
                        f.write(f"attached to the shared stand-in pid {c.proc.pid}; its output: "
                                f"{c.proc.log_path}\n")
                else:
                    host_cmd = [self.remap(a) for a in host_cmd]
                    log(f"{self.key}/{c.name}: STAND-IN: image {ref} has no archive; running the "
                        f"host command {host_cmd} instead (not in a container)")
                    c.proc = Process.host(host_cmd, {**os.environ, **env}, out, err)
                c.cid, c.image_id = None, "host-command://" + " ".join(host_cmd)
            else:
                if not argv:
                    raise NotYet("CreateContainerConfigError", "no command: the image has no "
                                 "Entrypoint/Cmd and the container none")
                sc = c.spec.get("securityContext", {})
                uid, gid, groups = self.identity(c, image, img["rootfs"])
                rootfs = img["rootfs"]
                readonly = bool(sc.get("readOnlyRootFilesystem"))
                if not readonly:
                    # A writable root must not change the shared unpacked image: own copy.
                    rootfs = os.path.join(self.dir, "rootfs", c.name)
                    if not os.path.exists(rootfs):
                        os.makedirs(os.path.dirname(rootfs), exist_ok=True)
                        shutil.copytree(img["rootfs"], rootfs, symlinks=True)
                cid = f"{self.name[:40]}-{self.uid[:8]}-{c.name}"
                spec = self.k.runc.spec(
                    rootfs=rootfs, readonly=readonly, args=argv,
                    env=[f"{k}={v}" for k, v in env.items()],
                    cwd=c.spec.get("workingDir") or image.get("WorkingDir") or "/",
                    uid=uid, gid=gid, groups=groups, caps=self.capabilities(c),
                    no_new_privs=not sc.get("allowPrivilegeEscalation", False),
                    mounts=self.mounts(c), hostname=self.pod["spec"].get("hostname", self.name)[:63])
                c.proc = Process.container(self.k.runc, cid,
                                           os.path.join(self.dir, "bundles", c.name), spec, out, err)
                c.cid, c.image_id = cid, "oci-archive://" + os.path.basename(
                    os.path.dirname(img["rootfs"]))
                log(f"{self.key}/{c.name}: started {argv} as {uid}:{gid} "
                    f"(readonly root {readonly}, caps {self.capabilities(c) or 'none'}) "
                    f"run {run_no}; output {out} / .stderr")
        except (NotYet, ImageError) as e:
            reason = "ErrImagePull" if isinstance(e, ImageError) else e.reason
            c.state = {"waiting": {"reason": reason, "message": str(e)}}
            c.not_before = time.time() + 2
            return False
        c.started_at = time.time()
        c.runs += 1
        c.state = {"running": {"startedAt": now_iso()}}
        c.stopping_at = c.killed_at = None
        c.probes = {k: Probe(c.spec[k + "Probe"], c.started_at)
                    for k in ("startup", "readiness", "liveness") if c.spec.get(k + "Probe")}
        return True

    def reap(self):
        """Records the exit of every container whose process ended."""
        for c in self.inits + self.mains:
            if not c.running:
                continue
            if c.stopping_at and not c.killed_at and time.time() > c.stopping_at + self.grace():
                c.proc.signal("KILL")
                c.killed_at = time.time()
            elif c.killed_at and time.time() > c.killed_at + 5:
                c.proc.force()
            rc = c.proc.poll()
            if rc is None:
                continue
            c.proc, c.exit_code = None, rc
            c.state = {"terminated": {
                "exitCode": rc, "reason": "Completed" if rc == 0 else "Error",
                "startedAt": c.state.get("running", {}).get("startedAt", now_iso()),
                "finishedAt": now_iso(), **({"containerID": "runc://" + c.cid} if c.cid else {}),
                **({"signal": rc - 128} if rc > 128 else {})}}
            log(f"{self.key}/{c.name}: exited with code {rc}")
            if time.time() - c.started_at > 2 * MAX_BACKOFF:
                c.backoff_runs = 0  # ran long enough: the back-off starts over
            c.probes = {}

    def schedule_restart(self, c):
        """The crash-loop back-off: base, 2×base, 4×base… capped at 300 s."""
        n = getattr(c, "backoff_runs", 0)
        delay = min(self.k.backoff * (2 ** n), MAX_BACKOFF)
        c.backoff_runs = n + 1
        c.not_before = time.time() + delay
        c.last = c.state
        c.restarts += 1
        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message":
                               f"back-off {delay:g}s restarting failed container={c.name} "
                               f"pod={self.name}_{self.ns}({self.uid})"}}

    def restart_if_due(self, c):
        if not c.running and time.time() >= c.not_before:
            self.start_container(c)

    def grace(self):
        with self.lock:
            g = self.pod["metadata"].get("deletionGracePeriodSeconds")
        return g if g is not None else self.pod["spec"].get("terminationGracePeriodSeconds", 30)

    # --- probes ----------------------------------------------------------------------------

    def port_of(self, c, port):
        """The host port a probe connects to (per-pod ports: the pod's host port)."""
        if isinstance(port, int) or str(port).isdigit():
            return self.port_map.get(int(port), int(port))
        for p in c.spec.get("ports", []):
            if p.get("name") == port:
                return self.port_map.get(p["containerPort"], p["containerPort"])
        raise ValueError(f"no port named {port}")

    def check(self, c, spec):
        timeout = spec.get("timeoutSeconds", 1)
        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                cls = (http.client.HTTPSConnection if h.get("scheme") == "HTTPS"
                       else http.client.HTTPConnection)
                kw = {"context": ssl._create_unverified_context()} if h.get("scheme") == "HTTPS" else {}
                conn = cls(h.get("host", "127.0.0.1"), self.port_of(c, h["port"]), timeout=timeout, **kw)
                conn.request("GET", h.get("path", "/"),
                             headers={x["name"]: x["value"] for x in h.get("httpHeaders", [])})
                status = conn.getresponse().status
                conn.close()
                return 200 <= status < 400
            if "tcpSocket" in spec:
                t = spec["tcpSocket"]
                socket.create_connection((t.get("host", "127.0.0.1"), self.port_of(c, t["port"])),
                                         timeout=timeout).close()
                return True
            if "exec" in spec and c.cid:
                r = subprocess.run(self.k.runc.cmd("exec", c.cid, *spec["exec"]["command"]),
                                   capture_output=True, timeout=timeout + 5)
                return r.returncode == 0
        except Exception:  # refused, timed out, bad response: a failed probe
            return False
        return False  # grpc probes and exec probes on host commands are not supported

    def run_probes(self):
        t = time.time()
        for c in self.inits + self.mains:
            if not c.running or c.stopping_at:
                continue
            for kind in ("startup", "readiness", "liveness"):
                p = c.probes.get(kind)
                if p is None or not p.due(t):
                    continue
                if kind != "startup" and not c.started:
                    continue  # readiness and liveness wait for the startup probe
                if kind == "startup" and p.result is True:
                    continue
                before = p.result
                p.record(t, self.check(c, p.spec))
                if p.result != before:
                    log(f"{self.key}/{c.name}: {kind} probe {'passed' if p.result else 'failed'}")
                if p.result is False and kind in ("startup", "liveness"):
                    log(f"{self.key}/{c.name}: {kind} probe failed {p.failed} times: restarting it")
                    c.proc.signal("TERM")
                    c.stopping_at = t

    # --- init containers, then the containers ----------------------------------------------

    def step_init(self):
        for s in self.inits[: self.init_index]:
            if s.kind == "sidecar":
                self.keep_sidecar(s)
        if self.init_index >= len(self.inits):
            self.stage = "main"
            return
        c = self.inits[self.init_index]
        if c.kind == "sidecar":
            self.keep_sidecar(c)
            if c.started:
                log(f"{self.key}/{c.name}: sidecar started; next init step")
                self.init_index += 1
            return
        if c.running:
            return
        if "terminated" in c.state:
            if c.exit_code == 0:
                self.init_index += 1
                return
            if self.policy == "Never":
                self.finish("Failed")
                return
            self.schedule_restart(c)
            return
        self.restart_if_due(c)

    def keep_sidecar(self, s):
        """Sidecars are restarted whatever the pod's policy, until the containers are done."""
        if not s.running and "terminated" in s.state:
            self.schedule_restart(s)
        if not s.running and "waiting" in s.state:
            self.restart_if_due(s)

    def step_main(self):
        for s in self.inits:
            if s.kind == "sidecar":
                self.keep_sidecar(s)
        for c in self.mains:
            if c.running:
                continue
            if "terminated" in c.state:
                rc = c.exit_code
                if self.policy == "Always" or (self.policy == "OnFailure" and rc != 0):
                    self.schedule_restart(c)
                continue
            if "running" not in c.state:
                self.restart_if_due(c)
        done = all("terminated" in c.state for c in self.mains)
        if done:
            ok = all(c.exit_code == 0 for c in self.mains)
            if self.policy == "Never" or ok:
                self.finish("Succeeded" if ok else "Failed")

    def finish(self, phase):
        """The pod's containers are done: stop the sidecars, then the phase is final."""
        self.stop_containers([c for c in self.inits if c.kind == "sidecar"],
                             self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.phase = phase
        self.stage = "done"
        self.k.release_ports(self)
        log(f"{self.key}: {phase} (exit codes "
            f"{', '.join(f'{c.name}={c.exit_code}' for c in self.inits + self.mains if c.exit_code is not None)})")

    # --- stopping ----------------------------------------------------------------------------

    def stop_containers(self, cs, grace):
        """TERM, up to `grace` seconds, KILL: what the kubelet does on deletion."""
        cs = [c for c in cs if c.running]
        pending = set()
        for c in cs:
            if not c.proc.signal("TERM"):
                pending.add(c.name)
            c.stopping_at = time.time()
        deadline = time.time() + grace
        while any(c.running for c in cs) and time.time() < deadline:
            time.sleep(0.1)
            for c in cs:
                if c.running and c.proc.poll() is not None:
                    self.record_stop(c)
                elif c.running and c.name in pending and c.proc.signal("TERM"):
                    pending.discard(c.name)  # delivered now that the container exists
        for c in cs:
            if c.running:
                log(f"{self.key}/{c.name}: still running after {grace}s: KILL")
                c.proc.signal("KILL")
                for _ in range(50):
                    if c.proc.poll() is not None:
                        break
                    time.sleep(0.1)
                else:
                    c.proc.force()
                c.proc.poll()
                self.record_stop(c)

    def record_stop(self, c):
        rc = c.proc.poll()
        c.proc, c.exit_code = None, rc
        c.state = {"terminated": {"exitCode": rc if rc is not None else 137,
                                  "reason": "Completed" if rc == 0 else "Error",
                                  "startedAt": c.state.get("running", {}).get("startedAt", now_iso()),
                                  "finishedAt": now_iso()}}
        log(f"{self.key}/{c.name}: stopped (exit code {rc})")

    def kill_all(self, grace):
        """Containers first, then sidecars in reverse order, as the kubelet stops a pod."""
        g = min(grace, self.grace())
        self.stop_containers(self.mains + [c for c in self.inits if c.kind == "init"], g)
        self.stop_containers([c for c in reversed(self.inits) if c.kind == "sidecar"], g)

    def terminate(self):
        """The pod is being deleted: stop it within its grace period, delete the object with
        grace 0 (the kubelet's confirmation), drop its bundles and volumes, keep its logs."""
        if self.stage != "done" or any(c.running for c in self.inits + self.mains):
            log(f"{self.key}: deleted: stopping containers (grace {self.grace()}s)")
            self.kill_all(self.grace())
        self.k.release_ports(self)
        if not self.gone:
            try:
                self.k.api.delete(self.path, {"gracePeriodSeconds": 0,
                                              "preconditions": {"uid": self.uid}})
            except ApiError as e:
                if e.code != 409:  # 409: another pod of that name now (our one is gone)
                    log(f"{self.key}: delete failed: {e}")
        for sub in ("bundles", "volumes", "rootfs"):
            shutil.rmtree(os.path.join(self.dir, sub), ignore_errors=True)
        log(f"{self.key}: gone (logs kept in {self.logs}/)")
        self.k.forget(self)

    # --- status ------------------------------------------------------------------------------

    def condition(self, type_, ok, reason=None):
        status = "True" if ok else "False"
        prev = self.transitions.get(type_)
        if prev is None or prev[0] != status:
            self.transitions[type_] = (status, now_iso())
        c = {"type": type_, "status": status, "lastProbeTime": None,
             "lastTransitionTime": self.transitions[type_][1]}
        if reason and not ok:
            c["reason"] = reason
        return c

    def cstatus(self, c):
        s = {"name": c.name, "image": c.spec.get("image", ""), "imageID": c.image_id,
             "ready": c.ready, "restartCount": c.restarts, "started": c.started,
             "state": c.state, "lastState": c.last}
        if c.cid:
            s["containerID"] = "runc://" + c.cid
        return s

    def write_status(self):
        if self.stage == "done" and self.phase in ("Succeeded", "Failed"):
            phase = self.phase
        elif self.stage == "main" and any(c.running or c.runs for c in self.mains):
            phase = "Running"
        else:
            phase = "Pending"
        initialized = self.stage in ("main", "done") or self.init_index >= len(self.inits)
        sidecars = [c for c in self.inits if c.kind == "sidecar"]
        ready = phase == "Running" and all(c.ready for c in self.mains + sidecars)
        with self.lock:
            kept = [c for c in self.pod.get("status", {}).get("conditions", [])
                    if c["type"] not in ("PodReadyToStartContainers", "Initialized",
                                         "ContainersReady", "Ready", HOST_PORTS_CONDITION)]
        if self.port_map:
            # Where the pod's ports are on the host: what a pod IP of its own would give.
            kept.append({"type": HOST_PORTS_CONDITION, "status": "True", "reason": "PerPodPorts",
                         "message": " ".join(f"{p}={h}" for p, h in sorted(self.port_map.items())),
                         "lastProbeTime": None,
                         "lastTransitionTime": self.transitions.setdefault(
                             HOST_PORTS_CONDITION, ("True", now_iso()))[1]})
        not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": kept + [
                self.condition("PodReadyToStartContainers", self.stage != "prepare"),
                self.condition("Initialized", initialized, "ContainersNotInitialized"),
                self.condition("ContainersReady", ready, not_ready),
                self.condition("Ready", ready, not_ready),
            ],
            "containerStatuses": [self.cstatus(c) for c in self.mains],
        }
        if self.inits:
            status["initContainerStatuses"] = [self.cstatus(c) for c in self.inits]
        if status == self.written:
            return
        try:
            self.k.api.merge_patch(self.path + "/status", {"status": status})
            self.written = status
        except ApiError as e:
            if e.code == 404:
                self.gone = True
            else:
                log(f"{self.key}: status update failed: {e}")
