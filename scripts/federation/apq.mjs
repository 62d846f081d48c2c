// Apollo Client's automatic persisted queries against a fraiseql server, as an app runs them:
// ApolloClient + createPersistedQueryLink (sha256 from node:crypto) + HttpLink, every request
// recorded off the wire (method, URL, body, status).
//   node apq.mjs <graphql url> <bearer token> <tenant key> [get]
// Runs one query twice (different variables, network-only) and prints one JSON line:
// {"results": [data, data], "requests": [{method, url, body, status, response}, ...]}.
// `get`: useGETForHashedQueries (the hash-only requests go as GET).
import { createHash } from "node:crypto";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, token, tenant, mode] = process.argv.slice(2);
const requests = [];
async function recordingFetch(uri, options) {
  const entry = { method: options?.method ?? "GET", url: String(uri), body: options?.body ?? null };
  requests.push(entry);
  const response = await fetch(uri, options);
  entry.status = response.status;
  entry.response = await response.clone().text();
  return response;
}

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: mode === "get" }).concat(
  new HttpLink({
    uri: url,
    fetch: recordingFetch,
    headers: { authorization: `Bearer ${token}`, "x-tenant-id": tenant },
  }),
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });
const query = gql`
  query Orgs($limit: Int) {
    organizations(limit: $limit) {
      name
    }
  }
`;
const results = [];
for (const limit of [2, 1]) {
  const r = await client.query({ query, variables: { limit }, fetchPolicy: "network-only" });
  results.push(r.data);
}
console.log(JSON.stringify({ results, requests }));
