#!/usr/bin/env python3
"""Smoke test: a stock matrix-nio AsyncClient against a homeserver.

Usage:
    python nio_smoke.py http://127.0.0.1:18448 [--verbose] [--touch-first]

Needs `pip install matrix-nio` and a server with open registration
(m.login.dummy) and, for repeated runs, relaxed login/registration rate
limits. Steps: register a random user (nio's `register`, i.e. auth
m.login.dummy), log in again as a second device from a new AsyncClient,
rename that device, set and read back the display name, list devices,
whoami, log out, and check that the old access token is refused with
M_UNKNOWN_TOKEN. Every step is asserted and a failed step prints its HTTP
exchanges (all of them with --verbose). Runs on after a failed step unless
later steps depend on it (register, login); exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time

import nio
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DevicesResponse,
    LoginResponse,
    LogoutResponse,
    ProfileGetDisplayNameResponse,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    UpdateDeviceResponse,
    WhoamiResponse,
)

TRANSCRIPT: list[dict] = []


def _redact(headers: dict | None) -> dict:
    out = dict(headers or {})
    if "Authorization" in out:
        out["Authorization"] = out["Authorization"][:16] + "..."
    return out


class RecordingClient(AsyncClient):
    """AsyncClient that records every HTTP request/response it makes."""

    def __init__(self, *args, label: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.label = label

    async def send(self, method, path, data=None, headers=None, *args, **kwargs):
        entry = {
            "client": self.label,
            "method": method,
            "path": path,
            "request_headers": _redact(headers),
            "request_body": data if isinstance(data, (str, type(None))) else "<binary>",
        }
        TRANSCRIPT.append(entry)
        resp = await super().send(method, path, data, headers, *args, **kwargs)
        entry["status"] = resp.status
        entry["content_type"] = resp.content_type
        try:
            # aiohttp caches the body, so nio can read it again afterwards.
            entry["response_body"] = (await resp.read()).decode("utf-8", "replace")
        except Exception as exc:  # pragma: no cover - diagnostics only
            entry["response_body"] = f"<unreadable: {exc!r}>"
        return resp


class SmokeFailure(Exception):
    pass


def dump_transcript(entries: list[dict]) -> None:
    for e in entries:
        body = e.get("request_body")
        if body and "password" in body:
            try:
                j = json.loads(body)
                if "password" in j:
                    j["password"] = "<redacted>"
                body = json.dumps(j)
            except ValueError:
                pass
        resp_body = e.get("response_body")
        if resp_body and "access_token" in resp_body:
            try:
                j = json.loads(resp_body)
                for k in ("access_token", "refresh_token"):
                    if isinstance(j.get(k), str):
                        j[k] = j[k][:9] + "..."
                resp_body = json.dumps(j, separators=(",", ":"))
            except ValueError:
                pass
        print(f"    [{e['client']}] {e['method']} {e['path']}")
        print(f"        request headers: {e['request_headers']}")
        if body:
            print(f"        request body:    {body}")
        print(
            f"        -> {e.get('status')} {e.get('content_type')} {resp_body}"
        )


class Runner:
    """Asserts steps. A failed step is recorded and the run goes on (so one
    incompatibility does not hide the others) unless the step is `fatal`,
    i.e. later steps depend on it."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.step_no = 0
        self.failures: list[tuple[str, list[dict]]] = []
        self.mark = 0  # index into TRANSCRIPT where the current step began

    def check(self, cond: bool, what: str, resp=None, fatal: bool = False) -> bool:
        self.step_no += 1
        exchanges = TRANSCRIPT[self.mark :]
        self.mark = len(TRANSCRIPT)
        tag = "ok  " if cond else "FAIL"
        print(f"[{tag}] {self.step_no:2d}. {what}")
        if resp is not None and (self.verbose or not cond):
            print(f"        nio response: {describe(resp)}")
        if not cond:
            print("        HTTP exchanges of this step:")
            dump_transcript(exchanges)
            self.failures.append((f"{self.step_no}. {what}", exchanges))
            if fatal:
                raise SmokeFailure(what)
        return cond


def describe(resp) -> str:
    """A short repr of a nio response without the aiohttp object."""
    fields = {
        k: v
        for k, v in vars(resp).items()
        if k not in ("transport_response", "uuid", "start_time", "end_time", "timeout")
    }
    status = getattr(getattr(resp, "transport_response", None), "status", None)
    return f"{type(resp).__name__}(http={status}, {fields})"[:2000]


