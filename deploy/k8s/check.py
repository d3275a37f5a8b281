#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests offline (`just deploy-check` runs it on every overlay).

    check.py [--kubernetes-version 1.32.0] [--external-secret NAME ...] RENDERED.yaml ...

Each file is one rendered set (the output of `kubectl kustomize`), checked as a whole:

- every built-in resource against the Kubernetes API schemas of kubernetes-validate, strict
  (unknown fields are errors);
- every custom resource against a JSON schema in deploy/k8s/schemas/ (KEDA's ScaledObject,
  CloudNativePG's Cluster), written from their docs; a custom resource with no schema there is
  an error, never passed unchecked;
- the references between resources: selectors that select something, the Deployment an HPA or
  a ScaledObject scales (never both), named ports that exist, ConfigMaps and Secrets that are
  in the set or named with --external-secret (made by the operator), requests and a memory
  limit on every container, grpc health probes on every platform service, scrape annotations
  that name a declared port, and KEDA triggers whose JetStream consumer is the one the bot's
  assistant and plan read (tasks-<assistant>-<plan> or tasks-<assistant>-any);
- the PrometheusRule aap-alerts holds exactly the groups of deploy/prometheus/aap-alerts.yaml
  (deploy/k8s/monitoring/generate.sh makes it from that file).

Prints one line per failed check and the counts; exits 1 on any failure.
"""

import argparse
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = pathlib.Path(__file__).resolve().parent / "schemas"
# The one rules file the PrometheusRule aap-alerts is made from.
RULES = pathlib.Path(__file__).resolve().parents[1] / "prometheus" / "aap-alerts.yaml"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


class Checker:
    def __init__(self, source):
        self.source = source
        self.passed = 0
        self.failed = []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL {self.source}: {what}")


def ident(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def crd_schema(doc):
    group_version = doc.get("apiVersion", "").replace("/", "_")
    path = SCHEMAS / f"{group_version}_{doc.get('kind')}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


def matches(selector, labels):
    """Whether a label selector (matchLabels / matchExpressions, or a plain map) selects labels."""
    if selector is None:
        return False
    match_labels = selector.get("matchLabels", {}) if ("matchLabels" in selector or "matchExpressions" in selector) else selector
    for key, value in match_labels.items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []) if isinstance(selector.get("matchExpressions"), list) else []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_template(doc):
    return doc.get("spec", {}).get("template", {})


def containers(doc):
    spec = pod_template(doc).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def env_value(container, name):
    for env in container.get("env", []):
        if env.get("name") == name:
            return env.get("value")
    return None


def check_set(path, version, external):
    checker = Checker(path.name)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    checker.check(len(docs) > 0, "the rendered set is empty")

    # 1. Schemas.
    for doc in docs:
        schema = crd_schema(doc)
        if schema is not None:
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            checker.check(not errors, f"{ident(doc)}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors))
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            checker.check(True, "")
        except kubernetes_validate.SchemaNotFoundError:
            checker.check(False, f"{ident(doc)} ({doc.get('apiVersion')}): no schema in kubernetes-validate nor in {SCHEMAS}")
        except kubernetes_validate.ValidationError as error:
            checker.check(False, f"{ident(doc)}: {error.message} at {'/'.join(map(str, error.path))}")

    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append(doc)
    workloads = [d for kind in WORKLOADS for d in by_kind.get(kind, [])]
    names = {(d.get("kind"), d["metadata"]["name"]) for d in docs}
    pod_labels = [pod_template(w).get("metadata", {}).get("labels", {}) for w in workloads]

    # 2. Workloads: selectors, resources, probes, scrape annotations, references.
    for w in workloads:
        template = pod_template(w)
        labels = template.get("metadata", {}).get("labels", {})
        checker.check(matches(w["spec"].get("selector"), labels), f"{ident(w)}: its selector does not select its own pods")
        ports = {p.get("name"): p.get("containerPort") for c in containers(w) for p in c.get("ports", [])}
        for c in containers(w):
            requests = c.get("resources", {}).get("requests", {})
            limits = c.get("resources", {}).get("limits", {})
            checker.check("cpu" in requests and "memory" in requests, f"{ident(w)}/{c['name']}: cpu and memory requests are missing")
            checker.check("memory" in limits, f"{ident(w)}/{c['name']}: no memory limit")
            checker.check("livenessProbe" in c, f"{ident(w)}/{c['name']}: no liveness probe")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    checker.check(("ConfigMap", ref["configMapRef"]["name"]) in names, f"{ident(w)}: ConfigMap {ref['configMapRef']['name']} is not in the set")
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    checker.check(("Secret", ref["name"]) in names or ref["name"] in external, f"{ident(w)}: Secret {ref['name']} is neither in the set nor made by the operator")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                named = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(named, str):
                    checker.check(named in ports, f"{ident(w)}/{c['name']}: {probe} names port {named}, which no container declares")
        for volume in template.get("spec", {}).get("volumes", []):
            if "secret" in volume:
                secret = volume["secret"]["secretName"]
                checker.check(("Secret", secret) in names or secret in external, f"{ident(w)}: Secret {secret} is neither in the set nor made by the operator")
            if "configMap" in volume:
                checker.check(("ConfigMap", volume["configMap"]["name"]) in names, f"{ident(w)}: ConfigMap {volume['configMap']['name']} is not in the set")
        annotations = template.get("metadata", {}).get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations.get("prometheus.io/port", "0"))
            checker.check(port in ports.values(), f"{ident(w)}: scraped on port {port}, which no container declares")
        if labels.get("app.kubernetes.io/component") == "service":
            main = containers(w)[0]
            for probe in ("readinessProbe", "livenessProbe"):
                checker.check(main.get(probe, {}).get("grpc", {}).get("port") == 50051, f"{ident(w)}: {probe} is not a grpc health probe on 50051")
            checker.check(main.get("readinessProbe", {}).get("grpc", {}).get("service", "") == "", f"{ident(w)}: readiness must ask for the whole process (service \"\")")

    # 3. Services select pods and name ports they have.
    for svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        selected = [w for w in workloads if matches(selector, pod_template(w).get("metadata", {}).get("labels", {}))]
        checker.check(bool(selected), f"{ident(svc)}: selects no pods")
        declared = {p.get("name") for w in selected for c in containers(w) for p in c.get("ports", [])}
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str):
                checker.check(target in declared, f"{ident(svc)}: targetPort {target} is declared by none of its pods")

    # 4. Scalers: an existing Deployment, never scaled twice.
    scaled = {}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        checker.check((ref["kind"], ref["name"]) in names, f"{ident(hpa)}: scales {ref['kind']}/{ref['name']}, which is not in the set")
        scaled.setdefault(ref["name"], []).append(ident(hpa))
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    # The task stream's name follows the platform's NATS prefix (aap -> AAP_TASKS).
    prefix = next((c.get("data", {}).get("AAP_NATS_PREFIX") for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"].startswith("aap-config")), None) or "aap"
    task_stream = prefix.upper().replace("-", "_").replace(".", "_") + "_TASKS"
    for so in by_kind.get("ScaledObject", []):
        target = so["spec"]["scaleTargetRef"]["name"]
        checker.check(target in deployments, f"{ident(so)}: scales Deployment/{target}, which is not in the set")
        scaled.setdefault(target, []).append(ident(so))
        if target not in deployments:
            continue
        bot = containers(deployments[target])[0]
        assistant, plan = env_value(bot, "AAP_BOT_ASSISTANT_NAME"), env_value(bot, "AAP_BOT_PLAN_NAME")
        expected = {f"tasks-{assistant}-{(plan or 'any').lower()}", f"tasks-{assistant}-any"}
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] != "nats-jetstream":
                continue
            meta = trigger["metadata"]
            checker.check(meta.get("stream") == task_stream, f"{ident(so)}: stream {meta.get('stream')} is not the task stream {task_stream}")
            checker.check(meta.get("consumer") in expected, f"{ident(so)}: consumer {meta.get('consumer')} is not one that {target} reads ({', '.join(sorted(expected))})")
    for target, scalers in scaled.items():
        checker.check(len(scalers) == 1, f"Deployment/{target} is scaled by {len(scalers)} scalers: {', '.join(scalers)}")

    # 5. Budgets and network policies select pods.
    for pdb in by_kind.get("PodDisruptionBudget", []):
        checker.check(any(matches(pdb["spec"]["selector"], labels) for labels in pod_labels), f"{ident(pdb)}: selects no pods")
    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"]
        if selector:
            checker.check(any(matches(selector, labels) for labels in pod_labels), f"{ident(policy)}: selects no pods")
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer and peer["podSelector"]:
                    checker.check(any(matches(peer["podSelector"], labels) for labels in pod_labels), f"{ident(policy)}: a peer selects no pods of this set")

    # 6. Alerting rules: the PrometheusRule is the rules file, not a copy drifting from it.
    for rule in by_kind.get("PrometheusRule", []):
        if rule["metadata"]["name"] != "aap-alerts":
            continue
        groups = yaml.safe_load(RULES.read_text())["groups"]
        checker.check(rule.get("spec", {}).get("groups") == groups, f"{ident(rule)}: its groups differ from {RULES.name}: run deploy/k8s/monitoring/generate.sh")
    return checker, len(docs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    parser.add_argument("--kubernetes-version", default="1.32.0")
    parser.add_argument("--external-secret", action="append", default=[], help="a Secret the operator makes (not in the set)")
    args = parser.parse_args()
    passed = failed = 0
    for path in args.files:
        checker, docs = check_set(path, args.kubernetes_version, set(args.external_secret))
        print(f"{path.name}: {docs} resources, {checker.passed} checks passed, {len(checker.failed)} failed")
        passed += checker.passed
        failed += len(checker.failed)
    print(f"all sets: {passed} checks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
