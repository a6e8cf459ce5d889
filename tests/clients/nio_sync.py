#!/usr/bin/env python3
"""A stock matrix-nio sync loop against a homeserver.

Usage: python nio_sync.py http://127.0.0.1:8008

Two fresh users; alice creates a named room and invites bob; bob's first
sync (nio's own parser and schema checks) must show the invite; bob joins;
alice sends a message and types; bob's incremental long-poll sync must
carry the message in the room's timeline and the typing notice in its
ephemeral events, and nio must name the room from the synced state. Exits
1 on any failure.
"""

import asyncio
import secrets
import sys

from nio import AsyncClient, RoomMessageText, SyncResponse, TypingNoticeEvent


async def main(url: str) -> None:
    alice = AsyncClient(url, f"nio_sync_a_{secrets.token_hex(4)}")
    bob = AsyncClient(url, f"nio_sync_b_{secrets.token_hex(4)}")
    try:
        for client in (alice, bob):
            registered = await client.register(client.user, secrets.token_hex(8))
            assert client.access_token, f"registration failed: {registered}"
        created = await alice.room_create(name="nio sync", invite=[bob.user_id])
        room = created.room_id

        first = await bob.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), f"initial sync not parsed: {first}"
        assert room in first.rooms.invite, f"invite missing: {list(first.rooms.invite)}"
        print(f"[ok  ] 1. initial sync shows the invite to {room}")

        await bob.join(room)
        await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hello nio"})
        await alice.room_typing(room, True, 10000)
        later = await bob.sync(timeout=5000, since=first.next_batch)
        assert isinstance(later, SyncResponse), f"incremental sync not parsed: {later}"
        joined = later.rooms.join[room]
        assert any(isinstance(e, RoomMessageText) and e.body == "hello nio" for e in joined.timeline.events)
        print("[ok  ] 2. incremental sync carries the message")
        typing = [e for e in joined.ephemeral if isinstance(e, TypingNoticeEvent)]
        assert typing and alice.user_id in typing[0].users, f"typing missing: {joined.ephemeral}"
        print("[ok  ] 3. ... and the typing notice")
        assert bob.rooms[room].display_name == "nio sync", bob.rooms[room].display_name
        print("[ok  ] 4. nio names the room from the synced state")
        print("PASSED: 4 steps")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except AssertionError as failure:
        print(f"FAILED: {failure}")
        sys.exit(1)
