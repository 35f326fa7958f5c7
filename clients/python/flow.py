"""The admin and settings flows through the Python client generated from the
served document (openapi-python-client). Every response goes through
`Checker.hook` (check.py) before the flow looks at it.

Environment: TOKENGATE_URL, TOKENGATE_ADMIN_TOKEN, TOKENGATE_OPENAPI (the
document's file), TOKENGATE_SETTINGS_HEADER (SETTINGS_AUTH_HEADER), and
TOKENGATE_FLOW_PREFIX (names this run's plans and accounts).
"""

import os
import sys

from check import Checker
from tokengate_client import AuthenticatedClient
from tokengate_client.api.accounts import admin_get_account, admin_put_account
from tokengate_client.api.audit import admin_audit
from tokengate_client.api.demo_api import api_list_external_tests, api_list_providers
from tokengate_client.api.plans import admin_list_plans, admin_put_plan
from tokengate_client.api.settings import (
    settings_create_token,
    settings_get_account,
    settings_list_tokens,
    settings_revoke_token,
    settings_rotate_token,
    settings_security_log,
)
from tokengate_client.api.tokens import (
    admin_create_token,
    admin_list_scopes,
    admin_revoke_token,
    admin_rotate_token,
    admin_token_usage,
)
from tokengate_client.models import (
    AccountBody,
    CreateTokenBody,
    ErrorEnvelope,
    PlanBody,
    RotateBody,
    SettingsCreateBody,
)


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"{name} is not set")
    return value


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"expectation failed: {message}")


def step(name: str) -> None:
    print(f"- {name}", flush=True)


BASE_URL = env("TOKENGATE_URL")
CHECKER = Checker(env("TOKENGATE_OPENAPI"))
PREFIX = env("TOKENGATE_FLOW_PREFIX")

TINY_PLAN = f"{PREFIX}-tiny"
CAPPED_PLAN = f"{PREFIX}-capped"
ACCOUNT = f"acct_{PREFIX}_admin"
OTHER = f"acct_{PREFIX}_other"
CAPPED = f"acct_{PREFIX}_cap"
SETTINGS_ACCOUNT = f"acct_{PREFIX}_settings"


def client(token: str, prefix: str = "Bearer", header: str = "Authorization") -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=BASE_URL,
        token=token,
        prefix=prefix,
        auth_header_name=header,
        httpx_args={"event_hooks": {"response": [CHECKER.hook]}},
    )


def error_of(response) -> str:
    expect(isinstance(response.parsed, ErrorEnvelope), f"an error envelope: {response.content!r}")
    return response.parsed.error


