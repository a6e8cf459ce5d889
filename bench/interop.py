#!/usr/bin/env python3
"""bench/interop.py — the Tessera <-> Synapse federation interop checks.

Talks to the client APIs of one Tessera and one Synapse that federate with
each other (bench/interop.sh starts them), registers users on each side
through shared-secret registration (/_synapse/admin/v1/register), runs the
named checks below one after the other, prints PASS/FAIL/SKIP per check with
a one-line reason and a summary, and exits 1 unless every check passed.

Every cross-server effect is awaited with a deadline (--deadline, 20 s):
the receiving side's /sync is long-polled from a token taken before the
action, and the check fails if the effect has not shown up by then.

Usage:
  bench/interop.py --tessera URL --tessera-server NAME \\
                   --synapse URL --synapse-server NAME [--secret S] \\
                   [--deadline SECONDS] [--only PATTERN] [--trace FILE] [--json FILE]

Python 3 standard library only.
"""

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

DEADLINE = 20.0
# The /sync filter every wait uses: a long timeline so nothing is cut.
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 100}}}, separators=(",", ":"))
TRACE = None  # file object: every request and response, for diagnosis


def trace(line):
    if TRACE:
        TRACE.write(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {line}\n")
        TRACE.flush()


def short(obj, limit=300):
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def q(s):
    return urllib.parse.quote(s, safe="")


class Fail(Exception):
    """A check failed; the message is its one-line reason."""


class Skip(Exception):
    """A check could not run because an earlier one did not set it up."""


class ApiError(Fail):
    def __init__(self, side, method, path, status, body):
        self.status = status
        self.body = body
        errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path} on {side} -> {status} {short(body, 240)}")
        self.errcode = errcode


