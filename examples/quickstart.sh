#!/usr/bin/env bash
# The quickstart: Custos in front of the demo ePHI service, on 127.0.0.1.
#   http://127.0.0.1:8080/patients            plain HTTP
#   https://localhost:8443/patients           TLS (CA in certs/dev/ca.pem)
#   http://127.0.0.1:9090/metrics             Prometheus metrics
# Ctrl+C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cmake >/dev/null || { echo "quickstart: cmake is needed to build (apt-get install -y cmake)" >&2; exit 1; }
cargo build --bin custos --bin demo-ephi
[ -f certs/dev/server.pem ] || target/debug/custos certs dev --out certs/dev
target/debug/custos check --config examples/quickstart.toml

target/debug/demo-ephi --listen 127.0.0.1:9000 &
demo=$!
trap 'kill $demo 2>/dev/null || true' EXIT
cat <<MSG

  Custos is starting in front of the demo ePHI service (synthetic patients):
    curl http://127.0.0.1:8080/patients
    curl --cacert certs/dev/ca.pem https://localhost:8443/patients/1
    curl http://127.0.0.1:9090/metrics
  Every request is recorded in the audit chain in examples/audit; after stopping:
    target/debug/custos audit verify --key examples/audit/signing-key.pub examples/audit
  Ctrl+C to stop.

MSG
target/debug/custos serve --config examples/quickstart.toml