async def run(homeserver: str, r: Runner, touch_first: bool = False) -> None:
    config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=2)
    localpart = "nio_smoke_" + secrets.token_hex(4)
    password = "pw-" + secrets.token_urlsafe(18)
    new_device_name = "nio smoke renamed " + secrets.token_hex(3)
    displayname = "Nio Smoke " + secrets.token_hex(3)

    print(f"homeserver: {homeserver}  matrix-nio {nio_version()}  user: {localpart}")

    # 1. Register (nio's register() sends auth {"type": "m.login.dummy"}).
    c1 = RecordingClient(homeserver, localpart, config=config, label="c1")
    c2 = RecordingClient(homeserver, localpart, config=config, label="c2")
    c3 = RecordingClient(homeserver, config=config, label="c3")
    try:
        resp = await c1.register(localpart, password, device_name="nio smoke register")
        r.check(
            isinstance(resp, RegisterResponse)
            and resp.user_id.startswith(f"@{localpart}:")
            and bool(resp.access_token)
            and bool(resp.device_id),
            f"register -> {getattr(resp, 'user_id', None)} "
            f"device {getattr(resp, 'device_id', None)}",
            resp,
            fatal=True,
        )
        user_id = resp.user_id
        reg_device = resp.device_id
        r.check(
            c1.logged_in and c1.user_id == user_id,
            "nio client 1 is logged in after registration",
            fatal=True,
        )

        # 2. Log in with the password from a second client (a new device).
        resp = await c2.login(password, device_name="nio smoke login")
        r.check(
            isinstance(resp, LoginResponse)
            and resp.user_id == user_id
            and bool(resp.access_token)
            and bool(resp.device_id)
            and resp.device_id != reg_device,
            f"password login (second client) -> device {getattr(resp, 'device_id', None)}",
            resp,
            fatal=True,
        )
        device_id = resp.device_id
        old_token = resp.access_token

        # 3. whoami
        resp = await c2.whoami()
        r.check(
            isinstance(resp, WhoamiResponse)
            and resp.user_id == user_id
            and resp.device_id == device_id,
            f"whoami -> {getattr(resp, 'user_id', None)} "
            f"device {getattr(resp, 'device_id', None)} "
            f"is_guest {getattr(resp, 'is_guest', None)}",
            resp,
        )

        # 4. Rename the new device.
        resp = await c2.update_device(device_id, {"display_name": new_device_name})
        r.check(
            isinstance(resp, UpdateDeviceResponse),
            f"update_device {device_id} display_name={new_device_name!r}",
            resp,
        )

        # 5. Set and read back the display name.
        resp = await c2.set_displayname(displayname)
        r.check(
            isinstance(resp, ProfileSetDisplayNameResponse),
            f"set_displayname {displayname!r}",
            resp,
        )
        resp = await c2.get_displayname()
        r.check(
            isinstance(resp, ProfileGetDisplayNameResponse)
            and resp.displayname == displayname,
            f"get_displayname -> {getattr(resp, 'displayname', None)!r}",
            resp,
        )
        # ... also unauthenticated / from the other session, by user ID.
        resp = await c1.get_displayname(user_id)
        r.check(
            isinstance(resp, ProfileGetDisplayNameResponse)
            and resp.displayname == displayname,
            f"get_displayname({user_id}) from client 1 -> "
            f"{getattr(resp, 'displayname', None)!r}",
            resp,
        )

        # 6. List devices. The registration device has made no authenticated
        # request yet (GET profile is public), so it has never been "seen";
        # --touch-first makes it do one, which gives it a last_seen_ts.
        if touch_first:
            resp = await c1.whoami()
            r.check(
                isinstance(resp, WhoamiResponse) and resp.device_id == reg_device,
                f"--touch-first: whoami from client 1 -> device "
                f"{getattr(resp, 'device_id', None)}",
                resp,
            )
        resp = await c2.devices()
        ok = isinstance(resp, DevicesResponse)
        by_id = {d.id: d for d in resp.devices} if ok else {}
        if ok:
            what = "devices -> " + ", ".join(
                f"{d.id}={d.display_name!r}" for d in by_id.values()
            )
        else:
            what = "devices -> nio could not parse the response" + missing_device_keys()
        r.check(
            ok
            and device_id in by_id
            and by_id[device_id].display_name == new_device_name
            and reg_device in by_id
            and by_id[reg_device].display_name == "nio smoke register",
            what,
            resp,
        )

        # 7. Log out the second device; nio clears its token.
        resp = await c2.logout()
        r.check(
            isinstance(resp, LogoutResponse) and not c2.logged_in,
            "logout (second client)",
            resp,
        )

        # 8. The old token must be refused with M_UNKNOWN_TOKEN.
        c3.restore_login(user_id, device_id, old_token)
        resp = await c3.whoami()
        r.check(
            isinstance(resp, nio.WhoamiError)
            and resp.status_code == "M_UNKNOWN_TOKEN"
            and resp.transport_response is not None
            and resp.transport_response.status == 401,
            f"whoami with the logged-out token -> "
            f"{getattr(resp.transport_response, 'status', None)} "
            f"{getattr(resp, 'status_code', None)}",
            resp,
        )
        c3.restore_login(user_id, device_id, old_token)  # soft_logout may clear it
        resp = await c3.devices()
        r.check(
            isinstance(resp, nio.DevicesError)
            and resp.status_code == "M_UNKNOWN_TOKEN",
            f"devices with the logged-out token -> "
            f"{getattr(resp.transport_response, 'status', None)} "
            f"{getattr(resp, 'status_code', None)}",
            resp,
        )

        # 9. The registration session is unaffected, and sees one device fewer.
        resp = await c1.devices()
        ids = [d.id for d in resp.devices] if isinstance(resp, DevicesResponse) else None
        r.check(
            ids is not None and reg_device in ids and device_id not in ids,
            f"devices from client 1 after logout -> {ids}",
            resp,
        )
        resp = await c1.logout()
        r.check(
            isinstance(resp, LogoutResponse) and not c1.logged_in,
            "logout (client 1)",
            resp,
        )
    finally:
        for c in (c1, c2, c3):
            await c.close()


