# syntax=docker/dockerfile:1
# The fraiseql binary and the SaaS example (examples/saas) in one image.
#   docker build -t fraiseql:local .
#   docker run --rm fraiseql:local --help
# Needs BuildKit (cache mounts): the default since Docker 23 and in Compose v2.
# docker-compose.yml runs it with PostgreSQL and NATS. scripts/check-containers.sh checks this
# file offline (build command, COPY sources, Rust version against Cargo.lock).

# Rust 1.89+ is needed by the locked dependencies (uuid 1.29 declares rust-version 1.89); this
# is the toolchain CI builds with.
ARG RUST_VERSION=1.95

# ---- builder ----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The workspace: root manifest and lock, every member (crates/*, examples/saas; the engine's tests
# include examples/saas/schema.graphql).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY examples ./examples
# The command CI and scripts/setup.sh use for the release binary. target/ is a cache mount, so
# the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p fraiseql \
    && install -D -m 0755 target/release/fraiseql /out/fraiseql

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to PostgreSQL/NATS (rustls with the system roots). postgresql-client: psql,
# used by the compose `setup` service (shared databases, demo data) and handy for debugging.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fraiseql \
    && useradd --system --uid 10001 --gid fraiseql --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin fraiseql

COPY --from=builder /out/fraiseql /usr/local/bin/fraiseql

WORKDIR /app
# The example: config, SDL, migrations, demo data, and the analytics subgraph. Paths in the config
# (schema, migrations) are relative to the config file.
COPY examples/saas/fraiseql.toml examples/saas/schema.graphql examples/saas/seed.sql /app/examples/saas/
COPY examples/saas/migrations /app/examples/saas/migrations
COPY examples/saas/analytics /app/examples/saas/analytics

# In a container the server must listen on every interface; the URLs (TENANT_DB_URL,
# MASTER_DB_URL, SHARED_DB_URL, NATS_URL) and JWT_SECRET come from the environment
# (docker-compose.yml sets them; the config's defaults point at 127.0.0.1).
ENV FRAISEQL_CONFIG=/app/examples/saas/fraiseql.toml \
    HOST=0.0.0.0 \
    PORT=8080

USER 10001:10001
EXPOSE 8080

# GET /health on $PORT with bash's /dev/tcp (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -Eq '^HTTP/1\\.[01] 200'"]

ENTRYPOINT ["fraiseql"]
CMD ["run"]
