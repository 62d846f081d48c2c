#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL (and NATS), starting them if needed:
# the Rust tests (cargo nextest; arguments are passed to it), then the end-to-end checks
# (scripts/e2e.sh: walkthrough, browser, federation gateway, compatibility suite, deploy and
# container checks). E2E=0 skips the latter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# graphql-core checks that a real client library builds a schema from our introspection;
# opentelemetry-proto (the official OTLP definitions) decodes our trace exports
# (scripts/otlp-receiver.py, crates/fraiseql/tests/cli/main.rs); openapi-spec-validator checks the
# admin API's OpenAPI document.
VENV=target/py-venv
if [ ! -x "$VENV/bin/python" ] ||
  ! "$VENV/bin/python" -c "import graphql, opentelemetry.proto.collector.trace.v1, openapi_spec_validator" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "graphql-core==3.2.*" \
    "opentelemetry-proto==1.*" "openapi-spec-validator==0.7.*"
fi
export FRAISEQL_PYTHON="$PWD/$VENV/bin/python"
# Apollo's composition checks the subgraphs' SDL (examples/saas/tests/saas/federation.rs).
FRAISEQL_FEDERATION_TOOLS=$(scripts/federation/install.sh)
export FRAISEQL_FEDERATION_TOOLS
cargo nextest run --workspace --no-fail-fast "$@"
if [ "${E2E:-1}" != 0 ]; then
  scripts/e2e.sh
fi
