#!/usr/bin/env python3
"""An end-to-end encrypted conversation against a Kith homeserver, with real
Olm/Megolm crypto from matrix-nio (its `e2e` extra, backed by vodozemac).

Usage: e2ee_nio.py HOMESERVER_URL

Every device has a fresh crypto store in its own temporary directory.

1. Alice and Bob each log in (device A1, B1) and upload device and one-time
   keys. Each sees the other's device through /keys/query with its
   self-signature verified by nio.
2. Alice creates an encrypted DM (m.room.encryption, m.megolm.v1.aes-sha2) and
   invites Bob. They exchange messages; sharing the Megolm session claims
   one-time keys (/keys/claim) and sends Olm-encrypted m.room_key to-device
   messages (/sendToDevice). Each side must *decrypt* the other's messages
   (nio yields RoomMessageText after decryption, MegolmEvent when it cannot),
   and the server must hold nothing but m.room.encrypted ciphertext.
3. Bob logs in a second device (B2). Alice and B1 learn about it from
   device_lists.changed in /sync and fetch its keys. New messages reach B2.
   B2 cannot read the history sent before it existed; it gets those keys from
   B1 by key sharing, which nio only allows between *verified* devices of the
   same user, so B1 and B2 first verify each other with interactive SAS
   verification (m.key.verification.* to-device messages; both sides must
   compute the same emoji from the exchanged keys). Then B2 sends
   m.room_key_request, B1 answers with an Olm-encrypted m.forwarded_room_key,
   and B2 decrypts the whole history.
4. Bob logs in a third device (B3) that gets the history from server-side key
   backup instead: nio 0.26 has no key-backup support, so the script does what
   a client does with nio's own sessions and vodozemac's PkEncryption (the
   m.megolm_backup.v1.curve25519-aes-sha2 scheme): B1 creates a backup version
   whose auth_data it signs with its device key, uploads its Megolm sessions
   encrypted to the backup key (/room_keys/keys), B3 downloads and decrypts them
   with the backup's private key (handed over out of band, as a user typing a
   recovery key would) and imports them into its nio store, then decrypts the
   history.
5. Cross-signing: B1 uploads Bob's master, self-signing and user-signing keys
   (/keys/device_signing/upload) and signs B1 and B2 with the self-signing key,
   B3 signs itself (/keys/signatures/upload); Alice uploads her own keys and
   signs Bob's master key with her user-signing key. Until then nio refuses to
   send Alice's message to unverified devices. From her /keys/query alone
   Alice then checks the chain (her master -> her user-signing key -> Bob's
   master -> Bob's self-signing key -> each device key, every signature
   verified), trusts exactly the devices it covers, and sends the message that
   nio encrypts only when every device in the room is verified; all three of
   Bob's devices decrypt it.

nio 0.26 supports neither cross-signing nor key backup, which is why device
trust between Bob's devices is established with SAS (nio's own
implementation) and the backup and the cross-signing keys are driven by hand
with nio's and vodozemac's primitives (vodozemac accounts serve as the Ed25519
cross-signing key pairs).

Exit status 0 on success; 1 with a message naming the mismatch otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    KeyVerificationStart,
    LoginResponse,
    LogoutResponse,
    MegolmEvent,
    OlmUnverifiedDeviceError,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    ToDeviceResponse,
)
from nio.crypto import InboundGroupSession
from nio.crypto.sas import SasState
from unpaddedbase64 import encode_base64
import vodozemac

PASSWORD = "correct horse battery staple"
MEGOLM = "m.megolm.v1.aes-sha2"
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
TIMEOUT = 60.0  # seconds for anything to arrive


class Failure(Exception):
    """A mismatch between what the server did and what the scenario expects."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


def describe(resp: Any) -> str:
    if isinstance(resp, ErrorResponse):
        status = getattr(getattr(resp, "transport_response", None), "status", "?")
        return f"{type(resp).__name__}(HTTP {status}, errcode={resp.status_code!r}, error={resp.message!r})"
    return repr(resp)


