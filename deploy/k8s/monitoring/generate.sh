#!/usr/bin/env bash
# Writes prometheusrule.yaml, the PrometheusRule (prometheus-operator) of the platform's alerts,
# from deploy/prometheus/aap-alerts.yaml, the one rules file: its groups become the resource's
# spec as they are (the file's leading comment aside). Run it after every change of the rules;
# services/aap/tests/alerts.rs and `just deploy-check` fail while the two differ.
set -euo pipefail
cd "$(dirname "$0")"
rules=../../prometheus/aap-alerts.yaml
{
    cat <<'HEAD'
# Made by deploy/k8s/monitoring/generate.sh from deploy/prometheus/aap-alerts.yaml: edit that
# file and run the script, never this one. Runbooks: docs/alerts.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: aap-alerts
  labels:
    app.kubernetes.io/name: aap-alerts
spec:
HEAD
    # The leading comment stays in the rules file; every other line moves under spec.
    sed -e '1,/^groups:/{/^#/d}' -e 's/^./  &/' "$rules"
} >prometheusrule.yaml
echo "wrote $(pwd)/prometheusrule.yaml"
