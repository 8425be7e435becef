#!/usr/bin/env python3
"""Browser-side load for bench/compare.sh: the authorization-code flow with PKCE.

    flow_load.py flows ...   full flows (authorize -> login form -> consent form ->
                             code -> token), one new browser (cookie jar) per flow,
                             `--concurrency` browsers at once for `--duration` s
    flow_load.py mint ...    refresh tokens for the refresh-rotation scenario: each
                             worker signs in once, then loops authorize (session
                             cookie, consent given) -> code -> token, and writes
                             the refresh tokens, one a line

Every worker finishes the flow it is in before stopping, so no request is left
in flight: `token_ok` is the exact number of 200 responses from /token (each
one an AccessTokenIssued event in grantd's log). A /token request whose
outcome is unknown (a socket error) is counted in `token_unknown`.
The JSON summary goes to `--result`.
"""

import argparse
import base64
import hashlib
import html
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

import requests

FIELD = re.compile(r'name="(csrf_token|request)" value="([^"]*)"')


class FlowError(Exception):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def form_fields(page: str) -> dict:
    fields = {name: html.unescape(value) for name, value in FIELD.findall(page)}
    if "csrf_token" not in fields or "request" not in fields:
        raise FlowError("form without csrf_token/request")
    return fields


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.flows_ok = 0
        self.flows_failed = 0
        self.token_sent = 0
        self.token_ok = 0
        self.token_unknown = 0
        self.latencies = []
        self.first_error = ""

    def fail(self, why: str):
        with self.lock:
            self.flows_failed += 1
            if not self.first_error:
                self.first_error = why[:300]


class Browser:
    """One user agent: a cookie jar, and the client's back channel for /token."""

    def __init__(self, args, tally: Tally, username: str, password: str):
        self.args = args
        self.tally = tally
        self.username = username
        self.password = password
        self.http = requests.Session()
        self.back = requests.Session()

    def authorize(self, scope: str, prompt: str | None) -> tuple[str, str]:
        """Runs /authorize until the redirect with a code; posts the login and
        consent forms when they are shown. Returns (code, verifier)."""
        a = self.args
        verifier = b64url(os.urandom(32))
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        state = b64url(os.urandom(8))
        query = {
            "response_type": "code",
            "client_id": a.client_id,
            "redirect_uri": a.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if prompt:
            query["prompt"] = prompt
        r = self.http.get(a.base + "/authorize", params=query, allow_redirects=False, timeout=30)
        for _ in range(3):
            if r.status_code == 303:
                location = r.headers.get("location", "")
                params = parse_qs(urlparse(location).query)
                if "code" not in params:
                    raise FlowError(f"redirect without code: {location[:200]}")
                if params.get("state") != [state]:
                    raise FlowError("state mismatch")
                return params["code"][0], verifier
            if r.status_code != 200:
                raise FlowError(f"{r.request.method} {urlparse(r.url).path}: {r.status_code} {r.text[:200]}")
            fields = form_fields(r.text)
            if 'action="/login"' in r.text:
                fields.update(username=self.username, password=self.password)
                r = self.http.post(a.base + "/login", data=fields, allow_redirects=False, timeout=30)
            elif 'action="/consent"' in r.text:
                fields["decision"] = "approve"
                r = self.http.post(a.base + "/consent", data=fields, allow_redirects=False, timeout=30)
            else:
                raise FlowError("page is neither login nor consent")
        raise FlowError("no code after login and consent")

    def token(self, code: str, verifier: str) -> dict:
        a = self.args
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": a.redirect_uri, "code_verifier": verifier}
        with self.tally.lock:
            self.tally.token_sent += 1
        try:
            r = self.back.post(a.base + "/token", data=data, auth=(a.client_id, a.client_secret), timeout=30)
        except requests.RequestException:
            with self.tally.lock:
                self.tally.token_unknown += 1
            raise
        if r.status_code != 200:
            raise FlowError(f"/token: {r.status_code} {r.text[:200]}")
        with self.tally.lock:
            self.tally.token_ok += 1
        return r.json()


def users(path: str):
    with open(path) as f:
        return [line.split(" ", 1) for line in f.read().splitlines() if line]


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def run_flows(args, tally: Tally):
    accounts = users(args.users)
    deadline = time.monotonic() + args.duration

    def worker(i):
        username, password = accounts[i % len(accounts)]
        while time.monotonic() < deadline:
            began = time.monotonic()
            browser = Browser(args, tally, username, password)
            try:
                code, verifier = browser.authorize(args.scope, "consent")
                browser.token(code, verifier)
            except (FlowError, requests.RequestException, ValueError) as e:
                tally.fail(str(e))
                continue
            finally:
                browser.http.close()
                browser.back.close()
            elapsed = time.monotonic() - began
            with tally.lock:
                tally.flows_ok += 1
                tally.latencies.append(elapsed)

    return worker


def run_mint(args, tally: Tally, out):
    accounts = users(args.users)
    remaining = [args.count]

    def worker(i):
        username, password = accounts[i % len(accounts)]
        browser = Browser(args, tally, username, password)
        while True:
            with tally.lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            try:
                code, verifier = browser.authorize(args.scope, None)
                refresh = browser.token(code, verifier).get("refresh_token")
                if not refresh:
                    raise FlowError("no refresh_token in the token response")
            except (FlowError, requests.RequestException, ValueError) as e:
                tally.fail(str(e))
                if tally.flows_failed > 20:
                    return
                continue
            with tally.lock:
                tally.flows_ok += 1
                out.write(refresh + "\n")

    return worker


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["flows", "mint"])
    p.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--redirect-uri", required=True)
    p.add_argument("--users", required=True, help="file of 'username password' lines")
    p.add_argument("--scope", default="openid api")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=10.0, help="flows: seconds")
    p.add_argument("--count", type=int, default=1000, help="mint: refresh tokens")
    p.add_argument("--out", help="mint: file for the refresh tokens")
    p.add_argument("--result", required=True, help="file for the JSON summary")
    args = p.parse_args()
    args.base = args.base.rstrip("/")

    tally = Tally()
    out = open(args.out, "w") if args.mode == "mint" else None
    worker = run_flows(args, tally) if args.mode == "flows" else run_mint(args, tally, out)
    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    if out:
        out.close()

    lat = sorted(tally.latencies)
    result = {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "elapsed_s": round(elapsed, 4),
        "flows_ok": tally.flows_ok,
        "flows_failed": tally.flows_failed,
        "rate": round(tally.flows_ok / elapsed, 2) if elapsed > 0 else 0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "token_sent": tally.token_sent,
        "token_ok": tally.token_ok,
        "token_unknown": tally.token_unknown,
        "first_error": tally.first_error,
    }
    with open(args.result, "w") as f:
        json.dump(result, f)
        f.write("\n")
    if args.mode == "mint" and tally.flows_ok < args.count:
        print(f"flow_load.py: minted {tally.flows_ok} of {args.count} refresh tokens: {tally.first_error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
