#!/usr/bin/env bash
# Checks the deployment files offline (`just deploy-check`; CI runs it):
#   - deploy/compose/compose.yaml with `docker-compose config -q`;
#   - every Kustomize overlay, deploy/k8s/postgres and deploy/k8s/monitoring rendered with
#     `kubectl kustomize`, then deploy/k8s/check.py over each rendered set: kubernetes-validate
#     (strict) for the built-in kinds, deploy/k8s/schemas/ for KEDA's ScaledObject,
#     CloudNativePG's Cluster and prometheus-operator's PrometheusRule, the references between
#     resources, and the PrometheusRule equal to deploy/prometheus/aap-alerts.yaml;
#   - deploy/prometheus/aap-alerts.yaml with promtool (check rules, and its unit tests), where
#     promtool is installed;
#   - deploy/k8s/nats/values.yaml: the settings the platform relies on;
#   - deploy/split-test.sh: the topology run for real (a process per service behind the
#     gateway's nginx.conf, compose's seed-accounts.sh, a Chromium bot, a prompt answered).
# The rendered sets are kept in $CARGO_TARGET_DIR/deploy-check for a look.
set -euo pipefail
cd "$(dirname "$0")/.."

AAP_TOOLS_DIR="${AAP_TOOLS_DIR:-/opt/aap}"
PY="$AAP_TOOLS_DIR/deploy-venv/bin/python"
PATH="$PATH:$AAP_TOOLS_DIR/bin"
out="${CARGO_TARGET_DIR:-$HOME/.cache/aap/target}/deploy-check"
mkdir -p "$out"
[ -x "$PY" ] || { echo "error: $PY is missing: bash deploy/local/install.sh --deploy" >&2; exit 1; }
for tool in docker-compose kubectl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: bash deploy/local/install.sh --deploy" >&2; exit 1; }
done

echo "==> compose: docker-compose config"
docker-compose -f deploy/compose/compose.yaml config -q
echo "    deploy/compose/compose.yaml is valid"

echo "==> kubernetes: kubectl kustomize"
for dir in deploy/k8s/overlays/* deploy/k8s/postgres deploy/k8s/monitoring; do
    name=$(basename "$dir")
    kubectl kustomize "$dir" >"$out/$name.yaml"
    echo "    $dir -> $out/$name.yaml"
done

echo "==> kubernetes: schemas and references"
# Secrets the operator makes (docs/deploy.md); the dev overlay generates all but the database's.
"$PY" deploy/k8s/check.py --external-secret aap-database "$out/dev.yaml"
"$PY" deploy/k8s/check.py --external-secret aap-database --external-secret aap-secrets \
    --external-secret aap-bot-token "$out/production.yaml" "$out/postgres.yaml"
"$PY" deploy/k8s/check.py "$out/monitoring.yaml"

echo "==> kubernetes: the checker catches what it is for"
# Each line: what is broken, then a sed script that breaks it in the rendered production set.
mutations=(
    "a consumer no bot reads|s/consumer: tasks-claude-pro/consumer: tasks-claude-plus/"
    "an unknown field of a built-in kind|s/readinessProbe:/readinessProbes:/"
    "a ScaledObject field KEDA does not have|s/pollingInterval: 10/pollingIntervalSeconds: 10/"
    "a Service port no pod declares|s/targetPort: metrics/targetPort: metric/"
    "a Secret nobody makes|s/name: aap-bot-token/name: aap-bot-tokens/"
    "a kind without a schema|s#apiVersion: keda.sh/v1alpha1#apiVersion: keda.sh/v1alpha2#"
)
for mutation in "${mutations[@]}"; do
    what=${mutation%%|*}
    sed "${mutation#*|}" "$out/production.yaml" >"$out/mutated.yaml"
    if cmp -s "$out/production.yaml" "$out/mutated.yaml"; then
        echo "FAIL: the mutation for '$what' changed nothing" >&2
        exit 1
    fi
    if "$PY" deploy/k8s/check.py --external-secret aap-database --external-secret aap-secrets \
        --external-secret aap-bot-token "$out/mutated.yaml" >"$out/mutated.out" 2>&1; then
        echo "FAIL: check.py passed a set with $what" >&2
        exit 1
    fi
    echo "    caught: $what ($(grep -m1 '^FAIL' "$out/mutated.out" | cut -c1-110))"
done
# The alerting rules: a PrometheusRule edited by hand instead of made from the rules file.
sed 's/aap_evaluations_oldest_claim_age_seconds) > 1200/aap_evaluations_oldest_claim_age_seconds) > 1800/' \
    "$out/monitoring.yaml" >"$out/mutated.yaml"
if cmp -s "$out/monitoring.yaml" "$out/mutated.yaml"; then
    echo "FAIL: the mutation for 'an alert that differs from the rules file' changed nothing" >&2
    exit 1
fi
if "$PY" deploy/k8s/check.py "$out/mutated.yaml" >"$out/mutated.out" 2>&1; then
    echo "FAIL: check.py passed a PrometheusRule that differs from deploy/prometheus/aap-alerts.yaml" >&2
    exit 1
fi
echo "    caught: an alert that differs from the rules file ($(grep -m1 '^FAIL' "$out/mutated.out" | cut -c1-110))"
rm -f "$out/mutated.yaml" "$out/mutated.out"

echo "==> alerting rules: promtool"
# services/aap/tests/alerts.rs checks the rules against the real metrics; promtool, where it is
# installed, loads them as Prometheus does and runs their unit tests (when each alert fires).
if command -v promtool >/dev/null; then
    promtool check rules deploy/prometheus/aap-alerts.yaml
    "$PY" -c 'import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
for group in rules["groups"]:
    for rule in group["rules"]:
        rule.pop("annotations", None)
yaml.safe_dump(rules, open(sys.argv[2], "w"))' deploy/prometheus/aap-alerts.yaml "$out/aap-alerts.bare.yaml"
    cp deploy/prometheus/aap-alerts.test.yaml "$out/"
    promtool test rules "$out/aap-alerts.test.yaml"
else
    echo "    skipped: no promtool (apt-get install prometheus)"
fi

echo "==> NATS chart values"
"$PY" - deploy/k8s/nats/values.yaml <<'PYEOF'
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
config = values["config"]
checks = {
    "a cluster": config["cluster"]["enabled"] is True,
    "3 servers": config["cluster"]["replicas"] == 3,
    "JetStream": config["jetstream"]["enabled"] is True,
    "file storage on a PersistentVolume": config["jetstream"]["fileStore"]["enabled"] is True
        and config["jetstream"]["fileStore"]["pvc"]["enabled"] is True,
    "sync_interval: always": config["jetstream"]["merge"]["sync_interval"] == "always",
    "the monitoring port KEDA reads": config["monitor"]["enabled"] is True and config["monitor"]["port"] == 8222,
    "max_payload: 8 MiB (a result with its page)": config["merge"]["max_payload"] == 8388608,
}
failed = [name for name, ok in checks.items() if not ok]
for name in failed:
    print(f"FAIL nats/values.yaml: {name}")
print(f"nats/values.yaml: {len(checks) - len(failed)} checks passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PYEOF

echo "==> the split platform behind the gateway (deploy/split-test.sh)"
bash deploy/split-test.sh