def expect(resp: Any, cls: type, what: str) -> Any:
    if not isinstance(resp, cls):
        raise Failure(f"{what}: expected {cls.__name__}, got {describe(resp)}")
    return resp


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Device:
    """One logged-in device with its own crypto store."""

    name: str
    client: AsyncClient
    store: str
    texts: dict[str, RoomMessageText] = field(default_factory=dict)  # event id -> decrypted message
    undecrypted: dict[str, MegolmEvent] = field(default_factory=dict)  # event id -> still encrypted
    to_device: list[Any] = field(default_factory=list)
    prev_batch: dict[str, str] = field(default_factory=dict)  # room id -> prev_batch of its first synced timeline

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def device_id(self) -> str:
        return self.client.device_id

    @property
    def ed25519(self) -> str:
        return self.client.olm.account.identity_keys["ed25519"]


def config(encryption: bool) -> AsyncClientConfig:
    # Fail fast instead of retrying forever on timeouts / 429.
    return AsyncClientConfig(
        encryption_enabled=encryption, max_timeouts=2, max_limit_exceeded=0, request_timeout=30,
        store_sync_tokens=True,
    )


async def register(hs: str, localpart: str) -> str:
    client = AsyncClient(hs, config=config(False))
    reg = expect(await client.register(localpart, PASSWORD), RegisterResponse, f"register {localpart}")
    expect(await client.logout(), LogoutResponse, f"log out {localpart}'s registration device")
    await client.close()
    return reg.user_id


async def login(hs: str, user_id: str, name: str) -> Device:
    store = tempfile.mkdtemp(prefix=f"kith-e2ee-{name}-")
    client = AsyncClient(hs, user_id, store_path=store, config=config(True))
    expect(await client.login(PASSWORD, device_name=name), LoginResponse, f"{name}: login")
    check(client.olm is not None, f"{name}: nio did not load a crypto store (is the e2e extra installed?)")
    device = Device(name, client, store)
    check(client.should_upload_keys, f"{name}: a fresh device must have keys to upload")
    resp = expect(await client.keys_upload(), KeysUploadResponse, f"{name}: /keys/upload")
    count = resp.signed_curve25519_count
    check(count > 0, f"{name}: /keys/upload reported {count} signed_curve25519 one-time keys after uploading some")
    log(f"{name} ({user_id} {client.device_id}) uploaded its keys; {count} one-time keys on the server")
    return device


def record(device: Device, event: Any) -> None:
    if isinstance(event, RoomMessageText):
        device.texts[event.event_id] = event
        device.undecrypted.pop(event.event_id, None)
    elif isinstance(event, MegolmEvent):
        device.undecrypted.setdefault(event.event_id, event)


async def step(device: Device, timeout_ms: int = 0) -> SyncResponse:
    """One /sync plus the housekeeping nio's sync_forever does (to-device
    messages out, key upload, key query, key claim), then a retry of every
    message that could not be decrypted yet."""
    client = device.client
    resp = expect(await client.sync(timeout=timeout_ms), SyncResponse, f"{device.name}: /sync")
    for room_id, room in resp.rooms.join.items():
        if room.timeline.prev_batch:
            device.prev_batch.setdefault(room_id, room.timeline.prev_batch)
        for event in room.timeline.events:
            record(device, event)
    device.to_device.extend(resp.to_device_events)
    expect_all(await client.send_to_device_messages(), ToDeviceResponse, f"{device.name}: /sendToDevice")
    if client.should_upload_keys:
        expect(await client.keys_upload(), KeysUploadResponse, f"{device.name}: /keys/upload")
    if client.should_query_keys:
        expect(await client.keys_query(), KeysQueryResponse, f"{device.name}: /keys/query")
    if client.should_claim_keys:
        users = client.get_users_for_key_claiming()
        resp_claim = await client.keys_claim(users)
        check(not isinstance(resp_claim, ErrorResponse), f"{device.name}: /keys/claim: {describe(resp_claim)}")
    expect_all(await client.send_to_device_messages(), ToDeviceResponse, f"{device.name}: /sendToDevice")
    for event_id, event in list(device.undecrypted.items()):
        try:
            decrypted = client.decrypt_event(event)
        except Exception:  # noqa: BLE001 - nio raises EncryptionError subclasses; still missing a key
            continue
        record(device, decrypted)
    return resp


def expect_all(responses: list[Any], cls: type, what: str) -> None:
    for resp in responses or []:
        expect(resp, cls, what)


