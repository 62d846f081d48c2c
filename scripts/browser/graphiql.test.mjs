// GraphiQL as a newcomer meets it: the development link that `fraiseql run` printed, opened in
// headless Chromium (Debian's `chromium`, driven by playwright-core) with every request that
// would leave the machine blocked and recorded. The page must fill Authorization and the tenant
// header from the link's fragment, list `Organization` in the docs explorer, answer
// `{ organizations { name } }` from the editor's run button, show a project created while
// `subscription { projectCreated { name } }` runs (its WebSocket), and keep working after a
// reload.
//
//   GRAPHIQL_LINK   the link (http://localhost:PORT/graphql#tenant=...&token=...)
//   BROWSER_TOOLS   the folder where playwright-core is installed (target/browser-tools)
//   CHROMIUM        the browser (default: /usr/bin/chromium)
//   EXPECT_DATA     text the answer must contain (default: "Acme Labs", from scripts/setup.sh)
// scripts/browser/run.sh sets them up and runs this with `node --test`.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';

const LINK = process.env.GRAPHIQL_LINK;
const TOOLS = process.env.BROWSER_TOOLS;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const EXPECT_DATA = process.env.EXPECT_DATA || 'Acme Labs';
const TIMEOUT = 30_000;
if (!LINK || !TOOLS) {
  throw new Error('set GRAPHIQL_LINK and BROWSER_TOOLS (scripts/browser/run.sh does)');
}
const { chromium } = createRequire(path.join(TOOLS, 'package.json'))('playwright-core');

const link = new URL(LINK);
const fragment = new URLSearchParams(link.hash.slice(1));
const TENANT = fragment.get('tenant');
const TOKEN = fragment.get('token');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
/** Whether loading `url` stays on this machine (loopback, or no network at all). */
function staysHere(url) {
  const u = new URL(url);
  if (['data:', 'blob:', 'about:', 'chrome-error:'].includes(u.protocol)) return true;
  return LOOPBACK.has(u.hostname);
}

