#!/usr/bin/env bash
# Figures beside the request path, on bench/compare.sh's cluster and data (its own PostgreSQL,
# no TLS): the result cache on/off, metrics on/off, _entities with 1,000 representations, and
# hostile input (a doubling fragment chain, limit: null, 500 connections against the in-flight
# limit). Prints a table and writes bench/results/features.json.
#   bench/features.sh                 3 alternating rounds of 6 s for the on/off pairs
#   ROUNDS=5 BENCH_SECS=10 bench/features.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk python3 pg_config; do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install wrk)" >&2; exit 1; }
done
cargo build --release -p fraiseql --quiet
exec python3 bench/features.py "$@"