async def until(devices: list[Device], done: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Syncs every device in turn until `done()` holds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {timeout:.0f} s")
        for device in devices:
            await step(device, 200)
    log(f"ok: {what}")


def members(device: Device, room_id: str) -> set[str]:
    """The joined members of `room_id` as `device` has synced them."""
    room = device.client.rooms.get(room_id)
    return set(room.users) if room else set()


def knows_device(observer: Device, other: Device) -> bool:
    """`observer` has fetched `other`'s device keys, and they are `other`'s real keys."""
    devices = observer.client.device_store.active_user_devices(other.user_id)
    for device in devices:
        if device.id == other.device_id:
            check(device.ed25519 == other.ed25519,
                  f"{observer.name} got a different ed25519 key for {other.name}: {device.ed25519} != {other.ed25519}")
            return True
    return False


async def send_text(sender: Device, room_id: str, body: str) -> str:
    content = {"msgtype": "m.text", "body": body}
    resp = expect(
        await sender.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True),
        RoomSendResponse, f"{sender.name}: send {body!r}",
    )
    return resp.event_id


async def raw_event(device: Device, room_id: str, event_id: str) -> dict:
    """The event exactly as the server stores it."""
    path = f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}"
    return await raw(device, "GET", path)


async def raw(device: Device, method: str, path: str, body: Any = None) -> Any:
    client = device.client
    headers = {"Authorization": f"Bearer {client.access_token}"}
    data = None if body is None else json.dumps(body)
    if data is not None:
        headers["Content-Type"] = "application/json"
    transport = await client.send(method, path, data, headers)
    text = await transport.text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = text
    if transport.status != 200:
        raise Failure(f"{device.name}: {method} {path} -> HTTP {transport.status}: {text}")
    return parsed


async def check_ciphertext_only(device: Device, room_id: str, event_id: str, plaintext: str) -> None:
    event = await raw_event(device, room_id, event_id)
    check(event.get("type") == "m.room.encrypted", f"server holds {event_id} as {event.get('type')}: {event}")
    content = event.get("content", {})
    check(content.get("algorithm") == MEGOLM and isinstance(content.get("ciphertext"), str),
          f"{event_id} is not Megolm ciphertext: {event}")
    check(plaintext not in json.dumps(event, ensure_ascii=False), f"plaintext {plaintext!r} visible on the server")


async def converse(alice: Device, bob: Device, room_id: str,
                   script: list[tuple[Device, str]]) -> list[tuple[str, str]]:
    """Sends each (sender, text) and waits until the other side has decrypted it.
    Returns the (event id, text) pairs."""
    sent = []
    for sender, text in script:
        receiver = bob if sender is alice else alice
        event_id = await send_text(sender, room_id, text)
        sent.append((event_id, text))
        await until([receiver, sender], lambda: event_id in receiver.texts,
                    f"{receiver.name} decrypts {sender.name}'s {text!r}")
        got = receiver.texts[event_id]
        check(got.body == text, f"{receiver.name} decrypted {got.body!r}, {sender.name} sent {text!r}")
        check(got.sender == sender.user_id, f"decrypted event has sender {got.sender}")
        check(getattr(got, "decrypted", False), f"{receiver.name} got {event_id} in plaintext: {got.source}")
        await check_ciphertext_only(receiver, room_id, event_id, text)
    return sent


# ---------------------------------------------------------------------------
# Phase 3: SAS verification and key sharing between two devices of one user
# ---------------------------------------------------------------------------

