#!/usr/bin/env python3
"""A kubelet for the test control plane that really runs pods: the real images under runc.

    python3 e2e/kubelet/kubelet.py --kubeconfig KC --node-name runc-node \\
        --state-dir DIR --images images.yaml [--restart-backoff 10]

Registers the Node (not kwok's: no kwok annotation), keeps it Ready (status and Lease every
10 s), and runs every pod bound to it: see README.md beside this file. Stops every container
on SIGTERM/SIGINT.
"""

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from datetime import datetime, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the repository's e2e/kubelet/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api import Api, ApiError  # noqa: E402
from pods import PodWorker, now_iso  # noqa: E402
from runtime import Images, Runc, SharedHosts, log  # noqa: E402

HEARTBEAT = 10  # seconds between Lease renewals and node status updates
LEASE_SECONDS = 40


class Kubelet:
    def __init__(self, args):
        self.api = Api(args.kubeconfig)
        self.node = args.node_name
        u = urllib.parse.urlsplit(self.api.server)
        self.service_env = {"KUBERNETES_SERVICE_HOST": u.hostname,
                            "KUBERNETES_SERVICE_PORT": str(u.port or 443),
                            "KUBERNETES_SERVICE_PORT_HTTPS": str(u.port or 443),
                            "KUBERNETES_PORT": f"tcp://{u.hostname}:{u.port or 443}"}
        self.state_dir = os.path.abspath(args.state_dir)
        os.makedirs(os.path.join(self.state_dir, "pods"), exist_ok=True)
        os.chmod(self.state_dir, 0o755)
        self.runc = Runc(self.state_dir)
        self.images = Images(os.path.abspath(args.images), os.path.join(self.state_dir, "images"))
        self.backoff = args.restart_backoff
        self.shutdown_grace = args.shutdown_grace
        self.workers = {}  # uid → PodWorker
        self.finished = set()  # uids whose pod this kubelet has deleted (late events ignored)
        self.ports = {}  # port → PodWorker holding it (host mode: declared; per-pod: host ports)
        self.per_pod_ports = args.pod_ports == "per-pod"
        self.shared = SharedHosts(os.path.join(self.state_dir, "shared"))
        self.lock = threading.Lock()
        self.stop = threading.Event()

    # --- ports: pods share the host network ---------------------------------------------------

    def claim_ports(self, worker, ports):
        """Claims every port for `worker`, or returns (port, other pod) of the first clash."""
        with self.lock:
            for p in ports:
                other = self.ports.get(p)
                if other is not None and other is not worker:
                    return p, other.key
            for p in ports:
                self.ports[p] = worker
        return None

    def allocate_ports(self, worker, ports):
        """Per-pod port spaces: a free host port for each of the pod's declared ports, never one
        another pod of this node holds (the kernel picks it; nothing binds it until the
        container does)."""
        out = {}
        with self.lock:
            for p in ports:
                while True:
                    s = socket.socket()
                    s.bind(("0.0.0.0", 0))
                    host = s.getsockname()[1]
                    s.close()
                    if host not in self.ports:
                        break
                self.ports[host] = worker
                out[p] = host
        return out

    def release_ports(self, worker):
        with self.lock:
            for p in [p for p, w in self.ports.items() if w is worker]:
                del self.ports[p]

    def forget(self, worker):
        with self.lock:
            self.workers.pop(worker.uid, None)
            self.finished.add(worker.uid)

    # --- the Node and its Lease --------------------------------------------------------------

    def register(self, labels):
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {
                    "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "brotr.dev/runc": "true", **labels}}}
        try:
            node = self.api.create("/api/v1/nodes", body)
            log(f"registered Node {self.node}")
        except ApiError as e:
            if e.code != 409:
                raise
            node = self.api.merge_patch(f"/api/v1/nodes/{self.node}",
                                        {"metadata": {"labels": body["metadata"]["labels"]}})
            log(f"Node {self.node} exists: labels updated, reused")
        self.node_uid = node["metadata"]["uid"]
        self.node_status(first=True)

    def node_status(self, first=False):
        t = now_iso()
        cond = lambda type_, status, reason, msg: {  # noqa: E731
            "type": type_, "status": status, "reason": reason, "message": msg,
            "lastHeartbeatTime": t, **({"lastTransitionTime": t} if first else {})}
        status = {"conditions": [
            cond("Ready", "True", "KubeletReady", "brotr runc kubelet is posting ready status"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no pressure checks"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no pressure checks"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "no pressure checks"),
        ]}
        if first:
            cap = {"cpu": str(os.cpu_count()), "memory": "8Gi", "pods": "110",
                   "ephemeral-storage": "20Gi"}
            runc_version = subprocess.run(["runc", "--version"], capture_output=True,
                                          text=True).stdout.split()[2]
            status.update({
                "capacity": cap, "allocatable": cap,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.node}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {"kubeletVersion": "v0.0.0-brotr-runc-kubelet",
                             "containerRuntimeVersion": f"runc://{runc_version}",
                             "operatingSystem": "linux", "architecture": "amd64",
                             "kernelVersion": platform.release(), "osImage": "brotr runc kubelet",
                             "machineID": "", "systemUUID": "", "bootID": "",
                             "kubeProxyVersion": ""}})
        self.api.merge_patch(f"/api/v1/nodes/{self.node}/status", {"status": status})

    def renew_lease(self):
        # The node-lifecycle controller reads this Lease: not renewed for 40 s, the node goes
        # NotReady and is tainted.
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": t}
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.code != 404:
                raise
            self.api.create(path.rsplit("/", 1)[0], {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node, "namespace": "kube-node-lease", "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.node_uid}]},
                "spec": spec})

    def heartbeat(self):
        while not self.stop.is_set():
            try:
                self.renew_lease()
                self.node_status()
            except Exception as e:  # the API server restarting: try again next beat
                log(f"heartbeat failed: {e}")
            self.stop.wait(HEARTBEAT)

    # --- pods --------------------------------------------------------------------------------

    def seen(self, type_, pod):
        uid = pod["metadata"]["uid"]
        with self.lock:
            w = self.workers.get(uid)
            if w is None:
                if type_ == "DELETED" or uid in self.finished or self.stop.is_set():
                    return
                w = self.workers[uid] = PodWorker(self, pod)
                w.start()
                return
        if type_ == "DELETED":
            w.gone = True  # removed without us (force delete): stop and clean up all the same
        else:
            w.update(pod)

    def watch_pods(self):
        path = "/api/v1/pods?" + urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={self.node}"})
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    pods = self.api.get(path)
                    rv = pods["metadata"]["resourceVersion"]
                    for p in pods["items"]:
                        self.seen("ADDED", p)
                for type_, obj in self.api.watch(path, rv):
                    if type_ == "ERROR":
                        rv = None  # 410 Gone: the resourceVersion is too old, list again
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if type_ != "BOOKMARK":
                        self.seen(type_, obj)
            except Exception as e:
                if not self.stop.is_set():
                    log(f"pod watch: {e}; again in 1 s")
                    time.sleep(1)

    # --- run and stop ------------------------------------------------------------------------

    def cleanup_leftovers(self):
        """Containers of an earlier run of this kubelet (same state dir) that was killed."""
        for cid in self.runc.list():
            log(f"removing leftover container {cid}")
            self.runc.delete(cid)

    def run(self, labels):
        self.cleanup_leftovers()
        self.register(labels)
        threading.Thread(target=self.heartbeat, daemon=True, name="heartbeat").start()
        threading.Thread(target=self.watch_pods, daemon=True, name="watch").start()
        log(f"node {self.node} ready; state in {self.state_dir} (runc --root {self.runc.root})")
        self.stop.wait()
        log("stopping: every container gets TERM, then KILL after "
            f"{self.shutdown_grace}s")
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop_now = True
        for w in workers:
            w.join(self.shutdown_grace + 15)
        left = self.runc.list()
        for cid in left:
            self.runc.delete(cid)
        self.shared.stop_all()
        log(f"stopped ({len(workers)} pods; {len(left)} containers force-removed)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--node-name", default="runc-node")
    ap.add_argument("--state-dir", required=True, help="bundles, volumes, logs, runc state")
    ap.add_argument("--images", default=os.environ.get("BROTR_KUBELET_IMAGES"),
                    help="image map (YAML): reference → {archive: PATH} or {hostCommand: [...]}")
    ap.add_argument("--label", action="append", default=[], help="extra node label KEY=VALUE")
    ap.add_argument("--restart-backoff", type=float, default=10,
                    help="first crash-loop back-off in seconds (doubles up to 300; kubelet: 10)")
    ap.add_argument("--pod-ports", choices=("host", "per-pod"), default="host",
                    help="host: pods use their declared ports on the host's network, a pod whose "
                    "port is taken waits (PortInUse); per-pod: each pod gets free host ports for "
                    "its declared ports, and its listen addresses and probes are rewritten to "
                    "them (the stand-in for a pod IP of its own; see README.md)")
    ap.add_argument("--shutdown-grace", type=float, default=10,
                    help="seconds containers get between TERM and KILL when the kubelet stops")
    args = ap.parse_args()
    if not args.kubeconfig or not args.images:
        ap.error("--kubeconfig (or KUBECONFIG) and --images (or BROTR_KUBELET_IMAGES) are needed")
    if os.geteuid() != 0:
        ap.error("runc needs root")
    k = Kubelet(args)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: k.stop.set())
    try:
        k.run(dict(label.split("=", 1) for label in args.label))
    except Exception:
        traceback.print_exc()
        k.stop.set()
        sys.exit(1)


if __name__ == "__main__":
    main()