def admin_flow(admin: AuthenticatedClient) -> str:
    step("plans: list, and two of our own (3 requests an hour; at most 2 tokens)")
    plans = admin_list_plans.sync_detailed(client=admin)
    expect(plans.status_code == 200 and any(p.name == "pro" for p in plans.parsed.data), "pro is a plan")
    tiny = admin_put_plan.sync_detailed(TINY_PLAN, client=admin, body=PlanBody(api_access=True, requests_per_hour=3))
    expect(tiny.status_code == 200 and tiny.parsed.data.requests_per_hour == 3, "tiny plan stored")
    capped = admin_put_plan.sync_detailed(
        CAPPED_PLAN, client=admin, body=PlanBody(api_access=True, requests_per_hour=100, max_tokens=2)
    )
    expect(capped.status_code == 200 and capped.parsed.data.max_tokens == 2, "capped plan stored")

    step("accounts: create, read, and an unknown one")
    for account, plan in [(ACCOUNT, TINY_PLAN), (OTHER, "pro"), (CAPPED, CAPPED_PLAN), (SETTINGS_ACCOUNT, CAPPED_PLAN)]:
        put = admin_put_account.sync_detailed(account, client=admin, body=AccountBody(plan=plan))
        expect(put.status_code == 200 and put.parsed.data.plan == plan, f"{account} on {plan}")
    read = admin_get_account.sync_detailed(ACCOUNT, client=admin)
    expect(read.status_code == 200 and read.parsed.data.id == ACCOUNT, "account read")
    unknown = admin_get_account.sync_detailed(f"acct_{PREFIX}_nobody", client=admin)
    expect(unknown.status_code == 404 and "not found" in error_of(unknown), "unknown account is 404")

    step("a token with one scope (and one for another account)")
    scopes = admin_list_scopes.sync_detailed(client=admin)
    expect("tests:read" in scopes.parsed.data, "tests:read is a scope")
    other = admin_create_token.sync_detailed(OTHER, client=admin, body=CreateTokenBody(name="other"))
    expect(other.status_code == 201, "other account's token")
    created = admin_create_token.sync_detailed(
        ACCOUNT, client=admin, body=CreateTokenBody(name="CI", scopes=["tests:read"])
    )
    expect(created.status_code == 201 and created.parsed.data.scopes == ["tests:read"], "token created")
    token_id, token = created.parsed.data.id, created.parsed.data.token

    step("/api/v1: 200, 403 for the missing scope, 200, then 429")
    api = client(token)
    first = api_list_external_tests.sync_detailed(client=api)
    expect(first.status_code == 200 and len(first.parsed.data) == 2, "200 with the tests")
    expect(first.headers["x-ratelimit-limit"] == "3" and first.headers["x-ratelimit-remaining"] == "2", "2 left")
    scope = api_list_providers.sync_detailed(client=api)
    expect(scope.status_code == 403, "403 without providers:read")
    expect(error_of(scope) == "Token is missing the required scope: providers:read", "the scope 403's body")
    expect(scope.headers["x-ratelimit-remaining"] == "1", "the 403 was counted")
    last = api_list_external_tests.sync_detailed(client=api)
    expect(last.status_code == 200 and last.headers["x-ratelimit-remaining"] == "0", "the last one")
    limited = api_list_external_tests.sync_detailed(client=api)
    expect(limited.status_code == 429, "429 over the limit")
    wait = limited.headers["retry-after"]
    expect(error_of(limited) == f"Rate limit exceeded. Try again in {wait} seconds.", "the 429's body names Retry-After")
    nobody = api_list_external_tests.sync_detailed(client=client("iit_not-a-token"))
    expect(nobody.status_code == 401 and error_of(nobody) == "Invalid or missing API token", "401")

    step("usage: the hours asked for")
    usage = admin_token_usage.sync_detailed(token_id, client=admin, hours=3)
    expect(usage.status_code == 200 and len(usage.parsed.data.hours) == 3, "3 hours")
    day = admin_token_usage.sync_detailed(token_id, client=admin)
    expect(len(day.parsed.data.hours) == 24, "24 hours by default")

    step("rotate with a body (grace), then without one (at once)")
    graceful = admin_rotate_token.sync_detailed(token_id, client=admin, body=RotateBody(grace_seconds=60))
    expect(graceful.status_code == 201 and graceful.parsed.data.replaces.id == token_id, "rotated with grace")
    expect(not graceful.parsed.data.replaces.revoked_at, "the old one still works in its grace period")
    successor = graceful.parsed.data.id
    at_once = admin_rotate_token.sync_detailed(successor, client=admin)
    expect(at_once.status_code == 201 and at_once.parsed.data.replaces.id == successor, "rotated without a body")
    expect(bool(at_once.parsed.data.replaces.revoked_at), "no body: no grace")

    step("revoke")
    revoked = admin_revoke_token.sync_detailed(at_once.parsed.data.id, client=admin)
    expect(revoked.status_code == 200 and bool(revoked.parsed.data.revoked_at), "revoked")
    gone = api_list_external_tests.sync_detailed(client=client(at_once.parsed.data.token))
    expect(gone.status_code == 401, "a revoked token is 401")

    step("audit: filters and limit really filter")
    everything = admin_audit.sync_detailed(client=admin, limit=500)
    expect(any(e.account_id == OTHER for e in everything.parsed.data.events), "the log holds another account's events")
    page = admin_audit.sync_detailed(client=admin, account_id=ACCOUNT, limit=2)
    events = page.parsed.data.events
    expect(len(events) == 2 and all(e.account_id == ACCOUNT for e in events), "2 of the account's events")
    expect(isinstance(page.parsed.data.next_, str), "a next page")
    older = admin_audit.sync_detailed(client=admin, account_id=ACCOUNT, limit=2, before=page.parsed.data.next_)
    older_events = older.parsed.data.events
    expect(
        older_events and all(e.account_id == ACCOUNT and e.id < events[1].id for e in older_events), "older page"
    )
    actions = admin_audit.sync_detailed(client=admin, action="token.created", limit=500).parsed.data.events
    expect(len(actions) >= 2 and all(e.action == "token.created" for e in actions), "only token.created")
    by_token = admin_audit.sync_detailed(client=admin, token_id=token_id).parsed.data.events
    expect(by_token and all(e.token_id == token_id for e in by_token), "only the token's events")

    step("the token cap: 409 beyond max_tokens")
    for name in ["one", "two"]:
        ok = admin_create_token.sync_detailed(CAPPED, client=admin, body=CreateTokenBody(name=name))
        expect(ok.status_code == 201, f"token {name} under the cap")
    beyond = admin_create_token.sync_detailed(CAPPED, client=admin, body=CreateTokenBody(name="three"))
    expect(beyond.status_code == 409 and "the most its plan" in error_of(beyond), "409 at the cap")
    return token_id


