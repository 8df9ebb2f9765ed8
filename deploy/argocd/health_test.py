#!/usr/bin/env python3
"""Runs the Argo CD health scripts in deploy/argocd with a real Lua interpreter.

  health_test.py test [--lua lua5.4]...    every <group>/<Kind>/health_test.yaml (Argo CD's own
                                           format) and a check that argocd-cm.yaml is up to date;
                                           last line "N passed, M failed"
  health_test.py health [--lua L] [--expect STATUS] [--expect-message TEXT] < objects.json
                                           the health of live objects (`kubectl get -o json`:
                                           one object or a List), one line each
  health_test.py argocd-cm [--write]       argocd-cm.yaml from the health.lua files
  health_test.py capture KIND STATE NOTE < object.json
                                           writes <group>/KIND/testdata/STATE.yaml (a live object,
                                           managedFields removed) and its health_test.yaml case
  health_test.py drift KIND STATE < object.json
                                           fails unless a live object still matches the captured
                                           STATE: the same health, status and message, and the
                                           same conditions (type, status, reason)

An object reaches Lua as Argo CD hands it over: a global table `obj` made from the object's JSON
(maps are tables with string keys, lists are 1-based tables, null is nil). This script writes
that table as a Lua literal; the interpreter then runs health.lua unchanged and prints the table
it returns. Lua 5.1 is what Argo CD runs (gopher-lua), so `test` is run with lua5.1 and lua5.4.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("health_test.py: PyYAML is missing (python3 -m pip install pyyaml)")

HERE = os.path.dirname(os.path.abspath(__file__))
CM_PATH = os.path.join(HERE, "argocd-cm.yaml")
# Between status and message in the interpreter's output (no message holds this byte).
SEP = "\x1f"


def lua_string(s):
    """A Lua string literal for any text: printable ASCII as is, every other byte as \\ddd (three digits,
    so a digit after it is not read as part of it)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\' or b < 32 or b > 126:
            out.append("\\%03d" % b)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def lua_value(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(
            "[%s] = %s" % (lua_string(str(k)), lua_value(x)) for k, x in v.items() if x is not None
        ) + "}"
    # YAML timestamps and the like: Argo CD sees them as JSON strings.
    return lua_string(str(v))


def run_health(lua, script, obj):
    """(status, message) that `script` returns for `obj`, run by the interpreter `lua`."""
    prog = "obj = %s\nlocal hs = dofile(%s)\nio.write(tostring(hs.status), %s, tostring(hs.message))\n" % (
        lua_value(obj), lua_string(script), lua_string(SEP))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(prog)
        path = f.name
    try:
        p = subprocess.run([lua, path], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("health_test.py: no Lua interpreter %r (apt-get install %s)" % (lua, lua))
    finally:
        os.unlink(path)
    if p.returncode != 0:
        raise RuntimeError("%s %s failed: %s" % (lua, script, p.stderr.strip()))
    status, _, message = p.stdout.partition(SEP)
    return status, message


def scripts():
    """[(group, kind, dir)] of every <group>/<Kind>/health.lua, sorted."""
    out = []
    for group in sorted(os.listdir(HERE)):
        gdir = os.path.join(HERE, group)
        if not os.path.isdir(gdir) or group.startswith("."):
            continue
        for kind in sorted(os.listdir(gdir)):
            if os.path.isfile(os.path.join(gdir, kind, "health.lua")):
                out.append((group, kind, os.path.join(gdir, kind)))
    return out


def script_for(obj):
    group = obj.get("apiVersion", "").split("/")[0]
    path = os.path.join(HERE, group, obj.get("kind", ""), "health.lua")
    if not os.path.isfile(path):
        raise RuntimeError("no health.lua for %s %s" % (obj.get("apiVersion"), obj.get("kind")))
    return path


def argocd_cm():
    lines = [
        "# Generated from the health.lua files beside it by `python3 deploy/argocd/health_test.py",
        "# argocd-cm --write`; `health_test.py test` fails when it is out of date. Merge into Argo CD's",
        "# ConfigMap: kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for group, kind, d in scripts():
        with open(os.path.join(d, "health.lua")) as f:
            body = f.read()
        lines.append("  resource.customizations.health.%s_%s: |" % (group, kind))
        lines.extend(("    " + l) if l else "" for l in body.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"


def cmd_test(args):
    passed = failed = 0

    def result(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok    " + what)
        else:
            failed += 1
            print("FAIL  " + what)

    found = scripts()
    result(len(found) > 0, "health scripts found: %s" % ", ".join("%s/%s" % (g, k) for g, k, _ in found))
    for lua in args.lua:
        for group, kind, d in found:
            with open(os.path.join(d, "health_test.yaml")) as f:
                tests = yaml.safe_load(f)["tests"]
            result(len(tests) > 0, "%s %s/%s: %d cases" % (lua, group, kind, len(tests)))
            for t in tests:
                want = (t["healthStatus"]["status"], t["healthStatus"].get("message", ""))
                with open(os.path.join(d, t["inputPath"])) as f:
                    obj = yaml.safe_load(f)
                try:
                    got = run_health(lua, os.path.join(d, "health.lua"), obj)
                except RuntimeError as e:
                    result(False, "%s %s/%s %s: %s" % (lua, group, kind, t["inputPath"], e))
                    continue
                what = "%s %s/%s %s: %s" % (lua, group, kind, t["inputPath"], got[0])
                if got != want:
                    what += "\n      want %r\n      got  %r" % (want, got)
                result(got == want, what)
    with open(CM_PATH) as f:
        current = f.read()
    fresh = argocd_cm()
    data = yaml.safe_load(current)["data"]
    same = current == fresh and all(
        data["resource.customizations.health.%s_%s" % (g, k)] == open(os.path.join(d, "health.lua")).read()
        for g, k, d in found)
    result(same, "argocd-cm.yaml matches the health.lua files" +
           ("" if same else " (run: python3 deploy/argocd/health_test.py argocd-cm --write)"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


def cmd_health(args):
    doc = json.load(sys.stdin)
    objs = doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc]
    if not objs:
        print("health_test.py: no objects on stdin", file=sys.stderr)
        return 1
    bad = 0
    for obj in objs:
        status, message = run_health(args.lua[0], script_for(obj), obj)
        meta = obj.get("metadata", {})
        line = "%s %s/%s: %s: %s" % (obj.get("kind"), meta.get("namespace", ""), meta.get("name"),
                                     status, message)
        if args.expect and status != args.expect:
            line += "   <- want %s" % args.expect
            bad += 1
        elif args.expect_message is not None and args.expect_message not in message:
            line += "   <- want a message with %r" % args.expect_message
            bad += 1
        print(line)
    return 1 if bad else 0


def kind_dir(kind):
    for group, k, d in scripts():
        if k == kind:
            return group, d
    raise SystemExit("health_test.py: no health.lua for kind %s" % kind)


def conditions(obj):
    return [(c.get("type"), c.get("status"), c.get("reason"))
            for c in (obj.get("status") or {}).get("conditions") or []]


def strip(obj):
    meta = obj.get("metadata", {})
    meta.pop("managedFields", None)
    meta.get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if meta.get("annotations") == {}:
        meta.pop("annotations")
    return obj


def load_tests(d):
    path = os.path.join(d, "health_test.yaml")
    if not os.path.exists(path):
        return path, []
    with open(path) as f:
        return path, (yaml.safe_load(f) or {}).get("tests") or []


def cmd_capture(args):
    group, d = kind_dir(args.kind)
    obj = strip(json.load(sys.stdin))
    status, message = run_health(args.lua[0], os.path.join(d, "health.lua"), obj)
    os.makedirs(os.path.join(d, "testdata"), exist_ok=True)
    input_path = "testdata/%s.yaml" % args.state
    with open(os.path.join(d, input_path), "w") as f:
        f.write("# %s\n# Captured by e2e/gitops-capture.sh from brotr-operator on the test control plane\n"
                "# (kubectl get -o yaml, managedFields removed).\n" % args.note)
        yaml.safe_dump(obj, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
    path, tests = load_tests(d)
    tests = [t for t in tests if t["inputPath"] != input_path]
    tests.append({"healthStatus": {"status": status, "message": message}, "inputPath": input_path})
    with open(path, "w") as f:
        yaml.safe_dump({"tests": tests}, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
    print("captured %s/%s/%s: %s: %s" % (group, args.kind, input_path, status, message))
    return 0


def cmd_drift(args):
    group, d = kind_dir(args.kind)
    live = json.load(sys.stdin)
    input_path = "testdata/%s.yaml" % args.state
    _, tests = load_tests(d)
    case = [t for t in tests if t["inputPath"] == input_path]
    if not case or not os.path.exists(os.path.join(d, input_path)):
        print("no captured %s/%s/%s (run e2e/gitops-capture.sh)" % (group, args.kind, input_path))
        return 1
    with open(os.path.join(d, input_path)) as f:
        captured = yaml.safe_load(f)
    want = (case[0]["healthStatus"]["status"], case[0]["healthStatus"].get("message", ""))
    got = run_health(args.lua[0], os.path.join(d, "health.lua"), live)
    problems = []
    if got != want:
        problems.append("health %r, captured %r" % (got, want))
    if conditions(live) != conditions(captured):
        problems.append("conditions %r, captured %r" % (conditions(live), conditions(captured)))
    if problems:
        print("%s/%s: live object differs from %s (re-run e2e/gitops-capture.sh if the operator "
              "changed on purpose): %s" % (args.kind, args.state, input_path, "; ".join(problems)))
        return 1
    print("%s %s: matches %s" % (args.kind, live["metadata"]["name"], input_path))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("test")
    t.add_argument("--lua", action="append", help="interpreter (repeatable; default lua5.1 and lua5.4)")
    h = sub.add_parser("health")
    h.add_argument("--lua", action="append")
    h.add_argument("--expect", help="fail unless every object has this health status")
    h.add_argument("--expect-message", help="fail unless every message contains this text")
    c = sub.add_parser("argocd-cm")
    c.add_argument("--write", action="store_true")
    for name in ("capture", "drift"):
        p = sub.add_parser(name)
        p.add_argument("kind")
        p.add_argument("state")
        if name == "capture":
            p.add_argument("note")
        p.add_argument("--lua", action="append")
    args = ap.parse_args()
    if args.cmd != "argocd-cm" and not args.lua:
        args.lua = ["lua5.1", "lua5.4"] if args.cmd == "test" else ["lua5.4"]
    if args.cmd == "test":
        return cmd_test(args)
    if args.cmd == "health":
        return cmd_health(args)
    if args.cmd == "capture":
        return cmd_capture(args)
    if args.cmd == "drift":
        return cmd_drift(args)
    text = argocd_cm()
    if args.write:
        with open(CM_PATH, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