async def sas_verify(initiator: Device, responder: Device) -> None:
    """Interactive SAS verification; both sides end up trusting each other."""
    others = initiator.client.device_store.active_user_devices(responder.user_id)
    target = next(d for d in others if d.id == responder.device_id)
    expect(await initiator.client.start_key_verification(target), ToDeviceResponse,
           f"{initiator.name}: m.key.verification.start")

    def start_event() -> KeyVerificationStart | None:
        for event in responder.to_device:
            if isinstance(event, KeyVerificationStart) and event.from_device == initiator.device_id:
                return event
        return None

    await until([responder], lambda: start_event() is not None,
                f"{responder.name} receives the verification request of {initiator.name}")
    transaction_id = start_event().transaction_id
    check(transaction_id in responder.client.key_verifications,
          f"{responder.name} did not take up verification {transaction_id}")
    expect(await responder.client.accept_key_verification(transaction_id), ToDeviceResponse,
           f"{responder.name}: m.key.verification.accept")

    def sas_of(device: Device):
        return device.client.key_verifications.get(transaction_id)

    def both_have_keys() -> bool:
        return all(sas_of(d) is not None and sas_of(d).state == SasState.key_received for d in (initiator, responder))

    await until([initiator, responder], both_have_keys, "SAS public keys exchanged both ways")
    emoji_i, emoji_r = sas_of(initiator).get_emoji(), sas_of(responder).get_emoji()
    check(emoji_i == emoji_r, f"SAS mismatch (keys altered in transit?): {emoji_i} vs {emoji_r}")
    log(f"ok: both devices show the same emoji: {' '.join(e for e, _ in emoji_i)}")
    for device in (initiator, responder):
        expect(await device.client.confirm_short_auth_string(transaction_id), ToDeviceResponse,
               f"{device.name}: m.key.verification.mac")

    def verified(observer: Device, other: Device) -> bool:
        devices = observer.client.device_store.active_user_devices(other.user_id)
        return any(d.id == other.device_id and observer.client.olm.is_device_verified(d) for d in devices)

    await until([initiator, responder],
                lambda: verified(initiator, responder) and verified(responder, initiator),
                f"{initiator.name} and {responder.name} verified each other")


async def key_sharing(old: Device, new: Device, history: dict[str, str]) -> None:
    """`new` gets the Megolm keys of `history` (event id -> text) from `old`."""
    check(all(event_id in new.undecrypted for event_id in history),
          f"{new.name} should hold the history undecrypted before key sharing: "
          f"{sorted(set(history) - set(new.undecrypted))} missing")
    sessions = {new.undecrypted[event_id].session_id: new.undecrypted[event_id] for event_id in history}
    for session_id, event in sessions.items():
        if session_id not in new.client.outgoing_key_requests:
            resp = await new.client.request_room_key(event)  # to all our own devices
            check(not isinstance(resp, ErrorResponse), f"{new.name}: m.room_key_request: {describe(resp)}")
        else:
            # nio already asked the session's *sender* on its own when decryption failed (another
            # user, who never forwards keys); ask our own devices too, under a fresh request id.
            message = event.as_key_request(new.user_id, new.device_id, request_id=str(uuid.uuid4()))
            expect(await new.client.to_device(message), ToDeviceResponse, f"{new.name}: m.room_key_request")
    log(f"{new.name} requested {len(sessions)} Megolm session(s) from its other devices")

    deadline = time.monotonic() + TIMEOUT
    while not all(event_id in new.texts for event_id in history):
        check(time.monotonic() < deadline, f"{new.name} did not get the history keys from {old.name} "
              f"within {TIMEOUT:.0f} s; still undecrypted: {sorted(set(history) - set(new.texts))}; "
              f"{new.name} needs {sorted((e.sender, e.sender_key, e.session_id) for e in sessions.values())}, "
              f"asked for {sorted(new.client.outgoing_key_requests)}; {old.name} has "
              f"{sorted((g.sender_key, g.id) for g in old.client.olm.inbound_group_store)}, waiting for consent: "
              f"{list(old.client.olm.key_request_from_untrusted)}")
        await step(old, 200)
        # nio handles key requests only when a sync brings something new; requests put back after
        # claiming a one-time key for the Olm session would wait for that, so collect them now.
        old.client.olm.collect_key_requests()
        # Requests that arrived while `new` was not yet verified wait for the user's consent.
        for request in old.client.get_active_key_requests(new.user_id, new.device_id):
            old.client.continue_key_share(request)
        expect_all(await old.client.send_to_device_messages(), ToDeviceResponse, f"{old.name}: /sendToDevice")
        await step(new, 200)
    for event_id, text in history.items():
        check(new.texts[event_id].body == text, f"{new.name}: {event_id} decrypted to {new.texts[event_id].body!r}")
    log(f"ok: {new.name} decrypts the history with keys forwarded by {old.name}")


# ---------------------------------------------------------------------------
# Phase 4: server-side key backup
# ---------------------------------------------------------------------------

