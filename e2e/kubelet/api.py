"""A small Kubernetes API client: plain HTTPS with the kubeconfig's bearer token and CA.

No client library: the standard library's urllib is enough for the few calls a kubelet makes
(get, create, merge-patch, delete, and one streaming watch).
"""

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

import yaml


class ApiError(Exception):
    def __init__(self, code, body):
        super().__init__(f"HTTP {code}: {body[:300]}")
        self.code = code
        self.body = body


class Api:
    def __init__(self, kubeconfig):
        with open(kubeconfig) as f:
            cfg = yaml.safe_load(f)
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
            self.ssl = ssl.create_default_context(cadata=ca)
        elif "certificate-authority" in cluster:
            self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        else:
            self.ssl = ssl.create_default_context()
        if "token" in user:
            self.token = user["token"]
        elif "tokenFile" in user:
            with open(user["tokenFile"]) as f:
                self.token = f.read().strip()
        else:
            # The test control plane's kubeconfigs carry tokens; client certificates would need
            # temporary key files, which this harness has no use for.
            raise SystemExit("kubelet: the kubeconfig user needs a bearer token")

    def _request(self, method, path, body=None, content_type="application/json", timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(req, context=self.ssl, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from None

    def call(self, method, path, body=None, content_type="application/json"):
        with self._request(method, path, body, content_type) as r:
            return json.load(r)

    def get(self, path):
        return self.call("GET", path)

    def get_or_none(self, path):
        try:
            return self.get(path)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def create(self, path, body):
        return self.call("POST", path, body)

    def merge_patch(self, path, body):
        return self.call("PATCH", path, body, "application/merge-patch+json")

    def delete(self, path, body=None):
        try:
            return self.call("DELETE", path, body)
        except ApiError as e:
            if e.code != 404:
                raise

    def watch(self, path, resource_version, timeout_seconds=240):
        """Yields (type, object) events; ends when the server closes the stream."""
        sep = "&" if "?" in path else "?"
        q = urllib.parse.urlencode({
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        })
        with self._request("GET", f"{path}{sep}{q}", timeout=timeout_seconds + 30) as r:
            for line in r:
                if line.strip():
                    ev = json.loads(line)
                    yield ev["type"], ev["object"]
