// PostGraphile v5 over HTTP, for comparing fraiseql with it on the same data (see README.md).
//   DATABASE_URL  connection string of the tenant role (NOT the tables' owner: row-level security
//                 must apply), e.g. postgres://pgl_tenant@127.0.0.1:5432/pgl_scratch?sslmode=disable
//   PORT          HTTP port (default 5678); HOST (default 127.0.0.1)
//   POOL          size of the pg pool (default 16)
//   TENANTS       optional map of X-Tenant-ID values to tenant uuids: "acme_corp=<uuid>,other=<uuid>";
//                 without it the X-Tenant-ID header must be the tenant's uuid itself
//   SCHEMAS       PostgreSQL schemas to expose, comma-separated (default public)
// Each request's X-Tenant-ID becomes app.tenant_id for that request only: PostGraphile runs the
// request's statements in `begin; select set_config('app.tenant_id', <uuid>, true); ...; commit`
// (transaction-local). No header: nothing is set, and row-level security shows no rows.
// Production settings: the schema is introspected and built once at start-up (no watch mode),
// no GraphiQL (Ruru), no explain, no websockets, no per-request logging.
import { createServer } from "node:http";

// PostGraphile 5.1 (which postgraphile-plugin-connection-filter 4.0.1 needs) calls
// Promise.withResolvers, which Node 22 has and Node 20 does not: the same thing, for Node 20.
Promise.withResolvers ??= function withResolvers() {
  let resolve, reject;
  const promise = new this((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

const env = process.env;
// Grafast reads GRAPHILE_ENV when it is loaded: production unless the caller says otherwise
// (and no start-up notice about it), hence the dynamic imports below.
env.GRAPHILE_ENV ??= "production";
const { postgraphile } = await import("postgraphile");
const { PostGraphileAmberPreset } = await import("postgraphile/presets/amber");
const { PostGraphileConnectionFilterPreset } = await import("postgraphile-plugin-connection-filter");
const { makePgService } = await import("postgraphile/adaptors/pg");
const { grafserv } = await import("postgraphile/grafserv/node");
const { defaultMaskError } = await import("postgraphile/grafserv");
const { GraphQLError } = await import("postgraphile/graphql");

const connectionString = env.DATABASE_URL;
if (!connectionString) {
  console.error("DATABASE_URL is required (the tenant role's connection string)");
  process.exit(2);
}
const port = Number(env.PORT || 5678);
const host = env.HOST || "127.0.0.1";
const poolSize = Number(env.POOL || 16);
const schemas = (env.SCHEMAS || "public").split(",").map((s) => s.trim()).filter(Boolean);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const tenants = new Map();
for (const pair of (env.TENANTS || "").split(",").filter((p) => p.trim())) {
  const [key, id] = pair.split("=").map((s) => s.trim());
  if (!key || !UUID.test(id || "")) {
    console.error(`TENANTS: bad entry ${JSON.stringify(pair)} (want key=<uuid>)`);
    process.exit(2);
  }
  tenants.set(key, id);
}

/** The tenant uuid for a request's X-Tenant-ID header, or undefined (nothing is then set). */
function tenantId(header) {
  if (header == null || header === "") return undefined;
  const mapped = tenants.get(header);
  if (mapped) return mapped;
  if (tenants.size === 0 && UUID.test(header)) return header;
  // Unknown tenant: an id that matches no row, so row-level security shows nothing and
  // inserts fail their WITH CHECK (PostGraphile has no hook here to answer 403 cheaply).
  return "00000000-0000-0000-0000-000000000000";
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset, PostGraphileConnectionFilterPreset],
  pgServices: [
    makePgService({
      connectionString,
      schemas,
      poolConfig: { max: poolSize },
      // No LISTEN/NOTIFY client (no subscriptions here).
      pubsub: false,
      // Called once per request; the adaptor applies these with set_config(..., true) inside
      // the request's transaction.
      pgSettings(requestContext) {
        const header = requestContext.http?.getHeader("x-tenant-id")
          ?? requestContext.node?.req?.headers["x-tenant-id"];
        return { "app.tenant_id": tenantId(Array.isArray(header) ? header[0] : header) };
      },
    }),
  ],
  grafserv: {
    port,
    host,
    graphqlPath: "/graphql",
    graphiql: false,
    graphiqlOnGraphQLGET: false,
    graphqlOverGET: false,
    watch: false,
    websockets: false,
    // PostgreSQL's own errors (e.g. fn_create_project's "Organization not found", SQLSTATE P0002)
    // reach the client with their message and extensions.code, as fraiseql reports them; any
    // other error is masked (and logged) as PostGraphile does by default.
    maskError(error) {
      const pg = error.originalError;
      if (pg && typeof pg.code === "string" && /^[0-9A-Z]{5}$/.test(pg.code) && "severity" in pg) {
        return new GraphQLError(pg.message, error.nodes, error.source, error.positions, error.path, null, {
          code: pg.code,
        });
      }
      return defaultMaskError(error);
    },
  },
  grafast: {
    explain: false,
  },
};

const pgl = postgraphile(preset);
// Build the schema (introspection) before listening, so the first request does not pay for it
// and a broken database fails the start-up.
await pgl.getSchema();
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error(e);
  process.exit(1);
});
await serv.addTo(server);
server.listen(port, host, () => {
  console.log(`PostGraphile listening on http://${host}:${port}/graphql (pool ${poolSize})`);
});

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    // Stop at once: idle keep-alive connections closed, the pool ended; 5 s at most.
    setTimeout(() => process.exit(0), 5000).unref();
    server.close();
    server.closeAllConnections();
    await pgl.release();
    process.exit(0);
  });
}