let browser;
let page;
const requests = []; // every request the page made
const blocked = []; // those that would have left the machine

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI: no sandbox. Everything not loopback also goes to a closed proxy port, so not
    // even the browser's own background traffic leaves the machine.
    args: [
      '--no-sandbox',
      '--proxy-server=http://127.0.0.1:9',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--no-pings',
    ],
  });
  const context = await browser.newContext({ serviceWorkers: 'block' });
  context.setDefaultTimeout(TIMEOUT);
  context.on('request', (r) => requests.push(`${r.method()} ${r.url()}`));
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (staysHere(url)) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  if (typeof context.routeWebSocket === 'function') {
    await context.routeWebSocket(/.*/, (ws) => {
      if (staysHere(ws.url())) return ws.connectToServer();
      blocked.push(ws.url());
      return ws.close();
    });
  }
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`  [browser console] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
});

after(async () => {
  await browser?.close();
});

/** The text of every CodeMirror editor on the page (query, variables, headers, result). */
const editors = () =>
  page.evaluate(() =>
    [...document.querySelectorAll('.CodeMirror')].map((el) => el.CodeMirror.getValue()),
  );

async function headersEditor() {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('.CodeMirror')].some((el) =>
        el.CodeMirror.getValue().includes('Authorization'),
      ),
    null,
    { timeout: TIMEOUT },
  );
  return (await editors()).find((t) => t.includes('Authorization'));
}

async function runQuery(query) {
  await page.evaluate((q) => {
    document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
  }, query);
  await page.click('.graphiql-execute-button');
  const handle = await page.waitForFunction(
    () => {
      const el = document.querySelector('.result-window .CodeMirror');
      const text = el && el.CodeMirror.getValue();
      return text && text.trim().startsWith('{') ? text : null;
    },
    null,
    { timeout: TIMEOUT },
  );
  return JSON.parse(await handle.jsonValue());
}

test('GraphiQL from the development link', async (t) => {
  assert.ok(TENANT && TOKEN, `the link carries a tenant and a token: ${link.origin}${link.pathname}#...`);
  assert.ok(LOOPBACK.has(link.hostname), `the link points at this machine: ${link.host}`);

  await t.test('the page loads, and the credentials leave the address bar', async () => {
    await page.goto(LINK, { waitUntil: 'load' });
    await page.waitForSelector('.graphiql-container');
    assert.equal(new URL(page.url()).hash, '', `fragment dropped: ${page.url()}`);
  });

  await t.test('the headers editor holds Authorization and X-Tenant-ID from the fragment', async () => {
    const headers = JSON.parse(await headersEditor());
    assert.equal(headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(headers['X-Tenant-ID'], TENANT);
    const [session, local] = await page.evaluate(() => [
      JSON.stringify(sessionStorage),
      JSON.stringify(localStorage),
    ]);
    assert.ok(session.includes(TOKEN), 'the token is kept in sessionStorage');
    assert.ok(!local.includes(TOKEN), 'and never in localStorage');
  });

  await t.test('the docs explorer lists Organization', async () => {
    await page.click('.graphiql-sidebar button[aria-label$="Documentation Explorer"]');
    const docs = page.locator('section.graphiql-doc-explorer');
    await docs.getByText('All Schema Types').waitFor();
    await docs.getByText('Organization', { exact: true }).first().waitFor();
    console.log(`  docs explorer: ${(await docs.innerText()).replace(/\s+/g, ' ').slice(0, 160)}…`);
  });

  await t.test('{ organizations { name } } from the editor and the run button returns data', async () => {
    const answer = await runQuery('{ organizations { name } }');
    console.log(`  answer: ${JSON.stringify(answer).slice(0, 200)}`);
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    const names = answer.data.organizations.map((o) => o.name);
    assert.ok(names.includes(EXPECT_DATA), `${EXPECT_DATA} in ${JSON.stringify(names)}`);
  });

  await t.test('a subscription in the editor shows a project created meanwhile (WebSocket)', async () => {
    const headers = {
      'Content-Type': 'application/json',
      Authorization: `Bearer ${TOKEN}`,
      'X-Tenant-ID': TENANT,
    };
    const gql = async (query, variables = {}) => {
      const r = await fetch(`${link.origin}/graphql`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ query, variables }),
      });
      return r.json();
    };
    const orgs = await gql('{ organizations(limit: 1) { id } }');
    const org = orgs.data.organizations[0].id;
    await page.evaluate((q) => {
      document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
    }, 'subscription { projectCreated { name } }');
    await page.click('.graphiql-execute-button');
    // The page subscribes over its WebSocket; projects created from here until one shows up
    // in the result pane (the first may be created before the subscription is live).
    const seen = () =>
      page.evaluate(() => {
        const el = document.querySelector('.result-window .CodeMirror');
        return el ? el.CodeMirror.getValue() : '';
      });
    const deadline = Date.now() + TIMEOUT;
    let shown = '';
    for (let i = 0; !shown.includes('Watched in GraphiQL'); i += 1) {
      assert.ok(Date.now() < deadline, `no project in the result pane: ${shown}`);
      if (shown.includes('OPERATION_NOT_SUPPORTED')) {
        // GraphiQL parses the editor's text with a delay: clicked right after setValue, it
        // took the new text for the previous query and POSTed it. Run it again, parsed now.
        await page.click('.graphiql-execute-button');
      }
      await gql('mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }', {
        o: org,
        n: `Watched in GraphiQL ${Date.now()}-${i}`,
      });
      await page.waitForTimeout(300);
      shown = await seen();
    }
    console.log(`  subscription result: ${shown.replace(/\s+/g, ' ').slice(0, 160)}`);
    const result = JSON.parse(shown);
    assert.match(result.data.projectCreated.name, /^Watched in GraphiQL/);
    assert.equal(typeof result.extensions.position, 'string');
    await page.click('.graphiql-execute-button'); // stop
  });

  await t.test('a reload keeps the headers (sessionStorage) and still answers', async () => {
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('.graphiql-container');
    const headers = JSON.parse(await headersEditor());
    assert.equal(headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(headers['X-Tenant-ID'], TENANT);
    const answer = await runQuery('{ organizations(limit: 1) { name } }');
    assert.equal(answer.errors, undefined, JSON.stringify(answer.errors));
    assert.equal(answer.data.organizations.length, 1);
  });

  await t.test('no request left the machine', () => {
    console.log(`  ${requests.length} requests, all to ${link.host}:`);
    for (const r of [...new Set(requests)]) console.log(`    ${r}`);
    assert.deepEqual(blocked, [], `requests leaving 127.0.0.1/localhost: ${blocked.join(', ')}`);
    const elsewhere = requests.filter((r) => !staysHere(r.split(' ')[1]));
    assert.deepEqual(elsewhere, []);
  });
});