def settings_flow(admin_token_id: str) -> None:
    settings = client(SETTINGS_ACCOUNT, prefix="", header=env("TOKENGATE_SETTINGS_HEADER"))

    step("settings: the account and its (empty) list")
    me = settings_get_account.sync_detailed(client=settings)
    expect(me.status_code == 200 and me.parsed.data.account_id == SETTINGS_ACCOUNT, "the signed-in account")
    expect(me.parsed.data.max_tokens == 2, "its plan's cap")
    empty = settings_list_tokens.sync_detailed(client=settings)
    expect(empty.status_code == 200 and empty.parsed.data == [], "no tokens yet")

    step("settings: create, list, rotate (no body), revoke (no body)")
    created = settings_create_token.sync_detailed(
        client=settings, body=SettingsCreateBody(name="laptop", expires_in_days=30, scopes=["tests:read"])
    )
    expect(created.status_code == 201, "created")
    token_id = created.parsed.data.id
    listed = settings_list_tokens.sync_detailed(client=settings)
    expect([t.id for t in listed.parsed.data] == [token_id], "listed")
    rotated = settings_rotate_token.sync_detailed(token_id, client=settings)
    expect(rotated.status_code == 201 and rotated.parsed.data.replaces.id == token_id, "rotated")
    revoked = settings_revoke_token.sync_detailed(rotated.parsed.data.id, client=settings)
    expect(revoked.status_code == 200 and bool(revoked.parsed.data.revoked_at), "revoked")
    not_mine = settings_revoke_token.sync_detailed(admin_token_id, client=settings)
    expect(not_mine.status_code == 404, "another account's token is 404")

    step("settings: the token cap's 409")
    for name in ["one", "two"]:
        ok = settings_create_token.sync_detailed(client=settings, body=SettingsCreateBody(name=name))
        expect(ok.status_code == 201, f"token {name} under the cap")
    beyond = settings_create_token.sync_detailed(client=settings, body=SettingsCreateBody(name="three"))
    expect(beyond.status_code == 409, "409 at the cap")

    step("settings: the security log, limit and next page")
    log = settings_security_log.sync_detailed(client=settings, limit=2)
    events = log.parsed.data.events
    expect(len(events) == 2 and all(e.account_id == SETTINGS_ACCOUNT for e in events), "2 of the account's events")
    expect(isinstance(log.parsed.data.next_, str), "a next page")
    older = settings_security_log.sync_detailed(client=settings, limit=2, before=log.parsed.data.next_)
    expect(all(e.account_id == SETTINGS_ACCOUNT for e in older.parsed.data.events), "older page")
    expect(len(older.parsed.data.events) >= 1, "older page is not empty")


def main() -> int:
    admin = client(env("TOKENGATE_ADMIN_TOKEN"))
    admin_token_id = admin_flow(admin)
    settings_flow(admin_token_id)
    print(f"flow passed: {CHECKER.checked} responses checked against the document", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