def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def backup_upload(device: Device, room_id: str) -> tuple[str, vodozemac.Curve25519SecretKey, int]:
    """Creates a backup version and uploads `device`'s Megolm sessions of
    `room_id` to it. Returns (version, private key, number of sessions)."""
    secret = vodozemac.Curve25519SecretKey()
    public = vodozemac.PkDecryption.from_key(secret).public_key
    auth_data: dict[str, Any] = {"public_key": public.to_base64()}
    signature = device.client.olm.account.sign(canonical(auth_data))
    auth_data["signatures"] = {device.user_id: {f"ed25519:{device.device_id}": signature}}
    created = await raw(device, "POST", "/_matrix/client/v3/room_keys/version",
                        {"algorithm": BACKUP_ALGORITHM, "auth_data": auth_data})
    version = created["version"]

    encryption = vodozemac.PkEncryption.from_key(public)
    sessions = {}
    for session in device.client.olm.inbound_group_store:
        if session.room_id != room_id:
            continue
        payload = {
            "algorithm": MEGOLM,
            "forwarding_curve25519_key_chain": session.forwarding_chain,
            "sender_key": session.sender_key,
            "sender_claimed_keys": {"ed25519": session.ed25519},
            "session_key": session.export_session(session.first_known_index),
        }
        message = encryption.encrypt(json.dumps(payload).encode())
        ciphertext, mac, ephemeral = (encode_base64(part) for part in (message.ciphertext, message.mac,
                                                                        message.ephemeral_key))
        sessions[session.id] = {
            "first_message_index": session.first_known_index,
            "forwarded_count": len(session.forwarding_chain),
            "is_verified": True,
            "session_data": {"ciphertext": ciphertext, "mac": mac, "ephemeral": ephemeral},
        }
    check(sessions, f"{device.name} has no Megolm sessions for {room_id} to back up")
    resp = await raw(device, "PUT", f"/_matrix/client/v3/room_keys/keys/{room_id}?version={version}",
                     {"sessions": sessions})
    check(resp.get("count") == len(sessions), f"backup count {resp.get('count')} != {len(sessions)} uploaded: {resp}")
    check(isinstance(resp.get("etag"), str), f"backup upload without etag: {resp}")
    log(f"ok: {device.name} backed up {len(sessions)} Megolm session(s) in backup version {version}")
    return version, secret, len(sessions)


async def backup_restore(device: Device, secret: vodozemac.Curve25519SecretKey, expected: int) -> None:
    """Finds the current backup, checks it is ours, and imports its sessions into `device`'s store."""
    decryption = vodozemac.PkDecryption.from_key(secret)
    info = await raw(device, "GET", "/_matrix/client/v3/room_keys/version")
    check(info.get("algorithm") == BACKUP_ALGORITHM, f"backup algorithm: {info}")
    check(info["auth_data"].get("public_key") == decryption.public_key.to_base64(),
          f"the current backup is not encrypted to our key: {info}")
    check(info.get("count") == expected, f"backup count {info.get('count')} != {expected}: {info}")
    version = info["version"]
    keys = await raw(device, "GET", f"/_matrix/client/v3/room_keys/keys?version={version}")
    imported = 0
    for room_id, room in keys.get("rooms", {}).items():
        for session_id, data in room.get("sessions", {}).items():
            sd = data["session_data"]
            message = vodozemac.Message.from_base64(sd["ciphertext"], sd["mac"], sd["ephemeral"])
            payload = json.loads(decryption.decrypt(message))
            session = InboundGroupSession.import_session(
                payload["session_key"],
                payload["sender_claimed_keys"]["ed25519"],
                payload["sender_key"],
                room_id,
                payload["forwarding_curve25519_key_chain"],
            )
            check(session.id == session_id, f"backed-up session {session_id} decrypts to session {session.id}")
            if device.client.olm.inbound_group_store.add(session):
                device.client.olm.save_inbound_group_session(session)
            imported += 1
    check(imported == expected, f"{device.name} restored {imported} sessions, expected {expected}")
    log(f"ok: {device.name} restored {imported} Megolm session(s) from backup version {version}")


