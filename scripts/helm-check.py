"""Lints, renders and validates the Helm chart offline, for every values profile.

For each helm/aetherv/ci/*-values.yaml: `helm lint` (Helm SDK v4 through helm-python-sdk, no
helm binary), render, then every manifest is validated against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields fail); the custom resources (RabbitmqCluster,
User, Permission, ServiceMonitor, PrometheusRule) are checked for their required fields.
Each file in ci/invalid/ must be refused by values.schema.json. Exits 1 on any problem.

    python scripts/helm-check.py [--kube-version 1.32.0] [--out DIR]
"""
import argparse
import glob
import os
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

CHART = os.path.join(os.path.dirname(__file__), "..", "helm", "aetherv")
CUSTOM = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): ["replicas"],
    ("rabbitmq.com/v1beta1", "User"): ["rabbitmqClusterReference", "importCredentialsSecret"],
    ("rabbitmq.com/v1beta1", "Permission"): ["vhost", "userReference", "permissions", "rabbitmqClusterReference"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["selector", "endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["groups"],
}


def check_profile(path, kube_version, out_dir):
    problems = []
    name = os.path.basename(path).removesuffix("-values.yaml")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{kube_version}")
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            problems.append(f"lint: {m.get('path')}: {m.get('error')}")
    problems += [f"lint: {e}" for e in report.get("errors", [])]
    chart = helm.Chart.load(CHART)
    try:
        rendered = chart.render(values, name="aetherv", namespace="aetherv", is_install=True)
    except helm.HelmError as e:
        return name, 0, problems + [f"render: {e}"]
    docs = []
    for template, text in sorted(rendered.items()):
        if not template.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((template, doc))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, f"{name}.yaml"), "w") as f:
            yaml.safe_dump_all([d for _, d in docs], f)
    for template, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        where = f"{template}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if key in CUSTOM:
            spec = doc.get("spec") or {}
            missing = [k for k in CUSTOM[key] if k not in spec]
            if missing or not doc.get("metadata", {}).get("name"):
                problems.append(f"{where}: missing {', '.join(missing) or 'metadata.name'}")
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: {e.message} at {'/'.join(map(str, e.path))}")
        except Exception as e:  # unknown kind/version: a schema we do not have
            problems.append(f"{where}: {e}")
    return name, len(docs), problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kube-version", default="1.32.0")
    ap.add_argument("--out", help="write each profile's rendered manifests here")
    args = ap.parse_args()
    failed = False
    profiles = sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))
    if not profiles:
        print("no values profiles found", file=sys.stderr)
        return 1
    for path in profiles:
        name, count, problems = check_profile(path, args.kube_version, args.out)
        status = "ok" if not problems else "FAILED"
        print(f"profile {name}: {count} manifests, lint + kubernetes {args.kube_version} schemas: {status}")
        for p in problems:
            print(f"  {p}")
        failed |= bool(problems)
    chart = helm.Chart.load(CHART)
    for path in sorted(glob.glob(os.path.join(CHART, "ci", "invalid", "*.yaml"))):
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        try:
            chart.validate_schema(values)
            print(f"invalid {os.path.basename(path)}: ACCEPTED by values.schema.json (must be refused)")
            failed = True
        except helm.HelmValuesError as e:
            print(f"invalid {os.path.basename(path)}: refused ({str(e).splitlines()[0][:160]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
