# Shared by the benchmark scripts (sourced, not run): tools, the release build, and a world of
# the benchmark's own (registry database fraiseql_bench, tenant acme_corp in bench_acme_corp).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PORT=${BENCH_PORT:-18080}
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
# No TLS for any client (this PostgreSQL has ssl = on; libpq would otherwise use it).
export PGSSLMODE=disable
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/services.sh
cargo build --release -p fraiseql --quiet
BIN=target/release/fraiseql
# Request logs off: one INFO line per request is work the figures should not include.
export FRAISEQL_CONFIG=examples/saas/fraiseql.toml PORT RUST_LOG=${RUST_LOG:-warn}

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# Drops and recreates the benchmark's registry and provisions acme_corp; sets TOKEN.
bench_world() {
  export TENANT_PREFIX=bench_
  export MASTER_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench" SHARED_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench"
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS fraiseql_bench WITH (FORCE)"
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS bench_acme_corp WITH (FORCE)"
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench"
  "$BIN" tenant create acme_corp >/dev/null
  # The shared database's migrations (tb_analytics_event, the analytics views): the server checks
  # its schema against them at start-up.
  "$BIN" migrate >/dev/null
  TOKEN=$("$BIN" token --tenant acme_corp --role admin)
}

# Runs the server in the background (SERVER is its pid) and waits until it answers.
start_server() {
  "$BIN" run >/tmp/fraiseql-bench.log 2>&1 &
  SERVER=$!
  for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.2
  done
  echo "the server did not start:" >&2
  tail -5 /tmp/fraiseql-bench.log >&2
  exit 1
}
