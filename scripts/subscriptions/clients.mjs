// The npm clients, unchanged, against a running fraiseql: `graphql-ws` 6 (WebSocket,
// graphql-transport-ws) and `graphql-sse` 2 (Server-Sent Events, distinct connections), each
// subscribed to `projectCreated` for two tenants. Projects created in both tenants must reach
// each tenant's subscribers, and only theirs, once each, with a position; a graphql-ws client
// that comes back with its last position (`extensions.after`) gets what it missed first.
//
//   PORT        the server's port
//   TOKEN_A     a token for tenant A (acme_corp), TOKEN_B for tenant B (global_corp)
// scripts/subscriptions/run.sh sets them up and runs this with `node --test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';

const { PORT, TOKEN_A, TOKEN_B } = process.env;
if (!PORT || !TOKEN_A || !TOKEN_B) throw new Error('set PORT, TOKEN_A and TOKEN_B (run.sh does)');
const HTTP = `http://127.0.0.1:${PORT}/graphql`;
const WS = `ws://127.0.0.1:${PORT}/graphql`;
const TIMEOUT = 20_000;
// run.sh passes the run's id, and removes what was created under it when the run ends.
const RUN = process.env.RUN ?? `${Date.now()}`;
const CREATED = 'subscription { projectCreated { id name } }';

async function gql(token, query, variables = {}) {
  const r = await fetch(HTTP, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

/** Waits (with a deadline) until `check()` is true. */
async function until(what, check) {
  const deadline = Date.now() + TIMEOUT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A graphql-ws subscriber; live once two keep-alive pongs came back after its subscribe (the
 * server registers a subscribe before it answers a later ping). */
function wsSubscriber(token, extensions) {
  let pongs = 0;
  const client = createWsClient({
    url: WS,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    keepAlive: 100,
    retryAttempts: 0,
    on: { pong: () => { pongs += 1; } },
  });
  const s = { events: [], errors: [], client };
  let at = -1;
  s.dispose = client.subscribe(
    { query: CREATED, extensions },
    {
      next: (r) => s.events.push(r),
      error: (e) => s.errors.push(e),
      complete: () => {},
    },
  );
  client.on('connected', () => { at = pongs; });
  s.live = () => until('the WebSocket subscription', () => at >= 0 && pongs >= at + 2);
  return s;
}

/** A graphql-sse subscriber (distinct connections); live once its stream's response arrived. */
function sseSubscriber(token) {
  const client = createSseClient({ url: HTTP, headers: { Authorization: `Bearer ${token}` }, retryAttempts: 0 });
  const s = { events: [], errors: [], client };
  let connected = false;
  s.dispose = client.subscribe(
    { query: CREATED },
    {
      next: (r) => s.events.push(r),
      error: (e) => s.errors.push(e),
      complete: () => {},
    },
    { connected: () => { connected = true; } },
  );
  s.live = () => until('the SSE subscription', () => connected);
  return s;
}

const names = (s) => s.events.map((e) => e.data.projectCreated.name);

test('graphql-ws and graphql-sse, two tenants, each gets only its own', async () => {
  const a = { ws: wsSubscriber(TOKEN_A), sse: sseSubscriber(TOKEN_A) };
  const b = { ws: wsSubscriber(TOKEN_B), sse: sseSubscriber(TOKEN_B) };
  for (const s of [a.ws, a.sse, b.ws, b.sse]) await s.live();
  const orgA = (await gql(TOKEN_A, 'mutation($n: String!) { createOrganization(name: $n) { id } }', { n: `Subs A ${RUN}` })).createOrganization.id;
  const orgB = (await gql(TOKEN_B, 'mutation($n: String!) { createOrganization(name: $n) { id } }', { n: `Subs B ${RUN}` })).createOrganization.id;
  const create = (token, org, n) =>
    gql(token, 'mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }', { o: org, n });
  await create(TOKEN_A, orgA, `A1 ${RUN}`);
  await create(TOKEN_B, orgB, `B1 ${RUN}`);
  await create(TOKEN_A, orgA, `A2 ${RUN}`);
  await create(TOKEN_B, orgB, `B2 ${RUN}`);
  for (const s of [a.ws, a.sse, b.ws, b.sse]) await until('two events', () => s.events.length >= 2);
  // A moment for anything extra to arrive would be a sleep: instead one more event each, which
  // must be the next one.
  await create(TOKEN_A, orgA, `A3 ${RUN}`);
  await create(TOKEN_B, orgB, `B3 ${RUN}`);
  for (const s of [a.ws, a.sse, b.ws, b.sse]) await until('three events', () => s.events.length >= 3);
  const want = (t) => [1, 2, 3].map((i) => `${t}${i} ${RUN}`);
  assert.deepEqual(names(a.ws), want('A'), 'tenant A over graphql-ws');
  assert.deepEqual(names(a.sse), want('A'), 'tenant A over graphql-sse');
  assert.deepEqual(names(b.ws), want('B'), 'tenant B over graphql-ws');
  assert.deepEqual(names(b.sse), want('B'), 'tenant B over graphql-sse');
  for (const s of [a.ws, a.sse, b.ws, b.sse]) {
    assert.deepEqual(s.errors, []);
    for (const e of s.events) assert.equal(typeof e.extensions.position, 'string');
  }
  console.log(`  A: ${names(a.ws).join(', ')} | B: ${names(b.sse).join(', ')}`);

  // Resume: the WebSocket client goes away, two projects are created, and a new client that
  // passes the last position gets them first, then the live ones.
  const last = a.ws.events.at(-1).extensions.position;
  a.ws.dispose();
  await a.ws.client.dispose();
  await create(TOKEN_A, orgA, `A4 ${RUN}`);
  await create(TOKEN_A, orgA, `A5 ${RUN}`);
  const again = wsSubscriber(TOKEN_A, { after: last });
  await again.live();
  await create(TOKEN_A, orgA, `A6 ${RUN}`);
  await until('the missed and the live events', () => again.events.length >= 3);
  assert.deepEqual(names(again), [4, 5, 6].map((i) => `A${i} ${RUN}`), 'missed ones first, once');
  console.log(`  resumed after ${last}: ${names(again).join(', ')}`);

  for (const s of [a.sse, b.ws, b.sse, again]) {
    s.dispose();
    if (s.client.dispose) await s.client.dispose();
  }
});
