#!/usr/bin/env bash
# The benchmark: fraiseql next to pgbench (the statements fraiseql sends, plain and pipelined)
# and PostGraphile v5, on a PostgreSQL cluster of its own, same data, no TLS anywhere.
#   bench/compare.sh                      every query at 1, 16 and 64 connections, 3 rounds of 6 s
#   ROUNDS=5 BENCH_SECS=10 bench/compare.sh
#   BENCH_QUERIES=organizations BENCH_CONNS=1,16 BENCH_TARGETS=pipelined,fraiseql bench/compare.sh
# Prints a table, writes bench/results/latest.json and draws it as bench/results/latest.svg
# (bench/chart.py). Not a test: figures depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk pgbench node npm python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install wrk)" >&2; exit 1; }
done
cargo build --release -p fraiseql --quiet
exec python3 bench/compare.py "$@"
