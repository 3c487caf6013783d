#!/usr/bin/env python3
"""Creates N backend sessions (sign-in at the simulator, then /capture-session/start)
and prints their cookies, one per line. Setup for refresh.lua, not a load generator."""
import json
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sim, server, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
REDIRECT = "http://127.0.0.1/after-login"


def post(url, data, headers):
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.loads(r.read() or b"null")


def one(_):
    form = urllib.parse.urlencode({
        "client_id": "capture-session-demo", "response_type": mode, "form": "signInForm",
        "signInEmailAddress": "demo@example.com", "currentPassword": "demo",
        "redirect_uri": REDIRECT,
    }).encode()
    _, r = post(f"{sim}/oauth/auth_native_traditional", form,
                {"Content-Type": "application/x-www-form-urlencoded"})
    if mode == "token":
        body = {"mode": "token", "uuid": r["capture_user"]["uuid"], "accessToken": r["access_token"]}
    else:
        body = {"mode": "code", "authorizationCode": r["authorization_code"], "redirectUri": REDIRECT}
    headers, _ = post(f"{server}/capture-session/start", json.dumps(body).encode(),
                      {"Content-Type": "application/json", "X-Capture-Session": "1"})
    return headers["Set-Cookie"].split(";")[0]


with ThreadPoolExecutor(16) as pool:
    for cookie in pool.map(one, range(count)):
        print(cookie)