async def fetch_history(device: Device, room_id: str) -> None:
    """Pages back through the room (from before the first timeline /sync gave
    `device`) so that it has seen every event."""
    token = device.prev_batch.get(room_id)
    check(token is not None, f"{device.name}: no prev_batch for {room_id} in /sync")
    for _ in range(50):
        resp = expect(await device.client.room_messages(room_id, start=token, limit=50), RoomMessagesResponse,
                      f"{device.name}: /messages")
        for event in resp.chunk:
            record(device, event)
        if not resp.chunk or not resp.end:
            return
        token = resp.end


# ---------------------------------------------------------------------------
# Phase 5: cross-signing
# ---------------------------------------------------------------------------

class CrossSigning:
    """A user's master, self-signing and user-signing keys (vodozemac accounts
    serve as Ed25519 key pairs; nio has no cross-signing of its own)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master, self.self_signing, self.user_signing = (vodozemac.Account() for _ in range(3))

    @staticmethod
    def public(key: vodozemac.Account) -> str:
        return key.ed25519_key.to_base64()

    def key_object(self, usage: str, key: vodozemac.Account) -> dict:
        public = self.public(key)
        return {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}

    def upload_body(self, device: Device) -> dict:
        master = self.key_object("master", self.master)
        # The master key is also signed by the device that created it, as clients do.
        master["signatures"] = {self.user_id: {f"ed25519:{device.device_id}": device.client.olm.account.sign(
            canonical(master))}}
        ssk = self.key_object("self_signing", self.self_signing)
        usk = self.key_object("user_signing", self.user_signing)
        for key in (ssk, usk):
            sign_with(key, self.user_id, self.master)
        return {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}


def unsigned_copy(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def sign_with(obj: dict, user_id: str, key: vodozemac.Account) -> dict:
    signature = key.sign(canonical(unsigned_copy(obj)).encode()).to_base64()
    obj.setdefault("signatures", {}).setdefault(user_id, {})[f"ed25519:{CrossSigning.public(key)}"] = signature
    return obj


def signed_by(obj: dict, user_id: str, public: str, key_id: str | None = None) -> bool:
    """`obj` carries a valid signature by `user_id`'s key `public` (under `key_id`,
    by default `ed25519:<public>` as for cross-signing keys)."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(key_id or f"ed25519:{public}")
    if not isinstance(signature, str):
        return False
    try:
        vodozemac.Ed25519PublicKey.from_base64(public).verify_signature(
            canonical(unsigned_copy(obj)).encode(), vodozemac.Ed25519Signature.from_base64(signature))
    except Exception:  # noqa: BLE001 - vodozemac raises SignatureException / DecodeException
        return False
    return True


def single_public(key_object: dict) -> str:
    keys = list(key_object.get("keys", {}).values())
    check(len(keys) == 1, f"a cross-signing key must hold exactly one key: {key_object}")
    return keys[0]


async def upload_cross_signing(device: Device) -> CrossSigning:
    keys = CrossSigning(device.user_id)
    resp = await raw(device, "POST", "/_matrix/client/v3/keys/device_signing/upload", keys.upload_body(device))
    check(resp == {}, f"{device.name}: /keys/device_signing/upload: {resp}")
    log(f"ok: {device.name} uploaded cross-signing keys for {device.user_id} (first upload: no UIA)")
    return keys


