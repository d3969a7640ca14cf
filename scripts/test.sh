#!/usr/bin/env bash
# The whole test suite: the same preparation as up.sh (Postgres, Redis), then formatting, lints,
# the proto lint and every test. Exits non-zero on the first failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

prepare
ensure_buf

log "cargo fmt --check"
cargo fmt --all --check

log "buf lint"
(cd proto && buf lint)

log "helm lint and manifest validation"
ensure_helm
ensure_kubernetes_validate
"$HELM" lint --strict helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci >/dev/null
rendered=$(mktemp)
"$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci --set serviceMonitor.enabled=false \
  --set dashboard.enabled=true >"$rendered"
kubernetes-validate --strict --quiet -k 1.33.0 "$rendered" k8s/namespace.yaml
# The gateway's TLS ingress, rendered when enabled, and refused without a certificate.
"$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci \
  --set gatewayIngress.enabled=true --set gatewayIngress.host=xinyong.example.gov.cn \
  --set gatewayIngress.tlsSecretName=xinyong-tls --show-only templates/ingress.yaml >"$rendered"
kubernetes-validate --strict --quiet -k 1.33.0 "$rendered"
grep -q 'secretName: xinyong-tls' "$rendered" || die "the gateway's ingress has no TLS"
if "$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci \
  --set gatewayIngress.enabled=true --set gatewayIngress.host=xinyong.example.gov.cn >/dev/null 2>&1; then
  die "the gateway's ingress rendered without a TLS certificate"
fi
# The gateway speaking TLS itself, for client certificates: its certificate and CAs mounted, its
# readiness asked over the admin port (the kubelet's gRPC probe is clear text), the ingress passing
# TLS through.
"$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci \
  --set gatewayTls.secretName=gateway-tls --set gatewayTls.clientCaSecretName=department-cas --set gatewayTls.clientCrl=true \
  --set gatewayIngress.enabled=true --set gatewayIngress.host=xinyong.example.gov.cn >"$rendered"
kubernetes-validate --strict --quiet -k 1.33.0 "$rendered"
python3 - "$rendered" <<'PY' || die "the gateway's TLS is not rendered as docs/gateway.md says"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("gateway"))
pod = gateway["spec"]["template"]["spec"]
container = pod["containers"][0]
env = {e["name"]: e.get("value") for e in container["env"]}
assert env["XINYONG__GATEWAY__TLS__CERTIFICATE_FILE"] == "/etc/xinyong/tls/tls.crt", env
assert env["XINYONG__GATEWAY__TLS__CLIENT_CA_FILE"] == "/etc/xinyong/client-ca/ca.crt", env
assert env["XINYONG__GATEWAY__TLS__CLIENT_CRL_FILE"] == "/etc/xinyong/client-ca/ca.crl", env
assert {v["secret"]["secretName"] for v in pod["volumes"]} == {"gateway-tls", "department-cas"}, pod["volumes"]
assert "httpGet" in container["readinessProbe"], container["readinessProbe"]
others = [d for d in docs if d["kind"] == "Deployment" and d is not gateway]
assert all("grpc" in d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] for d in others)
ingress = next(d for d in docs if d["kind"] == "Ingress")
assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/ssl-passthrough": "true"}, ingress
assert "tls" not in ingress["spec"], ingress
PY

log "alert rules and dashboard (promtool)"
ensure_promtool
(cd helm && promtool test rules alerts_test.yaml)
# The rules as the chart's PrometheusRule carries them, linted (the tests above parse them too).
"$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci \
  --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml \
  | python3 -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"], sys.stdout)' >"$rendered"
promtool check rules "$rendered" >/dev/null
# The dashboard as the chart's ConfigMap carries it, and every query of it and of the alerts
# against the metrics docs/configuration.md lists.
"$HELM" template xinyong helm/xinyong --set secrets.internalToken=ci --set secrets.personalDataKey=ci \
  --set dashboard.enabled=true --show-only templates/dashboard.yaml \
  | python3 -c 'import sys, json, yaml; json.loads(yaml.safe_load(sys.stdin)["data"]["xinyong.json"])'
python3 helm/check_monitoring.py
rm -f "$rendered"

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
# Tests make throw-away databases through DATABASE_URL and keep to a private Redis key prefix.
cargo test --workspace --locked --no-fail-fast
