#!/usr/bin/python3
"""Checks that deploy/ builds and that its references resolve.

usage: check_manifests.py DEPLOY_DIR BUILD_DIR

Each kustomization is built with `kubectl kustomize` when kubectl is installed; otherwise its
resources are read as plain YAML and the few transformations these kustomizations use are applied
here (commonLabels, images, strategic-merge patches), and the output says which ran. Then,
on what was built:
- every container image is named, and tagged outside the base;
- every probe, Service targetPort and ServiceMonitor port names a port that exists;
- every volumeMount names a volume, and every PersistentVolumeClaim volume a claim in the build;
- every $(VAR) in args is an env var of its container;
- every --flag in args is one the binary's --help lists, and the server's probe and metrics ports
  are the ones its --listen and --metrics-listen flags bind;
- Services select the pods of a Deployment; the ServiceMonitor and the plain Prometheus config
  select the Services that serve /metrics; the example Job reaches the server's Service;
- the Grafana dashboard and its provisioning files parse, and the monitoring kustomization ships it.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import yaml

FAILURES = []


def fail(where, message):
    FAILURES.append(f"{where}: {message}")


def kustomizations(deploy):
    found = []
    for root, _, files in os.walk(deploy):
        if "kustomization.yaml" in files:
            found.append(os.path.relpath(root, deploy))
    return sorted(found)


def merge(target, patch):
    """A strategic merge as far as these manifests need it: maps merge, null deletes, lists of
    named objects (containers) merge by name, other lists are replaced."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif (isinstance(value, list) and isinstance(target.get(key), list) and value
              and all(isinstance(v, dict) and "name" in v for v in value + target[key])):
            by_name = {t["name"]: t for t in target[key]}
            for v in value:
                if v.get("$patch") == "delete":
                    target[key] = [t for t in target[key] if t["name"] != v["name"]]
                elif v["name"] in by_name:
                    merge(by_name[v["name"]], v)
                else:
                    target[key].append(v)
        else:
            target[key] = value


def load_plain(directory):
    """A kustomization read without kustomize: its resources, with commonLabels, images and
    strategic-merge patches applied by merge() above."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    docs = []
    for resource in k.get("bases", []) + k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, resource))
        if os.path.isdir(path):
            docs.extend(load_plain(path))
        else:
            with open(path) as f:
                docs.extend(d for d in yaml.safe_load_all(f) if d)
    for patch_file in k.get("patchesStrategicMerge", []):
        with open(os.path.join(directory, patch_file)) as f:
            patch = yaml.safe_load(f)
        targets = [d for d in docs if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        if not targets:
            fail(directory, f"patch {patch_file} names no resource")
        for t in targets:
            if patch.get("$patch") == "delete":
                docs.remove(t)
            else:
                merge(t, patch)
    for doc in docs:
        for labels in [doc.setdefault("metadata", {}).setdefault("labels", {})] + (
                [doc["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})] if pod_spec(doc) else []):
            labels.update(k.get("commonLabels", {}))
    images = {i["name"]: i for i in k.get("images", [])}
    for doc in docs:
        for c in containers(doc):
            i = images.get(c.get("image"))
            if i:
                c["image"] = f'{i.get("newName", i["name"])}:{i["newTag"]}' if "newTag" in i else i.get("newName")
        if k.get("namespace") and doc.get("kind") != "Namespace":
            doc.setdefault("metadata", {})["namespace"] = k["namespace"]
    return docs


def build(deploy, name, kubectl):
    directory = os.path.join(deploy, name)
    if kubectl:
        run = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
        if run.returncode != 0:
            fail(name, f"kubectl kustomize failed: {run.stderr.strip()}")
            return []
        return [d for d in yaml.safe_load_all(run.stdout) if d]
    return load_plain(directory)


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def containers(doc):
    spec = pod_spec(doc)
    return (spec.get("containers", []) + spec.get("initContainers", [])) if spec else []


def help_flags(build_dir, command):
    binaries = {"shears-server": "server/shears-server", "shears-worker": "worker/shears-worker",
                "shearsctl": "client/shearsctl"}
    if command not in binaries:
        return None
    run = subprocess.run([os.path.join(build_dir, binaries[command]), "--help"], capture_output=True, text=True)
    return set(re.findall(r"--([a-z0-9-]+)", run.stdout + run.stderr))


def quantity_bytes(quantity):
    """A Kubernetes memory quantity ("32Gi", "500M", "1000") in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    text = str(quantity)
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text))


def flag_value(args, flag):
    for a in args:
        if a.startswith(f"--{flag}="):
            return a.split("=", 1)[1]
    return None


def port_of(address):
    return int(address.rsplit(":", 1)[1]) if address and ":" in address else None


