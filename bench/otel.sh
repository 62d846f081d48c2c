#!/usr/bin/env bash
# OpenTelemetry's cost, on bench/compare.sh's cluster and data (its own PostgreSQL, no TLS): one
# query with traces off, exported at sample_ratio 1.0 and at 0.01 to a receiver that decodes and
# drops (scripts/otlp-receiver.py --drop, with opentelemetry-proto from target/py-venv: run
# scripts/test.sh once, or pip install opentelemetry-proto there). Prints a table and the load
# average, writes bench/results/otel.json.
#   bench/otel.sh                                         organizations, 1 and 16 connections
#   BENCH_QUERIES=projectsByOrg BENCH_CONNS=16 ROUNDS=5 bench/otel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk python3 pg_config; do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install wrk)" >&2; exit 1; }
done
cargo build --release -p fraiseql --quiet
exec python3 bench/otel.py "$@"