class Server:
    def __init__(self, label, url, server_name, secret):
        self.label = label
        self.url = url.rstrip("/")
        self.server_name = server_name
        self.secret = secret

    def raw(self, method, path, body=None, token=None, timeout=30.0):
        """One request; returns (status, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        t0 = time.time()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            trace(f"{self.label} {method} {path} -> error {e!r} after {time.time() - t0:.2f}s")
            raise Fail(f"{method} {path} on {self.label}: {e}") from None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = raw.decode(errors="replace")
        logged = parsed
        if "/sync" in path and status == 200:
            logged = "(sync body)"
        trace(f"{self.label} {method} {path} {short(body) if body is not None else ''}"
              f" -> {status} {short(logged, 600)} ({time.time() - t0:.2f}s)")
        return status, parsed

    def register(self, localpart):
        status, body = self.raw("GET", "/_synapse/admin/v1/register")
        if status != 200:
            raise ApiError(self.label, "GET", "/_synapse/admin/v1/register", status, body)
        nonce = body["nonce"]
        password = "password-" + localpart
        msg = b"\0".join(s.encode() for s in (nonce, localpart, password, "notadmin"))
        mac = hmac.new(self.secret.encode(), msg, hashlib.sha1).hexdigest()
        req = {"nonce": nonce, "username": localpart, "password": password, "admin": False, "mac": mac}
        status, body = self.raw("POST", "/_synapse/admin/v1/register", req)
        if status != 200:
            raise ApiError(self.label, "POST", "/_synapse/admin/v1/register", status, body)
        return Client(self, body["user_id"], body["access_token"])


class Client:
    def __init__(self, server, user_id, token):
        self.server = server
        self.user_id = user_id
        self.token = token
        self.since = None

    def __str__(self):
        return f"{self.user_id} ({self.server.label})"

    def call(self, method, path, body=None, timeout=30.0, ok=True):
        status, resp = self.server.raw(method, path, body, self.token, timeout)
        if ok and not 200 <= status < 300:
            raise ApiError(self.server.label, method, path, status, resp)
        return status, resp

    def get(self, path, **kw):
        return self.call("GET", path, **kw)[1]

    def post(self, path, body=None, **kw):
        return self.call("POST", path, {} if body is None else body, **kw)[1]

    def put(self, path, body, **kw):
        return self.call("PUT", path, body, **kw)[1]

    def sync(self, since=None, timeout_ms=0, filter_=SYNC_FILTER):
        query = {"timeout": str(int(timeout_ms)), "filter": filter_}
        if since:
            query["since"] = since
        path = "/_matrix/client/v3/sync?" + urllib.parse.urlencode(query)
        return self.get(path, timeout=timeout_ms / 1000 + 30)

    def mark(self):
        """Take a /sync position to wait from: later waits see only what
        happens after this call."""
        self.since = self.sync(self.since, 0)["next_batch"]
        return self.since

    def wait(self, what, pred, deadline=None):
        """Long-poll /sync from the last mark until pred(response) is truthy;
        return (its value, seconds waited). Fail after the deadline."""
        deadline = DEADLINE if deadline is None else deadline
        t0 = time.time()
        end = t0 + deadline
        while True:
            left = end - time.time()
            if left <= 0:
                raise Fail(f"{what} not seen in {self.user_id}'s /sync on {self.server.label} within {deadline:.0f} s")
            resp = self.sync(self.since, min(left, 5.0) * 1000)
            self.since = resp.get("next_batch", self.since)
            found = pred(resp)
            if found:
                return found, time.time() - t0

    # Small helpers over the client API.
    def create_room(self, **body):
        return self.post("/_matrix/client/v3/createRoom", body)["room_id"]

    def send(self, room, content, etype="m.room.message"):
        txn = secrets.token_hex(8)
        return self.put(f"/_matrix/client/v3/rooms/{q(room)}/send/{etype}/{txn}", content)["event_id"]

    def say(self, room, text):
        return self.send(room, {"msgtype": "m.text", "body": text})

    def state(self, room, etype, content, state_key=""):
        return self.put(f"/_matrix/client/v3/rooms/{q(room)}/state/{etype}/{q(state_key)}", content)["event_id"]

    def join(self, room_or_alias, via=None):
        path = f"/_matrix/client/v3/join/{q(room_or_alias)}"
        if via:
            path += "?" + urllib.parse.urlencode({"server_name": via})
        return self.post(path, {})["room_id"]

    def joined_members(self, room):
        return set(self.get(f"/_matrix/client/v3/rooms/{q(room)}/joined_members")["joined"])


# ---------------------------------------------------------------------------
# Reading /sync responses.

def room_events(resp, room, section="join"):
    """Timeline and state events of ROOM in SECTION (join or leave)."""
    r = resp.get("rooms", {}).get(section, {}).get(room)
    if not r:
        return []
    return r.get("state", {}).get("events", []) + r.get("timeline", {}).get("events", [])


def ephemeral(resp, room):
    return resp.get("rooms", {}).get("join", {}).get(room, {}).get("ephemeral", {}).get("events", [])


def find(resp, room, pred, section="join"):
    for e in room_events(resp, room, section):
        if pred(e):
            return e
    return None


def by_id(event_id):
    return lambda e: e.get("event_id") == event_id


def await_member(client, room, user, value, section="join"):
    """Wait until CLIENT's /sync shows USER's membership VALUE in ROOM's
    SECTION (join, or leave for the kicked and banned); return (the event,
    seconds waited)."""
    def pred(resp):
        return find(resp, room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == user
                    and e.get("content", {}).get("membership") == value, section)

    return client.wait(f"{user}'s membership '{value}' in {room}", pred)


# ---------------------------------------------------------------------------
# The checks.

CHECKS = []


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn
    return register


class Ctx:
    """Users and rooms shared between checks."""

    def __init__(self, tessera, synapse):
        self.T = tessera
        self.S = synapse
        self.run = secrets.token_hex(3)
        self.room_s = None  # created on Synapse by s1; t1 joins (1a)
        self.room_t = None  # created on Tessera by t1; s1 joins (2a)
        self.alias_s = None
        self.alias_t = None
        self.joined = set()  # ("S"|"T", user_id) of the shared rooms
        self.display = {}  # user_id -> the displayname set at setup

    def setup(self):
        for side, server in (("t", self.T), ("s", self.S)):
            for n in (1, 2):
                c = server.register(f"interop_{self.run}_{side}{n}")
                self.display[c.user_id] = f"Interop {side.upper()}{n} {self.run}"
                c.put(f"/_matrix/client/v3/profile/{q(c.user_id)}/displayname",
                      {"displayname": self.display[c.user_id]})
                setattr(self, f"{side}{n}", c)
        for c in (self.t1, self.t2, self.s1, self.s2):
            c.mark()

    def both_in(self, which):
        room = self.room_s if which == "S" else self.room_t
        if not room or ("T" + which, self.t1.user_id) not in self.joined or ("S" + which, self.s1.user_id) not in self.joined:
            raise Skip(f"room {which} has not got both t1 and s1 joined (checks 1a/2a)")
        return room

    def shared_room(self):
        """Room T if t1 and s1 are both in it, else room S."""
        try:
            return self.both_in("T")
        except Skip:
            return self.both_in("S")


def side_of(ctx, direction):
    """'T>S' -> (sender t1, receiver s1); 'S>T' -> (s1, t1)."""
    return (ctx.t1, ctx.s1) if direction == "T>S" else (ctx.s1, ctx.t1)


@check("1a room created on Synapse, joined from Tessera by room ID + server_name")
def c1a(ctx):
    ctx.alias_s = f"interop-s-{ctx.run}"
    ctx.room_s = ctx.s1.create_room(preset="public_chat", visibility="public", name="Interop S",
                                    room_alias_name=ctx.alias_s)
    ctx.joined.add(("SS", ctx.s1.user_id))
    ctx.s1.mark()
    t0 = time.time()
    got = ctx.t1.join(ctx.room_s, via=ctx.S.server_name)
    took = time.time() - t0
    if got != ctx.room_s:
        raise Fail(f"join answered room_id {got}, expected {ctx.room_s}")
    ctx.joined.add(("TS", ctx.t1.user_id))
    _, waited = await_member(ctx.s1, ctx.room_s, ctx.t1.user_id, "join")
    members = ctx.t1.joined_members(ctx.room_s)
    if ctx.s1.user_id not in members:
        raise Fail(f"Tessera's /joined_members of {ctx.room_s} lacks {ctx.s1.user_id}: {sorted(members)}")
    return f"{ctx.room_s}: join took {took:.1f} s, in Synapse's /sync {waited:.1f} s later"


@check("1b room created on Synapse, joined from Tessera by alias")
def c1b(ctx):
    if not ctx.room_s:
        raise Skip("no room S (1a)")
    alias = f"#{ctx.alias_s}:{ctx.S.server_name}"
    ctx.s1.mark()
    got = ctx.t2.join(alias)
    if got != ctx.room_s:
        raise Fail(f"join of {alias} answered room_id {got}, expected {ctx.room_s}")
    _, waited = await_member(ctx.s1, ctx.room_s, ctx.t2.user_id, "join")
    return f"{alias} -> {got}, in Synapse's /sync after {waited:.1f} s"


@check("2a room created on Tessera, joined from Synapse by room ID + server_name")
def c2a(ctx):
    ctx.alias_t = f"interop-t-{ctx.run}"
    ctx.room_t = ctx.t1.create_room(preset="public_chat", visibility="public", name="Interop T",
                                    room_alias_name=ctx.alias_t)
    ctx.joined.add(("TT", ctx.t1.user_id))
    ctx.t1.mark()
    t0 = time.time()
    got = ctx.s1.join(ctx.room_t, via=ctx.T.server_name)
    took = time.time() - t0
    if got != ctx.room_t:
        raise Fail(f"join answered room_id {got}, expected {ctx.room_t}")
    ctx.joined.add(("ST", ctx.s1.user_id))
    _, waited = await_member(ctx.t1, ctx.room_t, ctx.s1.user_id, "join")
    members = ctx.s1.joined_members(ctx.room_t)
    if ctx.t1.user_id not in members:
        raise Fail(f"Synapse's /joined_members of {ctx.room_t} lacks {ctx.t1.user_id}: {sorted(members)}")
    return f"{ctx.room_t}: join took {took:.1f} s, in Tessera's /sync {waited:.1f} s later"


@check("2b room created on Tessera, joined from Synapse by alias")
def c2b(ctx):
    if not ctx.room_t:
        raise Skip("no room T (2a)")
    alias = f"#{ctx.alias_t}:{ctx.T.server_name}"
    ctx.t1.mark()
    got = ctx.s2.join(alias)
    if got != ctx.room_t:
        raise Fail(f"join of {alias} answered room_id {got}, expected {ctx.room_t}")
    _, waited = await_member(ctx.t1, ctx.room_t, ctx.s2.user_id, "join")
    return f"{alias} -> {got}, in Tessera's /sync after {waited:.1f} s"


def message_check(which, direction):
    def fn(ctx):
        room = ctx.both_in(which)
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        body = f"hello {direction} in {which} {secrets.token_hex(3)}"
        eid = sender.say(room, body)
        event, waited = receiver.wait(f"message {eid}", lambda r: find(r, room, by_id(eid)))
        if event.get("content", {}).get("body") != body:
            raise Fail(f"{eid} arrived with content {short(event.get('content'))}")
        return f"{eid} after {waited:.1f} s"
    return fn


def edit_check(which, direction):
    def fn(ctx):
        room = ctx.both_in(which)
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        base = sender.say(room, "before edit")
        new = f"after edit {secrets.token_hex(3)}"
        edit = sender.send(room, {"msgtype": "m.text", "body": f"* {new}",
                                  "m.new_content": {"msgtype": "m.text", "body": new},
                                  "m.relates_to": {"rel_type": "m.replace", "event_id": base}})
        event, waited = receiver.wait(f"edit {edit}", lambda r: find(r, room, by_id(edit)))
        rel = event.get("content", {}).get("m.relates_to", {})
        if rel != {"rel_type": "m.replace", "event_id": base}:
            raise Fail(f"{edit} arrived with m.relates_to {short(rel)}")
        return f"m.replace {edit} of {base} after {waited:.1f} s"
    return fn


def reaction_check(which, direction):
    def fn(ctx):
        room = ctx.both_in(which)
        sender, receiver = side_of(ctx, direction)
        # React to the receiver's message: the sender's server must have it.
        sender.mark()
        target = receiver.say(room, "react to me")
        sender.wait(f"message {target}", lambda r: find(r, room, by_id(target)))
        receiver.mark()
        key = "\N{THUMBS UP SIGN}"
        eid = sender.send(room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}},
                          "m.reaction")
        event, waited = receiver.wait(f"reaction {eid}", lambda r: find(r, room, by_id(eid)))
        rel = event.get("content", {}).get("m.relates_to", {})
        if rel.get("rel_type") != "m.annotation" or rel.get("event_id") != target or rel.get("key") != key:
            raise Fail(f"{eid} arrived with m.relates_to {short(rel)}")
        return f"m.annotation {eid} on {target} after {waited:.1f} s"
    return fn


def redaction_check(which, direction):
    def fn(ctx):
        room = ctx.both_in(which)
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        target = sender.say(room, "redact me")
        receiver.wait(f"message {target}", lambda r: find(r, room, by_id(target)))
        txn = secrets.token_hex(8)
        eid = sender.put(f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(target)}/{txn}",
                         {"reason": "interop"})["event_id"]
        event, waited = receiver.wait(f"redaction {eid}", lambda r: find(r, room, by_id(eid)))
        redacts = event.get("redacts") or event.get("content", {}).get("redacts")
        if redacts != target:
            raise Fail(f"{eid} arrived redacting {redacts!r}, expected {target}")
        # The receiver's copy of the target must now be redacted.
        end = time.time() + 5
        while True:
            ev = receiver.get(f"/_matrix/client/v3/rooms/{q(room)}/event/{q(target)}")
            if not ev.get("content"):
                break
            if time.time() > end:
                raise Fail(f"redaction {eid} arrived but {receiver.server.label}'s copy of {target} "
                           f"still has content {short(ev.get('content'))}")
            time.sleep(0.5)
        return f"{eid} after {waited:.1f} s; the target's content is gone on {receiver.server.label}"
    return fn


for _which in ("S", "T"):
    for _dir in ("T>S", "S>T"):
        check(f"3 message {_dir} in room {_which}")(message_check(_which, _dir))
for _kind, _factory in (("edit (m.replace)", edit_check), ("reaction (m.annotation)", reaction_check),
                        ("redaction", redaction_check)):
    for _which in ("S", "T"):
        for _dir in ("T>S", "S>T"):
            check(f"3 {_kind} {_dir} in room {_which}")(_factory(_which, _dir))


def state_check(direction):
    def fn(ctx):
        # Each side changes the state of the room it created (it holds the
        # power there).
        which = "T" if direction == "T>S" else "S"
        room = ctx.both_in(which)
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        name, topic = f"name {direction} {secrets.token_hex(3)}", f"topic {direction} {secrets.token_hex(3)}"
        e1 = sender.state(room, "m.room.name", {"name": name})
        e2 = sender.state(room, "m.room.topic", {"topic": topic})
        seen = {}

        def pred(resp):
            for eid in (e1, e2):
                ev = find(resp, room, by_id(eid))
                if ev:
                    seen[eid] = ev
            return len(seen) == 2

        receiver.wait(f"m.room.name {e1} and m.room.topic {e2} (have {sorted(seen)})", pred)
        got_name = receiver.get(f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.name/").get("name")
        got_topic = receiver.get(f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.topic/").get("topic")
        if (got_name, got_topic) != (name, topic):
            raise Fail(f"events arrived but {receiver.server.label}'s current state is name={got_name!r} topic={got_topic!r}")
        return f"name and topic in room {which} seen in /sync and current state"
    return fn


check("4 state (name, topic) T>S")(state_check("T>S"))
check("4 state (name, topic) S>T")(state_check("S>T"))


def typing_check(direction):
    def fn(ctx):
        room = ctx.shared_room()
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        sender.put(f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(sender.user_id)}", {"typing": True, "timeout": 30000})

        def pred(resp):
            return any(e.get("type") == "m.typing" and sender.user_id in e.get("content", {}).get("user_ids", [])
                       for e in ephemeral(resp, room))

        _, waited = receiver.wait(f"m.typing with {sender.user_id}", pred)
        sender.put(f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(sender.user_id)}", {"typing": False})
        return f"in {room} after {waited:.1f} s"
    return fn


def receipt_check(direction):
    def fn(ctx):
        room = ctx.shared_room()
        sender, receiver = side_of(ctx, direction)
        # The receipt is for the receiver's message, once the sender has it.
        sender.mark()
        target = receiver.say(room, "read me")
        sender.wait(f"message {target}", lambda r: find(r, room, by_id(target)))
        receiver.mark()
        sender.post(f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(target)}", {})

        def pred(resp):
            return any(e.get("type") == "m.receipt"
                       and sender.user_id in e.get("content", {}).get(target, {}).get("m.read", {})
                       for e in ephemeral(resp, room))

        _, waited = receiver.wait(f"m.read receipt of {sender.user_id} for {target}", pred)
        return f"for {target} after {waited:.1f} s"
    return fn


check("5 typing T>S")(typing_check("T>S"))
check("5 typing S>T")(typing_check("S>T"))
check("5 read receipt T>S")(receipt_check("T>S"))
check("5 read receipt S>T")(receipt_check("S>T"))


def presence_check(direction):
    def fn(ctx):
        ctx.shared_room()  # presence is shared with users who share a room
        sender, receiver = side_of(ctx, direction)
        receiver.mark()
        msg = f"interop {direction} {secrets.token_hex(3)}"
        sender.put(f"/_matrix/client/v3/presence/{q(sender.user_id)}/status",
                   {"presence": "online", "status_msg": msg})
        t0 = time.time()
        end = t0 + DEADLINE
        last = None
        while time.time() < end:
            resp = receiver.sync(receiver.since, min(max(end - time.time(), 0), 2.0) * 1000)
            receiver.since = resp.get("next_batch", receiver.since)
            for e in resp.get("presence", {}).get("events", []):
                # The status message tells this change from an earlier
                # "online" (a server may set it when the user syncs).
                c = e.get("content", {})
                if e.get("sender") == sender.user_id and c.get("presence") == "online" and c.get("status_msg") == msg:
                    return f"online with the new status_msg in {receiver.server.label}'s /sync after {time.time() - t0:.1f} s"
            status, body = receiver.call("GET", f"/_matrix/client/v3/presence/{q(sender.user_id)}/status", ok=False)
            last = (status, body)
            if status == 200 and body.get("presence") == "online" and body.get("status_msg") == msg:
                return f"GET /presence/{sender.user_id}/status on {receiver.server.label} says online after {time.time() - t0:.1f} s"
        raise Fail(f"no presence 'online' with status_msg {msg!r} of {sender.user_id} in {receiver.server.label}'s /sync within {DEADLINE:.0f} s;"
                   f" GET /presence/{sender.user_id}/status -> {last[0]} {short(last[1], 200)}")
    return fn


check("6 presence T>S")(presence_check("T>S"))
check("6 presence S>T")(presence_check("S>T"))


def remote_room(ctx, owner_side, preset="public_chat"):
    """A fresh room created by the first user of OWNER_SIDE ('T' or 'S')."""
    owner = ctx.t1 if owner_side == "T" else ctx.s1
    return owner, owner.create_room(preset=preset, name=f"interop {secrets.token_hex(3)}")


def kick_ban_check(direction, action):
    def fn(ctx):
        # The actor (room creator) on one side, the victim (second user) on
        # the other.
        actor_side = direction[0]
        actor, room = remote_room(ctx, actor_side)
        victim = ctx.s2 if actor_side == "T" else ctx.t2
        actor.mark()
        victim.join(room, via=actor.server.server_name)
        await_member(actor, room, victim.user_id, "join")
        victim.mark()
        actor.post(f"/_matrix/client/v3/rooms/{q(room)}/{action}", {"user_id": victim.user_id, "reason": "interop"})
        value = "leave" if action == "kick" else "ban"
        event, waited = await_member(victim, room, victim.user_id, value, section="leave")
        if event.get("sender") != actor.user_id:
            raise Fail(f"{value} event {event.get('event_id')} has sender {event.get('sender')}")
        extra = ""
        if action == "ban":
            status, body = victim.call("POST", f"/_matrix/client/v3/join/{q(room)}?server_name={q(actor.server.server_name)}",
                                       {}, ok=False)
            if 200 <= status < 300:
                raise Fail(f"{value} seen after {waited:.1f} s, but the banned user could rejoin ({status})")
            extra = f"; rejoin refused {status} {body.get('errcode') if isinstance(body, dict) else short(body, 80)}"
        return f"{victim.user_id} saw {value} by {actor.user_id} after {waited:.1f} s{extra}"
    return fn


check("7 kick T>S (Tessera kicks a Synapse user)")(kick_ban_check("T>S", "kick"))
check("7 kick S>T (Synapse kicks a Tessera user)")(kick_ban_check("S>T", "kick"))
check("7 ban T>S (Tessera bans a Synapse user)")(kick_ban_check("T>S", "ban"))
check("7 ban S>T (Synapse bans a Tessera user)")(kick_ban_check("S>T", "ban"))


def invite_check(direction, accept):
    def fn(ctx):
        inviter_side = direction[0]
        inviter, room = remote_room(ctx, inviter_side, preset="private_chat")
        invitee = ctx.s2 if inviter_side == "T" else ctx.t2
        invitee.mark()
        t0 = time.time()
        inviter.post(f"/_matrix/client/v3/rooms/{q(room)}/invite", {"user_id": invitee.user_id})
        took = time.time() - t0

        def invited(resp):
            inv = resp.get("rooms", {}).get("invite", {}).get(room)
            return inv or None

        inv, waited = invitee.wait(f"invite to {room}", invited)
        names = sorted({e.get("type") for e in inv.get("invite_state", {}).get("events", [])})
        inviter.mark()
        if accept:
            got = invitee.post(f"/_matrix/client/v3/rooms/{q(room)}/join", {})["room_id"]
            if got != room:
                raise Fail(f"join answered {got}, expected {room}")
            _, w2 = await_member(inviter, room, invitee.user_id, "join")
            outcome = f"accepted; join in inviter's /sync after {w2:.1f} s"
        else:
            invitee.post(f"/_matrix/client/v3/rooms/{q(room)}/leave", {"reason": "interop"})
            ev, w2 = await_member(inviter, room, invitee.user_id, "leave")
            if ev.get("sender") != invitee.user_id:
                raise Fail(f"leave {ev.get('event_id')} has sender {ev.get('sender')}")
            outcome = f"rejected; leave in inviter's /sync after {w2:.1f} s"
        return f"invite took {took:.1f} s, in invitee's /sync after {waited:.1f} s (invite_state {names}); {outcome}"
    return fn


check("8 invite T>S accepted")(invite_check("T>S", True))
check("8 invite T>S rejected")(invite_check("T>S", False))
check("8 invite S>T accepted")(invite_check("S>T", True))
check("8 invite S>T rejected")(invite_check("S>T", False))


def alias_check(direction):
    def fn(ctx):
        # The asker on one side looks up the alias of the room the other
        # side created.
        asker = ctx.t1 if direction == "T>S" else ctx.s1
        alias_local, room = (ctx.alias_s, ctx.room_s) if direction == "T>S" else (ctx.alias_t, ctx.room_t)
        other = ctx.S if direction == "T>S" else ctx.T
        if not room:
            raise Skip("the aliased room was not created (1a/2a)")
        alias = f"#{alias_local}:{other.server_name}"
        body = asker.get(f"/_matrix/client/v3/directory/room/{q(alias)}")
        if body.get("room_id") != room:
            raise Fail(f"{alias} -> {short(body)}, expected {room}")
        if other.server_name not in body.get("servers", []):
            raise Fail(f"{alias} -> {room}, but servers {body.get('servers')} lacks {other.server_name}")
        return f"{alias} -> {room}, servers {body.get('servers')}"
    return fn


check("9 remote alias lookup by Tessera (alias on Synapse)")(alias_check("T>S"))
check("9 remote alias lookup by Synapse (alias on Tessera)")(alias_check("S>T"))


def profile_check(direction):
    def fn(ctx):
        asker, target = (ctx.t1, ctx.s2) if direction == "T>S" else (ctx.s1, ctx.t2)
        body = asker.get(f"/_matrix/client/v3/profile/{q(target.user_id)}")
        want = ctx.display[target.user_id]
        if body.get("displayname") != want:
            raise Fail(f"GET /profile/{target.user_id} -> {short(body)}, expected displayname {want!r}")
        return f"{target.user_id}: displayname {body['displayname']!r}"
    return fn


check("10 remote profile by Tessera (user on Synapse)")(profile_check("T>S"))
check("10 remote profile by Synapse (user on Tessera)")(profile_check("S>T"))


def page_back(client, room, bodies):
    """Page ROOM back with /messages dir=b, from the prev_batch of the
    joiner's /sync (lazy-loading members: Synapse leaves a room joined with
    partial state out of /sync otherwise), or from the end of the timeline
    (no from, spec v1.3+) if /sync gives none; return (how many of BODIES
    it saw, pages, note)."""
    flt = json.dumps({"room": {"rooms": [room], "timeline": {"limit": 5}, "state": {"lazy_load_members": True}}},
                     separators=(",", ":"))
    resp = client.sync(None, 0, filter_=flt)
    tl = resp.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
    seen = {e.get("content", {}).get("body") for e in tl.get("events", [])}
    token = tl.get("prev_batch")
    note = "" if token else "; no prev_batch in the joiner's /sync, paged from the end"
    pages = 0
    while pages < 30:
        path = f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=10"
        if token:
            path += f"&from={q(token)}"
        status, body = client.call("GET", path, ok=False)
        pages += 1
        if status != 200:
            note += f"; page {pages}: {status} {short(body, 160)}"
            break
        chunk = body.get("chunk", [])
        seen |= {e.get("content", {}).get("body") for e in chunk}
        if not chunk or not body.get("end") or body.get("end") == token:
            if len(seen & set(bodies)) < len(bodies):
                kinds = sorted({e.get("type") for e in chunk})
                why = "no 'end' (the server says the timeline starts here)" if not body.get("end") else "an empty chunk"
                note += f"; last page: {len(chunk)} events {kinds}, {why}"
            break
        token = body["end"]
    return len(seen & set(bodies)), pages, note


def backfill_check(direction):
    def fn(ctx):
        # direction "S>T": the room and its history are on Synapse, the
        # Tessera user joins late and pages back (Tessera's backfill).
        creator, joiner = (ctx.s1, ctx.t1) if direction == "S>T" else (ctx.t1, ctx.s1)
        room = creator.create_room(preset="public_chat", name=f"backfill {direction}",
                                   initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                   "content": {"history_visibility": "shared"}}])
        bodies = [f"backfill {direction} {i:02d}" for i in range(1, 31)]
        for b in bodies:
            creator.say(room, b)
        creator.mark()
        joiner.join(room, via=creator.server.server_name)
        await_member(creator, room, joiner.user_id, "join")
        best = (0, 0, "")
        for attempt in range(3):
            got = page_back(joiner, room, bodies)
            if got[0] > best[0] or attempt == 0:
                best = got
            if best[0] == len(bodies):
                break
            time.sleep(3)
        n, pages, note = best
        line = f"{joiner.server.label} sees {n} of {len(bodies)} earlier messages ({pages} /messages pages){note}"
        if n < len(bodies):
            raise Fail(line)
        return line
    return fn


check("11 backfill: room on Synapse, joined late from Tessera, paged with /messages")(backfill_check("S>T"))
check("11 backfill: room on Tessera, joined late from Synapse, paged with /messages")(backfill_check("T>S"))


# ---------------------------------------------------------------------------

def main():
    global DEADLINE, TRACE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tessera", required=True, help="Tessera client API URL")
    ap.add_argument("--tessera-server", required=True, help="Tessera's server name")
    ap.add_argument("--synapse", required=True, help="Synapse client API URL")
    ap.add_argument("--synapse-server", required=True, help="Synapse's server name")
    ap.add_argument("--secret", default="tessera-bench-secret", help="registration shared secret of both")
    ap.add_argument("--deadline", type=float, default=DEADLINE, help="seconds to wait for a cross-server effect")
    ap.add_argument("--only", help="run only the checks whose name matches this regular expression"
                                   " (checks they depend on are not run: those are skipped)")
    ap.add_argument("--trace", help="write every request and response to this file")
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()
    DEADLINE = args.deadline
    if args.trace:
        TRACE = open(args.trace, "a", encoding="utf-8")
    T = Server("Tessera", args.tessera, args.tessera_server, args.secret)
    S = Server("Synapse", args.synapse, args.synapse_server, args.secret)
    ctx = Ctx(T, S)
    try:
        ctx.setup()
    except Fail as e:
        print(f"FAIL  setup: {e}")
        return 1
    print(f"run {ctx.run}: {ctx.t1.user_id} {ctx.t2.user_id} on Tessera, {ctx.s1.user_id} {ctx.s2.user_id} on Synapse")
    results = []
    for name, fn in CHECKS:
        if args.only and not re.search(args.only, name):
            continue
        trace(f"=== {name}")
        t0 = time.time()
        try:
            reason = fn(ctx) or ""
            verdict = "PASS"
        except Skip as e:
            verdict, reason = "SKIP", str(e)
        except Fail as e:
            verdict, reason = "FAIL", str(e)
        except Exception as e:  # a bug here, or an unexpected answer
            verdict, reason = "FAIL", f"{type(e).__name__}: {e}"
            trace(traceback.format_exc())
        trace(f"=== {verdict} {name}: {reason}")
        stamp = time.strftime("%H:%M:%S", time.localtime(t0))
        print(f"{verdict}  {name} [{stamp}, {time.time() - t0:.1f} s] — {reason}", flush=True)
        results.append({"check": name, "verdict": verdict, "reason": reason, "started": stamp})
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("PASS", "FAIL", "SKIP")}
    print(f"\nsummary: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped, of {len(results)}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"run": ctx.run, "results": results, "summary": counts}, f, indent=2)
    return 0 if counts["PASS"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
