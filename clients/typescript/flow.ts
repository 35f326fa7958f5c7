// The admin and settings flows through the TypeScript client generated from
// the served document (openapi-typescript + openapi-fetch). Every response
// goes through `Checker` (check.ts) before the flow looks at it.
//
// Environment: TOKENGATE_URL, TOKENGATE_ADMIN_TOKEN, TOKENGATE_OPENAPI (the
// document's file), TOKENGATE_SETTINGS_HEADER (SETTINGS_AUTH_HEADER), and
// TOKENGATE_FLOW_PREFIX (names this run's plans and accounts).

import createClient, { type Middleware } from "openapi-fetch";
import { Checker } from "./check.js";
import type { paths } from "./schema.js";

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
}

function expect(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

function step(name: string): void {
  console.log(`- ${name}`);
}

const baseUrl = env("TOKENGATE_URL");
const checker = new Checker(env("TOKENGATE_OPENAPI"));
const prefix = env("TOKENGATE_FLOW_PREFIX");

const checkEveryResponse: Middleware = {
  async onResponse({ request, response, schemaPath }) {
    await checker.check(request.method, schemaPath, response);
    return undefined;
  },
};

function client(headers: Record<string, string>) {
  const c = createClient<paths>({ baseUrl, headers });
  c.use(checkEveryResponse);
  return c;
}

const admin = client({ Authorization: `Bearer ${env("TOKENGATE_ADMIN_TOKEN")}` });

const tinyPlan = `${prefix}-tiny`;
const cappedPlan = `${prefix}-capped`;
const account = `acct_${prefix}_admin`;
const other = `acct_${prefix}_other`;
const capped = `acct_${prefix}_cap`;
const settingsAccount = `acct_${prefix}_settings`;

async function adminFlow(): Promise<string> {
  step("plans: list, and two of our own (3 requests an hour; at most 2 tokens)");
  const plans = await admin.GET("/admin/plans");
  expect(plans.response.status === 200 && plans.data !== undefined, "plans listed");
  expect(plans.data.data.some((plan) => plan.name === "pro"), "pro is a plan");
  const tiny = await admin.PUT("/admin/plans/{plan}", {
    params: { path: { plan: tinyPlan } },
    body: { api_access: true, requests_per_hour: 3 },
  });
  expect(tiny.data?.data.requests_per_hour === 3, "tiny plan stored");
  const cap = await admin.PUT("/admin/plans/{plan}", {
    params: { path: { plan: cappedPlan } },
    body: { api_access: true, requests_per_hour: 100, max_tokens: 2 },
  });
  expect(cap.data?.data.max_tokens === 2, "capped plan stored");

  step("accounts: create, read, and an unknown one");
  for (const [id, plan] of [[account, tinyPlan], [other, "pro"], [capped, cappedPlan], [settingsAccount, cappedPlan]]) {
    const put = await admin.PUT("/admin/accounts/{account_id}", {
      params: { path: { account_id: id! } },
      body: { plan: plan! },
    });
    expect(put.data?.data.plan === plan, `${id} on ${plan}`);
  }
  const read = await admin.GET("/admin/accounts/{account_id}", { params: { path: { account_id: account } } });
  expect(read.data?.data.id === account, "account read");
  const unknown = await admin.GET("/admin/accounts/{account_id}", {
    params: { path: { account_id: `acct_${prefix}_nobody` } },
  });
  expect(unknown.response.status === 404 && unknown.error?.success === false, "unknown account is 404");

  step("a token with one scope (and one for another account)");
  const scopes = await admin.GET("/admin/scopes");
  expect(scopes.data?.data.includes("tests:read") === true, "tests:read is a scope");
  const elsewhere = await admin.POST("/admin/accounts/{account_id}/tokens", {
    params: { path: { account_id: other } },
    body: { name: "other" },
  });
  expect(elsewhere.response.status === 201, "other account's token");
  const created = await admin.POST("/admin/accounts/{account_id}/tokens", {
    params: { path: { account_id: account } },
    body: { name: "CI", scopes: ["tests:read"] },
  });
  expect(created.response.status === 201 && created.data !== undefined, "token created");
  const { id, token } = created.data.data;
  expect(created.data.data.scopes.join() === "tests:read", "scopes kept");

  step("/api/v1: 200, 403 for the missing scope, 200, then 429");
  const api = client({ Authorization: `Bearer ${token}` });
  const first = await api.GET("/api/v1/external_tests");
  expect(first.response.status === 200 && first.data?.data.length === 2, "200 with the tests");
  expect(first.response.headers.get("x-ratelimit-limit") === "3", "limit 3");
  expect(first.response.headers.get("x-ratelimit-remaining") === "2", "2 left");
  const scope = await api.GET("/api/v1/external_tests/providers");
  expect(scope.response.status === 403, "403 without providers:read");
  expect(scope.error?.error === "Token is missing the required scope: providers:read", "the scope 403's body");
  expect(scope.response.headers.get("x-ratelimit-remaining") === "1", "the 403 was counted");
  const last = await api.GET("/api/v1/external_tests");
  expect(last.response.status === 200 && last.response.headers.get("x-ratelimit-remaining") === "0", "the last one");
  const limited = await api.GET("/api/v1/external_tests");
  expect(limited.response.status === 429, "429 over the limit");
  const wait = limited.response.headers.get("retry-after");
  expect(limited.error?.error === `Rate limit exceeded. Try again in ${wait} seconds.`, "the 429's body names Retry-After");
  const nobody = await client({ Authorization: "Bearer iit_not-a-token" }).GET("/api/v1/external_tests");
  expect(nobody.response.status === 401 && nobody.error?.error === "Invalid or missing API token", "401");

  step("usage: the hours asked for");
  const usage = await admin.GET("/admin/tokens/{token_id}/usage", {
    params: { path: { token_id: id }, query: { hours: 3 } },
  });
  expect(usage.data?.data.hours.length === 3, `3 hours, got ${usage.data?.data.hours.length}`);
  const day = await admin.GET("/admin/tokens/{token_id}/usage", { params: { path: { token_id: id } } });
  expect(day.data?.data.hours.length === 24, "24 hours by default");

  step("rotate with a body (grace), then without one (at once)");
  const graceful = await admin.POST("/admin/tokens/{token_id}/rotate", {
    params: { path: { token_id: id } },
    body: { grace_seconds: 60 },
  });
  expect(graceful.response.status === 201 && graceful.data?.data.replaces?.id === id, "rotated with grace");
  expect(graceful.data.data.replaces?.revoked_at == null, "the old one still works in its grace period");
  const successor = graceful.data.data.id;
  const atOnce = await admin.POST("/admin/tokens/{token_id}/rotate", { params: { path: { token_id: successor } } });
  expect(atOnce.response.status === 201 && atOnce.data?.data.replaces?.id === successor, "rotated without a body");
  expect(typeof atOnce.data.data.replaces?.revoked_at === "string", "no body: no grace");

  step("revoke");
  const revoked = await admin.DELETE("/admin/tokens/{token_id}", {
    params: { path: { token_id: atOnce.data.data.id } },
  });
  expect(revoked.response.status === 200 && typeof revoked.data?.data.revoked_at === "string", "revoked");
  const gone = await client({ Authorization: `Bearer ${atOnce.data.data.token}` }).GET("/api/v1/external_tests");
  expect(gone.response.status === 401, "a revoked token is 401");

  step("audit: filters and limit really filter");
  const everything = await admin.GET("/admin/audit", { params: { query: { limit: 500 } } });
  const all = everything.data?.data.events ?? [];
  expect(all.some((event) => event.account_id === other), "the log holds another account's events");
  const page = await admin.GET("/admin/audit", { params: { query: { account_id: account, limit: 2 } } });
  const events = page.data?.data.events ?? [];
  expect(events.length === 2, `limit 2, got ${events.length}`);
  expect(events.every((event) => event.account_id === account), "only the account's events");
  const next = page.data?.data.next;
  expect(typeof next === "string", "a next page");
  const older = await admin.GET("/admin/audit", {
    params: { query: { account_id: account, limit: 2, before: next! } },
  });
  const olderEvents = older.data?.data.events ?? [];
  expect(olderEvents.length >= 1 && olderEvents.every((e) => e.account_id === account && e.id < events[1]!.id), "older page");
  const action = await admin.GET("/admin/audit", { params: { query: { action: "token.created", limit: 500 } } });
  const actions = action.data?.data.events ?? [];
  expect(actions.length >= 2 && actions.every((e) => e.action === "token.created"), "only token.created");
  const byToken = await admin.GET("/admin/audit", { params: { query: { token_id: id } } });
  const tokenEvents = byToken.data?.data.events ?? [];
  expect(tokenEvents.length >= 1 && tokenEvents.every((e) => e.token_id === id), "only the token's events");

  step("the token cap: 409 beyond max_tokens");
  for (const name of ["one", "two"]) {
    const ok = await admin.POST("/admin/accounts/{account_id}/tokens", {
      params: { path: { account_id: capped } },
      body: { name },
    });
    expect(ok.response.status === 201, `token ${name} under the cap`);
  }
  const beyond = await admin.POST("/admin/accounts/{account_id}/tokens", {
    params: { path: { account_id: capped } },
    body: { name: "three" },
  });
  expect(beyond.response.status === 409 && beyond.error?.error.includes("the most its plan") === true, "409 at the cap");
  return id;
}

async function settingsFlow(adminTokenId: string): Promise<void> {
  const settings = client({ [env("TOKENGATE_SETTINGS_HEADER")]: settingsAccount });

  step("settings: the account and its (empty) list");
  const me = await settings.GET("/settings/api-tokens/account");
  expect(me.data?.data.account_id === settingsAccount && me.data.data.max_tokens === 2, "the signed-in account");
  const empty = await settings.GET("/settings/api-tokens/tokens");
  expect(empty.data?.data.length === 0, "no tokens yet");

  step("settings: create, list, rotate (no body), revoke (no body, no Content-Type)");
  const created = await settings.POST("/settings/api-tokens/tokens", {
    body: { name: "laptop", expires_in_days: 30, scopes: ["tests:read"] },
  });
  expect(created.response.status === 201 && created.data !== undefined, "created");
  const id = created.data.data.id;
  const listed = await settings.GET("/settings/api-tokens/tokens");
  expect(listed.data?.data.length === 1 && listed.data.data[0]!.id === id, "listed");
  const rotated = await settings.POST("/settings/api-tokens/tokens/{id}/rotate", { params: { path: { id } } });
  expect(rotated.response.status === 201 && rotated.data?.data.replaces?.id === id, "rotated");
  const successor = rotated.data.data.id;
  const revoked = await settings.DELETE("/settings/api-tokens/tokens/{id}", { params: { path: { id: successor } } });
  expect(revoked.response.status === 200 && typeof revoked.data?.data.revoked_at === "string", "revoked");
  const notMine = await settings.DELETE("/settings/api-tokens/tokens/{id}", {
    params: { path: { id: adminTokenId } },
  });
  expect(notMine.response.status === 404, "another account's token is 404");

  step("settings: the token cap's 409");
  for (const name of ["one", "two"]) {
    const ok = await settings.POST("/settings/api-tokens/tokens", { body: { name } });
    expect(ok.response.status === 201, `token ${name} under the cap`);
  }
  const beyond = await settings.POST("/settings/api-tokens/tokens", { body: { name: "three" } });
  expect(beyond.response.status === 409, "409 at the cap");

  step("settings: the security log, limit and next page");
  const log = await settings.GET("/settings/api-tokens/audit", { params: { query: { limit: 2 } } });
  const events = log.data?.data.events ?? [];
  expect(events.length === 2 && events.every((e) => e.account_id === settingsAccount), "2 of the account's events");
  const next = log.data?.data.next;
  expect(typeof next === "string", "a next page");
  const older = await settings.GET("/settings/api-tokens/audit", { params: { query: { limit: 2, before: next! } } });
  const olderEvents = older.data?.data.events ?? [];
  expect(olderEvents.length >= 1 && olderEvents.every((e) => e.account_id === settingsAccount), "older page");
}

const adminTokenId = await adminFlow();
await settingsFlow(adminTokenId);
console.log(`flow passed: ${checker.checked} responses checked against the document`);