def check_workloads(name, docs, build_dir, tagged):
    claims = {d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f'{name}: {doc["kind"]} {doc["metadata"]["name"]}'
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        volumes.update({t["metadata"]["name"]: t for t in doc["spec"].get("volumeClaimTemplates", [])})
        for v in volumes.values():
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                fail(where, f"volume {v['name']} claims {claim}, which is not in the build")
        for c in containers(doc):
            cw = f"{where} container {c['name']}"
            image = c.get("image", "")
            if not image:
                fail(cw, "no image")
            elif tagged and ":" not in image and "@" not in image:
                fail(cw, f"image {image} has no tag")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not probe:
                    continue
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        if port not in ports and port not in ports.values():
                            fail(cw, f"{probe_name} port {port} is not a container port")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    fail(cw, f"volumeMount {m['name']} has no volume")
            env = {e["name"] for e in c.get("env", [])}
            args = c.get("args", [])
            for a in args:
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
                    if var not in env:
                        fail(cw, f"arg {a} uses $({var}), which is not in env")
            if image.split(":")[0].split("/")[-1] != "shears":
                continue  # another project's image (the example PostgreSQL): its flags are its own
            command = (c.get("command") or [None])[0]
            known = help_flags(build_dir, command)
            if known is None:
                fail(cw, f"command {command} is not a Shears binary")
                continue
            for a in args:
                if a.startswith("--") and a[2:].split("=", 1)[0] not in known:
                    fail(cw, f"{command} has no flag {a.split('=', 1)[0]}")
            if command in ("shears-server", "shears-worker"):
                # Kubernetes' gRPC probes speak no TLS: a TLS server is probed on its plaintext
                # health-only port (--health-listen), a plaintext one on its --listen port.
                health = flag_value(args, "health-listen")
                grpc_port = port_of(health if health is not None else flag_value(args, "listen"))
                for probe_name in ("readinessProbe", "livenessProbe"):
                    probe = c.get(probe_name, {}).get("grpc")
                    if probe and ports.get(probe["port"], probe["port"]) != grpc_port:
                        fail(cw, f"{probe_name} probes port {probe['port']}, the server serves health on {grpc_port}")
                    if probe and health is None and flag_value(args, "tls-cert") is not None:
                        fail(cw, f"{probe_name} probes the TLS port in plaintext; give --health-listen")
            if command == "shears-server":
                # Off loopback the server refuses to start without identities, and serves them in
                # plaintext without TLS.
                for needed in ("auth-token-file", "tls-cert", "tls-key", "uri-policy"):
                    if flag_value(args, needed) is None:
                        fail(cw, f"the server listens beyond loopback without --{needed}")
            if command == "shears-worker" and flag_value(args, "uri-policy") is None:
                fail(cw, "the worker runs jobs without --uri-policy")
            if command in ("shears-worker", "shearsctl") and any(a.startswith("--server=") for a in args):
                env_names = env | {e.get("name") for e in c.get("envFrom", []) if isinstance(e, dict)}
                if flag_value(args, "tls-ca") is None:
                    fail(cw, f"{command} dials the server without --tls-ca")
                if not any(flag_value(args, f) is not None for f in ("token", "token-file")) and \
                        "SHEARS_TOKEN" not in env_names:
                    fail(cw, f"{command} sends no token (--token-file, --token or SHEARS_TOKEN)")
                metrics = port_of(flag_value(args, "metrics-listen"))
                if metrics is not None and ports.get("metrics") != metrics:
                    fail(cw, f"port 'metrics' is {ports.get('metrics')}, --metrics-listen binds {metrics}")


def pods_selected(docs, selector):
    pods = []
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        labels = d["spec"]["template"].get("metadata", {}).get("labels", {})
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            pods.append(d)
    return pods


def check_services(name, docs):
    for s in (d for d in docs if d.get("kind") == "Service"):
        where = f'{name}: Service {s["metadata"]["name"]}'
        pods = pods_selected(docs, s["spec"].get("selector"))
        if not pods:
            fail(where, "selects no pods of the build")
            continue
        for p in s["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            served = [pt for d in pods for c in containers(d) for pt in c.get("ports", [])
                      if pt.get("name") == target or pt["containerPort"] == target]
            if not served:
                fail(where, f"targetPort {target} is not a port of the selected pods")


def metrics_services(docs):
    return {s["metadata"]["name"]: s for s in docs if s.get("kind") == "Service"
            and any(p.get("name") == "metrics" for p in s["spec"]["ports"])}


def check_monitoring(deploy, built):
    base = built["base"]
    served = metrics_services(base)
    if set(served) != {"shears-server", "shears-worker-metrics"}:
        fail("base", f"the Services with a metrics port are {sorted(served)}")
    monitors = [d for d in built["monitoring"] if d.get("kind") == "ServiceMonitor"]
    if not monitors:
        fail("monitoring", "no ServiceMonitor")
    for m in monitors:
        selector = m["spec"]["selector"]["matchLabels"]
        picked = {n for n, s in served.items() if all(s["metadata"].get("labels", {}).get(k) == v
                                                      for k, v in selector.items())}
        if picked != set(served):
            fail("monitoring", f"ServiceMonitor selects {sorted(picked)}, not every metrics Service")
        for e in m["spec"]["endpoints"]:
            if not all(any(p.get("name") == e["port"] for p in s["spec"]["ports"]) for s in served.values()):
                fail("monitoring", f"ServiceMonitor port {e['port']} is not on every selected Service")
    with open(os.path.join(deploy, "monitoring/prometheus.yml")) as f:
        config = yaml.safe_load(f)
    rules = [r for job in config["scrape_configs"] for r in job.get("relabel_configs", [])]
    keep_services = [r["regex"] for r in rules if r.get("action") == "keep"
                     and r["source_labels"] == ["__meta_kubernetes_service_name"]]
    keep_ports = [r["regex"] for r in rules if r.get("action") == "keep"
                  and r["source_labels"] == ["__meta_kubernetes_endpoint_port_name"]]
    if not keep_services or {n for n in served if re.fullmatch(keep_services[0], n)} != set(served):
        fail("monitoring/prometheus.yml", f"keeps services {keep_services}, the metrics Services are {sorted(served)}")
    if keep_ports != ["metrics"]:
        fail("monitoring/prometheus.yml", f"keeps ports {keep_ports}, not the port named metrics")
    with open(os.path.join(deploy, "monitoring/grafana/dashboards/shears.json")) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not exprs:
        fail("dashboard", "no PromQL expressions")
    for provisioning in ("dashboards/shears.yaml", "datasources/prometheus.yaml"):
        with open(os.path.join(deploy, "monitoring/grafana/provisioning", provisioning)) as f:
            if "apiVersion" not in yaml.safe_load(f):
                fail(provisioning, "not a Grafana provisioning file")
    maps = [d for d in built["monitoring"] if d.get("kind") == "ConfigMap"]
    if not any("shears.json" in m.get("data", {}) for m in maps) and not any(
            "grafana/dashboards/shears.json" in g.get("files", []) for g in
            yaml.safe_load(open(os.path.join(deploy, "monitoring/kustomization.yaml"))).get("configMapGenerator", [])):
        fail("monitoring", "the dashboard is not packaged as a ConfigMap")


def check_replicas(built):
    """overlays/replicas: several servers on PostgreSQL that update one at a time and that a drain
    cannot take all at once, and workers that KEDA scales on the queue; the HPA example the same."""
    docs = built.get("overlays/replicas")
    if docs is None:
        fail("deploy", "no kustomization in overlays/replicas")
        return
    where = "overlays/replicas"
    servers = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] == "shears-server"]
    workers = {d["metadata"]["name"] for d in docs if d.get("kind") == "Deployment" and
               any(c["command"] == ["shears-worker"] for c in containers(d))}
    if len(servers) != 1:
        fail(where, "no shears-server Deployment")
        return
    server = servers[0]
    replicas = server["spec"].get("replicas", 1)
    if replicas < 2:
        fail(where, f"the server has {replicas} replica(s)")
    strategy = server["spec"].get("strategy", {})
    if strategy.get("type") != "RollingUpdate" or strategy.get("rollingUpdate", {}).get("maxUnavailable", 1) != 0:
        fail(where, "the server does not roll with maxUnavailable 0")
    (c,) = containers(server)
    db = flag_value(c["args"], "db") or ""
    env = {e["name"]: e for e in c.get("env", [])}
    url = db
    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", db):
        ref = env.get(var, {}).get("valueFrom", {}).get("configMapKeyRef", {})
        maps = [d for name in ("overlays/replicas", "examples/postgres") for d in built.get(name, [])
                if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == ref.get("name")]
        url = url.replace(f"$({var})", maps[0]["data"].get(ref.get("key"), "") if maps else "")
    if not url.startswith("postgresql://"):
        fail(where, f"the server's --db {db} is not a PostgreSQL URL (resolved: {url!r})")
    if "@" in url and ":" in url.split("://", 1)[1].split("@", 1)[0]:
        fail(where, "the database password is in the server's arguments; give it as PGPASSWORD")
    if "PGPASSWORD" not in env or "secretKeyRef" not in env["PGPASSWORD"].get("valueFrom", {}):
        fail(where, "the server's PGPASSWORD does not come from a Secret")
    if any("persistentVolumeClaim" in v for v in pod_spec(server).get("volumes", [])):
        fail(where, "the replicas still mount the SQLite volume")
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    if not any(pods_selected([server], p["spec"].get("selector", {}).get("matchLabels")) and
               0 < p["spec"].get("minAvailable", 0) < replicas for p in pdbs):
        fail(where, "no PodDisruptionBudget keeps some but not all server replicas")
    scaled = [d for d in docs if d.get("kind") == "ScaledObject"]
    if not scaled:
        fail(where, "no KEDA ScaledObject")
    for so in scaled:
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in workers:
            fail(where, f"ScaledObject {so['metadata']['name']} scales {target}, not a worker Deployment")
        queries = [t.get("metadata", {}).get("query", "") for t in so["spec"].get("triggers", [])]
        if not any('shears_jobs{state=~"queued|running"}' in q for q in queries):
            fail(where, "the ScaledObject does not scale on the queued and running jobs")
        if so["spec"].get("minReplicaCount", 1) != 0:
            fail(where, "the ScaledObject does not allow scale-to-zero")
    for hpa in (d for d in built.get("examples/worker-hpa", []) if d.get("kind") == "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] not in workers:
            fail("examples/worker-hpa", f"the HPA scales {hpa['spec']['scaleTargetRef']['name']}, not a worker")
    postgres = built.get("examples/postgres", [])
    if not any(d.get("kind") == "StatefulSet" for d in postgres) or \
            not any(d.get("kind") == "Secret" and d["metadata"]["name"] == env.get("PGPASSWORD", {}).get(
                "valueFrom", {}).get("secretKeyRef", {}).get("name") for d in postgres):
        fail("examples/postgres", "no StatefulSet, or no Secret the server's PGPASSWORD names")


def check_example_jobs(built):
    services = {s["metadata"]["name"]: s for s in built["base"] if s.get("kind") == "Service"}
    for name, docs in built.items():
        if not name.startswith("examples"):
            continue
        for job in (d for d in docs if d.get("kind") == "Job"):
            for c in containers(job):
                server = flag_value(c.get("args", []), "server")
                host, _, port = (server or "").rpartition(":")
                s = services.get(host)
                if not s or not any(p["port"] == int(port or 0) and p.get("name") == "grpc" for p in s["spec"]["ports"]):
                    fail(name, f"--server {server} is not the gRPC port of a Service in base")
                if "--wait" not in c.get("args", []):
                    fail(name, "the Job does not wait for the pruning job's outcome (--wait)")
            if job["spec"]["template"]["spec"].get("restartPolicy") != "Never":
                fail(name, "a podFailurePolicy needs restartPolicy Never")


def main():
    deploy, build_dir = sys.argv[1], sys.argv[2]
    kubectl = shutil.which("kubectl")
    if kubectl:
        version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout.split("\n")
        print(f"check: kubectl kustomize ({'; '.join(v for v in version if v)}) on every kustomization, "
              "then the references of what it built")
    else:
        print("check: no kubectl here: YAML parse of every kustomization's resources, with its commonLabels, "
              "images and strategic-merge patches applied by this script, then the references")
    built = {}
    for name in kustomizations(deploy):
        built[name] = build(deploy, name, kubectl)
        kinds = sorted(f'{d["kind"]}/{d["metadata"]["name"]}' for d in built[name])
        print(f"  {name}: {len(built[name])} objects: {', '.join(kinds)}")
        check_workloads(name, built[name], build_dir, tagged=name != "base")
        check_services(name, built[name])
    for required in ("base", "overlays/cpu", "overlays/gpu", "monitoring"):
        if required not in built:
            fail("deploy", f"no kustomization in {required}")
    gpu = [c for d in built.get("overlays/gpu", []) if d.get("kind") == "Deployment" for c in containers(d)
           if c["command"] == ["shears-worker"]]
    cpu = [c for d in built.get("overlays/cpu", []) if d.get("kind") == "Deployment" for c in containers(d)
           if c["command"] == ["shears-worker"]]
    if not gpu or any("nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}) for c in gpu):
        fail("overlays/gpu", "workers do not request nvidia.com/gpu")
    if not cpu or any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) or
                      flag_value(c["args"], "device") != "cpu" for c in cpu):
        fail("overlays/cpu", "workers still request a GPU or do not run on --device=cpu")
    # A CPU worker's tensors must fail a job before the pod's memory limit has the kernel kill the
    # worker (and with it, the job's attempt): --max-tensor-memory below limits.memory.
    for c in cpu:
        limit = quantity_bytes(c.get("resources", {}).get("limits", {}).get("memory", "0"))
        tensors = int(flag_value(c["args"], "max-tensor-memory") or 0)
        if not 0 < tensors < limit:
            fail("overlays/cpu", f"--max-tensor-memory={tensors} is not below the memory limit ({limit} bytes)")
    check_monitoring(deploy, built)
    check_example_jobs(built)
    check_replicas(built)
    for f in FAILURES:
        print("FAIL", f)
    print("manifests:", "FAILED" if FAILURES else "all references resolve")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
