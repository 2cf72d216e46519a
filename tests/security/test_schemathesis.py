"""Schema-driven fuzzing of the live API: no input, valid or not, gets a 5xx.

schemathesis (v4) loads ``/openapi.json`` from the running ``ouo`` deployment and, for
every operation, generates requests with Hypothesis — some valid by the schema
(positive), some deliberately invalid (negative) — sends them, and records any answer
of 500 or above (schemathesis' ``not_a_server_error`` check) or a 5xx body that is not
the bare ``{"code", "detail", "error_id"}``. It runs twice: anonymously and with an admin
token (a token of its own, so a fuzzed ``DELETE /auth/tokens/{name}`` cannot revoke one
the probes use). Hypothesis is derandomized and has no example database, so CI sees the
same requests every run.

Nothing is excluded. Read routes get a real collection, item and job in their path now
and then (a random id only ever reaches the 404 branch); writes keep random path ids, so
the fuzzer does not resubmit or cancel the seeded jobs. The suite orders this module last
(see conftest): its uploads and submissions start jobs the probes need not wait for.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.security.conftest import Harness, assert_alive

EXAMPLES = 15  # per operation: 7 invalid by the schema (where possible), the rest valid
NEGATIVE = 7
REQUEST_TIMEOUT = 20.0
BUDGET_SECONDS = 110.0  # per identity; the suite must stay within a few minutes


def real_path_parameters(h: Harness, method: str, path: str) -> dict[str, Any]:
    """Existing ids for a read route's path parameters (empty for writes)."""
    if method.upper() != "GET":
        return {}
    known: dict[str, Any] = {}
    if path.startswith("/raster/") or path.startswith("/stac/collections"):
        known = {"collection_id": "sec-mixed", "item_id": "elev-public"}
    elif path.startswith("/collections"):
        known = {"collection_id": "nc_public"}
    elif path.startswith("/jobs/"):
        known = {"job_id": h.seeds["elev_public"].job_id}
    return {k: v for k, v in known.items() if "{" + k + "}" in path}


def problem(response: Any) -> str | None:
    """What is wrong with an answer, or None."""
    if response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}, not JSON: {response.text[:200]}"
    if not isinstance(body, dict) or set(body) != {"code", "detail", "error_id"}:
        return f"{response.status_code}, body {str(body)[:300]}"
    return f"{response.status_code} {body['error_id']}"


@pytest.mark.parametrize("identity", ["anonymous", "admin"])
def test_no_fuzzed_request_gets_a_server_error(harness: Harness, identity: str) -> None:
    headers: dict[str, str] = {}
    if identity == "admin":
        made = harness.cli(
            "tokens", "create", "--name", "sec-fuzz-admin", "--role", "admin",
            "--clearance", "restricted", "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        import json

        headers = {"Authorization": f"Bearer {json.loads(made.stdout)['token']}"}
    base = harness.ouo
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=30)
    session = requests.Session()
    failures: list[str] = []
    counts = {"operations": 0, "requests": 0}
    started = time.monotonic()
    skipped: list[str] = []

    def fuzz(strategy: Any, examples: int, label: str) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            counts["requests"] += 1
            try:
                response = case.call(
                    base_url=base, session=session, headers=headers, timeout=REQUEST_TIMEOUT
                )
            except requests.Timeout:
                failures.append(f"{label}: no answer in {REQUEST_TIMEOUT}s")
                return
            except requests.ConnectionError as exc:
                failures.append(f"{label}: connection failed ({exc})")
                return
            wrong = problem(response)
            if wrong:
                failures.append(f"{label}: {wrong}\n    {case.as_curl_command()[:600]}")

        run()

    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        label = f"{operation.method.upper()} {operation.path}"
        fixed = real_path_parameters(harness, operation.method, operation.path)
        if time.monotonic() - started > BUDGET_SECONDS:
            failures.append(f"time budget spent before {label}")
            break
        positive = EXAMPLES
        try:
            fuzz(operation.as_strategy(GenerationMode.NEGATIVE), NEGATIVE, label)
            positive -= NEGATIVE
        except Unsatisfiable:
            # No request is invalid by the schema here (no parameters, or only free
            # strings): all the examples are valid ones.
            skipped.append(label)
        strategy = operation.as_strategy(GenerationMode.POSITIVE)
        if fixed:
            # Half the time the real ids, so the query and body reach real data.
            real = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed)
            strategy = st.one_of(strategy, real)
        fuzz(strategy, positive, label)
        assert_alive(base)

    elapsed = time.monotonic() - started
    summary = f"{counts} in {elapsed:.0f}s as {identity}; no invalid request for {len(skipped)}"
    assert not failures, f"{len(failures)} server errors, {summary}:\n" + "\n".join(failures[:40])
    assert counts["operations"] > 30, summary
    # Operations without parameters have a handful of distinct requests; most have more.
    assert counts["requests"] >= 8 * counts["operations"], summary
    assert_alive(base)