async def query_keys(device: Device, user_id: str) -> dict:
    resp = await raw(device, "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}})
    check(not resp.get("failures"), f"{device.name}: /keys/query failures: {resp}")
    return resp


async def upload_signatures(device: Device, signed: dict) -> None:
    resp = await raw(device, "POST", "/_matrix/client/v3/keys/signatures/upload", signed)
    check(not resp.get("failures"), f"{device.name}: /keys/signatures/upload rejected valid signatures: {resp}")


async def sign_devices(signer: Device, keys: CrossSigning, device_ids: list[str]) -> None:
    """`signer` signs the device keys the server holds for `device_ids` with the self-signing key."""
    own = await query_keys(signer, keys.user_id)
    signed = {}
    for device_id in device_ids:
        stored = own["device_keys"][keys.user_id].get(device_id)
        check(stored is not None, f"{signer.name}: no device keys for {device_id} in {own}")
        signed[device_id] = sign_with(unsigned_copy(stored), keys.user_id, keys.self_signing)
    await upload_signatures(signer, {keys.user_id: signed})


async def trust_through_cross_signing(viewer: Device, viewer_keys: CrossSigning, other_id: str) -> list[str]:
    """Checks, from `viewer`'s /keys/query alone, the chain viewer's master ->
    user-signing key -> other's master -> self-signing key -> each device, and
    marks every device so verified as trusted in `viewer`'s nio store.
    Returns the device ids verified this way."""
    mine = await query_keys(viewer, viewer.user_id)
    usk = mine["user_signing_keys"][viewer.user_id]
    my_master = CrossSigning.public(viewer_keys.master)
    check(single_public(mine["master_keys"][viewer.user_id]) == my_master, "the server changed our master key")
    check(signed_by(usk, viewer.user_id, my_master), f"our user-signing key is not signed by our master key: {usk}")
    usk_public = single_public(usk)

    theirs = await query_keys(viewer, other_id)
    master = theirs["master_keys"][other_id]
    check(signed_by(master, viewer.user_id, usk_public),
          f"{other_id}'s master key does not carry our user-signing signature: {master}")
    master_public = single_public(master)
    ssk = theirs["self_signing_keys"][other_id]
    check("self_signing" in ssk.get("usage", []), f"not a self-signing key: {ssk}")
    check(signed_by(ssk, other_id, master_public), f"{other_id}'s self-signing key is not signed by the master: {ssk}")
    ssk_public = single_public(ssk)

    verified = []
    for device_id, device_keys in theirs["device_keys"].get(other_id, {}).items():
        ed25519 = device_keys["keys"].get(f"ed25519:{device_id}")
        self_signed = signed_by(device_keys, other_id, ed25519, f"ed25519:{device_id}")
        if not (self_signed and signed_by(device_keys, other_id, ssk_public)):
            continue
        nio_device = next((d for d in viewer.client.device_store.active_user_devices(other_id) if d.id == device_id),
                          None)
        check(nio_device is not None and nio_device.ed25519 == ed25519,
              f"{viewer.name}: nio's keys for {device_id} differ from the cross-signed ones")
        viewer.client.verify_device(nio_device)
        verified.append(device_id)
    return sorted(verified)


# ---------------------------------------------------------------------------

async def scenario(hs: str) -> None:
    run = uuid.uuid4().hex[:6]
    alice_id = await register(hs, f"alice{run}")
    bob_id = await register(hs, f"bob{run}")
    a1 = await login(hs, alice_id, "A1")
    b1 = await login(hs, bob_id, "B1")
    devices = [a1, b1]
    try:
        # Phase 2: the encrypted DM.
        created = expect(await a1.client.room_create(
            is_direct=True, invite=[bob_id],
            initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}],
        ), RoomCreateResponse, "A1: create the encrypted DM")
        room_id = created.room_id
        await until([b1], lambda: room_id in b1.client.invited_rooms, "B1 sees the invite")
        expect(await b1.client.join(room_id), JoinResponse, "B1: join")
        await until([a1, b1], lambda: {alice_id, bob_id} <= members(a1, room_id) & members(b1, room_id),
                    "both are members")
        check(a1.client.rooms[room_id].encrypted and b1.client.rooms[room_id].encrypted, "the room is not encrypted")
        await until([a1, b1], lambda: knows_device(a1, b1) and knows_device(b1, a1),
                    "A1 and B1 fetched each other's device keys (/keys/query, signatures checked by nio)")

        history = await converse(a1, b1, room_id, [
            (a1, "Hello Bob 🔐, this is end-to-end encrypted"),
            (b1, "Hi Alice 👋 I can read you"),
            (a1, "Great: Olm sessions both ways, Megolm in the room"),
            (b1, "And the server only sees ciphertext 🎉"),
        ])
        texts = dict(history)
        # One-time keys were claimed and replenished; /sync reports the device's count.
        count = (await step(a1)).device_key_count.signed_curve25519
        check(count is not None and count > 0, f"A1: device_one_time_keys_count missing or zero: {count}")

        # Phase 3: a second device of Bob.
        b2 = await login(hs, bob_id, "B2")
        devices.append(b2)
        await until([b2], lambda: room_id in b2.client.rooms, "B2 sees the room")
        await until([a1, b1, b2], lambda: knows_device(a1, b2) and knows_device(b1, b2) and knows_device(b2, b1),
                    "A1 and B1 learn about B2 through device_lists.changed, and B2 about B1")
        # nio keeps using a Megolm session that was already shared; rotate it so B2 gets the new one
        # (what Element does when a member gets a new device).
        a1.client.invalidate_outbound_session(room_id)
        [(welcome_id, welcome)] = await converse(a1, b1, room_id, [(a1, "Bob, welcome to your new device")])
        await until([b2], lambda: welcome_id in b2.texts, "B2 decrypts a message sent after it logged in")
        check(b2.texts[welcome_id].body == welcome, f"B2 decrypted {b2.texts[welcome_id].body!r}")

        await fetch_history(b2, room_id)
        await sas_verify(b1, b2)
        await key_sharing(b1, b2, texts)

        # Phase 4: a third device of Bob restores the history from the key backup.
        version, secret, n = await backup_upload(b1, room_id)
        b3 = await login(hs, bob_id, "B3")
        devices.append(b3)
        await until([b3], lambda: room_id in b3.client.rooms, "B3 sees the room")
        await fetch_history(b3, room_id)
        check(all(event_id in b3.undecrypted for event_id in texts),
              f"B3 must not be able to read the history yet: {sorted(set(texts) - set(b3.undecrypted))}")
        await backup_restore(b3, secret, n)
        await until([b3], lambda: all(event_id in b3.texts for event_id in texts), "B3 decrypts the history")
        for event_id, text in texts.items():
            check(b3.texts[event_id].body == text, f"B3: {event_id} decrypted to {b3.texts[event_id].body!r}")
        log(f"ok: backup version {version} restored on a fresh device")

        # Phase 5: cross-signing. B1 creates Bob's cross-signing keys and signs the devices it verified
        # (itself, B2); B3 signs itself with the self-signing key, which it gets out of band (as from
        # secret storage with a recovery key). Alice signs Bob's master key with her user-signing key
        # once (after comparing it out of band). From then on Alice trusts each of Bob's devices by the
        # signature chain alone, and sends a message nio only encrypts if every device is verified.
        bob_keys = await upload_cross_signing(b1)
        await sign_devices(b1, bob_keys, [b1.device_id, b2.device_id])
        await sign_devices(b3, bob_keys, [b3.device_id])
        alice_keys = await upload_cross_signing(a1)
        bob_master = (await query_keys(a1, bob_id))["master_keys"][bob_id]
        check(single_public(bob_master) == CrossSigning.public(bob_keys.master), "alice got another master key for bob")
        await upload_signatures(a1, {bob_id: {single_public(bob_master): sign_with(
            unsigned_copy(bob_master), alice_id, alice_keys.user_signing)}})
        await until([a1], lambda: knows_device(a1, b3), "A1 learns about B3")
        a1.client.invalidate_outbound_session(room_id)
        content = {"msgtype": "m.text", "body": "Only for Bob's verified devices ✅"}
        try:
            await a1.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=False)
            raise Failure("nio encrypted to Bob's devices before Alice verified them")
        except OlmUnverifiedDeviceError:
            pass  # as it must: nothing is verified yet
        verified = await trust_through_cross_signing(a1, alice_keys, bob_id)
        expected = sorted([b1.device_id, b2.device_id, b3.device_id])
        check(verified == expected, f"alice verified {verified} through cross-signing, expected {expected}")
        log(f"ok: A1 verified all of Bob's devices through cross-signing: {verified}")
        a1.client.invalidate_outbound_session(room_id)
        sent = expect(await a1.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=False),
                      RoomSendResponse, "A1: send to verified devices only (nio refuses if any is unverified)")
        await until([b1, b2, b3], lambda: all(sent.event_id in d.texts for d in (b1, b2, b3)),
                    "every one of Bob's devices decrypts the message sent to verified devices only")
    finally:
        for device in devices:
            await device.client.close()
            shutil.rmtree(device.store, ignore_errors=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    # E2EE_NIO_LOG=INFO (or DEBUG) shows what nio's crypto layer does.
    level = os.environ.get("E2EE_NIO_LOG", "ERROR").upper()
    logging.basicConfig(level=getattr(logging, level, logging.ERROR), format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(scenario(sys.argv[1].rstrip("/")))
    except Failure as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    print("PASS: encrypted conversation, SAS verification, key sharing, key backup and cross-signing", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