def missing_device_keys() -> str:
    """Which keys nio's `devices` schema requires are absent in the last
    GET /devices body (nio requires all four, nullable; the spec makes all
    but device_id optional)."""
    required = ("device_id", "display_name", "last_seen_ip", "last_seen_ts")
    for e in reversed(TRANSCRIPT):
        if e["method"] == "GET" and e["path"].split("?")[0].endswith("/devices"):
            try:
                devices = json.loads(e.get("response_body") or "").get("devices", [])
            except (ValueError, AttributeError):
                return ""
            gaps = [
                f"{d.get('device_id')} lacks {', '.join(k for k in required if k not in d)}"
                for d in devices
                if any(k not in d for k in required)
            ]
            return f" ({'; '.join(gaps)})" if gaps else ""
    return ""


def nio_version() -> str:
    try:
        from importlib.metadata import version

        return version("matrix-nio")
    except Exception:  # pragma: no cover
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("homeserver", help="e.g. http://127.0.0.1:18448")
    ap.add_argument(
        "-v", "--verbose", action="store_true", help="print every HTTP exchange"
    )
    ap.add_argument(
        "--touch-first",
        action="store_true",
        help="make the registration device do an authenticated request before "
        "GET /devices, so no device lacks last_seen_ts (nio 0.26 requires it)",
    )
    args = ap.parse_args()
    started = time.monotonic()
    r = Runner(args.verbose)
    try:
        asyncio.run(run(args.homeserver.rstrip("/"), r, args.touch_first))
    except SmokeFailure as exc:
        print(f"ABORTED: a step later steps depend on failed: {exc}")
    except Exception as exc:
        print(f"FAILED with exception: {exc!r}")
        print("HTTP exchanges (most recent last):")
        dump_transcript(TRANSCRIPT[-6:])
        raise
    if args.verbose:
        print("All HTTP exchanges:")
        dump_transcript(TRANSCRIPT)
    elapsed = time.monotonic() - started
    if r.failures:
        print(
            f"FAILED: {len(r.failures)} of {r.step_no} steps "
            f"({len(TRANSCRIPT)} requests, {elapsed:.2f}s):"
        )
        for what, _ in r.failures:
            print(f"  - {what}")
        return 1
    print(f"PASSED: {r.step_no} steps ({len(TRANSCRIPT)} requests, {elapsed:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
