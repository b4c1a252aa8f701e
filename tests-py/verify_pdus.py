#!/usr/bin/env python3
"""Independent verification of Kith's PDUs with the libraries Synapse uses.

Usage: verify_pdus.py FILE

FILE is JSON:

    {
      "server_keys": <GET /_matrix/key/v2/server response>   (or a list of them),
      "events": [
        {"event_id": "$...", "room_version": "12", "pdu": {...},
         "redacted": false},                                  ("redacted" optional)
        ...
      ]
    }

For every PDU this checks, following the server-server API "Signing Events"
and the room version specifications:

1. the content hash: sha256 of the canonical JSON of the PDU without
   `unsigned`, `signatures` and `hashes` equals `hashes.sha256` (unpadded
   base64). A PDU the server has redacted (pruned) is accepted when its hash
   does not match only if it is exactly its own redaction, as a receiving
   server would accept a redacted copy;
2. the event id: for room versions 1 and 2 it is the PDU's `event_id`; for 3
   and later it is "$" + the reference hash (sha256 of the canonical JSON of
   the redacted PDU without `signatures` and `unsigned`), unpadded base64,
   standard alphabet in v3 and URL-safe from v4;
3. the ed25519 signature of the sender's server (and, in v1/v2, of the
   event id's server) over the redacted PDU, with signedjson, against the
   keys of the server key response, whose self-signature is verified first.

The redaction algorithm is implemented here from the room version
specifications, independently of the server.

Exits 0 and prints "verified N events" when every check passes; otherwise
prints every failure and exits 1 (2 for unusable input).
"""

import base64
import copy
import hashlib
import json
import sys

try:
    import canonicaljson
    import signedjson.key
    import signedjson.sign
    import unpaddedbase64
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"missing Python package ({e}); run: pip install -r tests-py/requirements.txt\n"
    )
    sys.exit(2)

KNOWN_VERSIONS = {str(v) for v in range(1, 13)}


def version_number(room_version):
    if room_version not in KNOWN_VERSIONS:
        raise ValueError(f"unknown room version {room_version!r}")
    return int(room_version)


# --- The redaction algorithm, per room version -------------------------------

# v1-v10 (fragments v1-redactions, v6-redactions, v9-redactions and v8.md).
TOP_LEVEL_V1 = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
    "origin_server_ts", "membership",
}
# v11 and later (fragment v11-redactions): no prev_state, origin, membership.
TOP_LEVEL_V11 = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
}

POWER_LEVEL_KEYS = {
    "ban", "events", "events_default", "kick", "redact", "state_default", "users",
    "users_default",
}


def redact_content(event_type, content, v):
    """The content a redacted event of `event_type` keeps in room version `v`."""
    if not isinstance(content, dict):
        return {}
    keep = set()
    if event_type == "m.room.member":
        keep = {"membership"}
        if v >= 9:
            keep.add("join_authorised_via_users_server")
        if v >= 11:
            kept = {k: content[k] for k in keep if k in content}
            tpi = content.get("third_party_invite")
            if isinstance(tpi, dict) and "signed" in tpi:
                kept["third_party_invite"] = {"signed": tpi["signed"]}
            return kept
    elif event_type == "m.room.create":
        if v >= 11:
            return copy.deepcopy(content)
        keep = {"creator"}
    elif event_type == "m.room.join_rules":
        keep = {"join_rule"}
        if v >= 8:
            keep.add("allow")
    elif event_type == "m.room.power_levels":
        keep = set(POWER_LEVEL_KEYS)
        if v >= 11:
            keep.add("invite")
    elif event_type == "m.room.aliases":
        if v <= 5:
            keep = {"aliases"}
    elif event_type == "m.room.history_visibility":
        keep = {"history_visibility"}
    elif event_type == "m.room.redaction":
        if v >= 11:
            keep = {"redacts"}
    return {k: copy.deepcopy(content[k]) for k in keep if k in content}


def redact(pdu, room_version):
    """The PDU after the redaction algorithm of `room_version`."""
    v = version_number(room_version)
    allowed = TOP_LEVEL_V11 if v >= 11 else TOP_LEVEL_V1
    out = {k: copy.deepcopy(val) for k, val in pdu.items() if k in allowed}
    out["content"] = redact_content(pdu.get("type"), pdu.get("content", {}), v)
    return out


# --- Hashes -------------------------------------------------------------------

def sha256_canonical(obj):
    return hashlib.sha256(canonicaljson.encode_canonical_json(obj)).digest()


def content_hash(pdu):
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return unpaddedbase64.encode_base64(sha256_canonical(stripped))


def reference_hash(pdu, room_version):
    redacted = redact(pdu, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return sha256_canonical(redacted)


def expected_event_id(pdu, room_version):
    v = version_number(room_version)
    if v <= 2:
        return pdu.get("event_id")
    digest = reference_hash(pdu, room_version)
    return "$" + unpaddedbase64.encode_base64(digest, urlsafe=(v >= 4))


# --- Keys -----------------------------------------------------------------------

def load_server_keys(responses, failures):
    """{server_name: {key_id: VerifyKey}} from key responses whose self-signature verifies."""
    if isinstance(responses, dict):
        responses = [responses]
    keys = {}
    for resp in responses:
        server = resp.get("server_name")
        verify_keys = resp.get("verify_keys") or {}
        if not server or not verify_keys:
            failures.append(f"server key response without server_name or verify_keys: {resp}")
            continue
        decoded = {}
        for key_id, entry in verify_keys.items():
            try:
                raw = unpaddedbase64.decode_base64(entry["key"])
                decoded[key_id] = signedjson.key.decode_verify_key_bytes(key_id, raw)
            except Exception as e:  # noqa: BLE001 - report any malformed key
                failures.append(f"server {server}: cannot decode verify key {key_id}: {e}")
        sigs = (resp.get("signatures") or {}).get(server) or {}
        self_signed = [k for k in decoded if k in sigs]
        if not self_signed:
            failures.append(
                f"server {server}: key response is not signed by any of its own keys "
                f"{sorted(decoded)} (signatures: {sorted(sigs)})"
            )
            continue
        ok = True
        for key_id in self_signed:
            try:
                signedjson.sign.verify_signed_json(copy.deepcopy(resp), server, decoded[key_id])
            except signedjson.sign.SignatureVerifyException as e:
                failures.append(f"server {server}: self-signature with {key_id} does not verify: {e}")
                ok = False
        if ok:
            keys.setdefault(server, {}).update(decoded)
    return keys


def server_of(identifier):
    """The server name of a user id or (v1/v2) event id: everything after the first ':'."""
    if not isinstance(identifier, str) or ":" not in identifier:
        return None
    return identifier.split(":", 1)[1]


def verify_signatures(pdu, room_version, keys):
    """A list of problems with the signatures of `pdu` (empty when valid)."""
    v = version_number(room_version)
    servers = []
    sender_server = server_of(pdu.get("sender"))
    if sender_server is None:
        return [f"sender {pdu.get('sender')!r} is not a user id"]
    servers.append(sender_server)
    if v <= 2:
        id_server = server_of(pdu.get("event_id"))
        if id_server and id_server not in servers:
            servers.append(id_server)
    redacted = redact(pdu, room_version)
    problems = []
    for server in servers:
        known = keys.get(server)
        if not known:
            problems.append(f"no verified keys for server {server}")
            continue
        sigs = (pdu.get("signatures") or {}).get(server) or {}
        usable = [k for k in sigs if k in known]
        if not usable:
            problems.append(
                f"no signature of {server} with a known key (signatures: {sorted(sigs)}, keys: {sorted(known)})"
            )
            continue
        for key_id in usable:
            obj = copy.deepcopy(redacted)
            obj["signatures"] = {server: {key_id: sigs[key_id]}}
            try:
                signedjson.sign.verify_signed_json(obj, server, known[key_id])
            except signedjson.sign.SignatureVerifyException as e:
                problems.append(f"signature of {server} with {key_id} does not verify: {e}")
    return problems


# --- One event ------------------------------------------------------------------

def verify_event(entry, keys):
    """A list of problems with one input entry (empty when it verifies)."""
    claimed_id = entry.get("event_id")
    room_version = str(entry.get("room_version"))
    pdu = entry.get("pdu")
    if not isinstance(pdu, dict):
        return [f"no pdu object"]
    try:
        v = version_number(room_version)
    except ValueError as e:
        return [str(e)]
    problems = []

    # 1. Content hash.
    hashes = pdu.get("hashes")
    stored = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(stored, str):
        problems.append(f"no hashes.sha256 in the PDU")
    else:
        computed = content_hash(pdu)
        if computed != stored:
            strip = lambda e: {k: val for k, val in e.items() if k not in ("unsigned", "signatures")}  # noqa: E731
            is_pruned = strip(redact(pdu, room_version)) == strip(pdu)
            if not (entry.get("redacted") and is_pruned):
                why = " (the event is marked redacted but is not pruned to its redaction)" if entry.get("redacted") else ""
                problems.append(f"content hash mismatch: hashes.sha256={stored}, computed {computed}{why}")
        elif entry.get("redacted") is True:
            # A redacted event whose hash still matches must still be stored in full,
            # which is allowed; nothing to check.
            pass

    # 2. Event id (and room id for v12 create events).
    expected = expected_event_id(pdu, room_version)
    if v <= 2:
        if not isinstance(expected, str) or not expected.startswith("$"):
            problems.append(f"v{v} PDU without an event_id")
        elif claimed_id is not None and expected != claimed_id:
            problems.append(f"the PDU's event_id {expected} differs from the requested {claimed_id}")
    else:
        if "event_id" in pdu:
            problems.append(f"v{v} PDUs must not contain event_id (found {pdu['event_id']})")
        if claimed_id != expected:
            problems.append(f"event id is not the reference hash: got {claimed_id}, computed {expected}")
    if v >= 12:
        if pdu.get("type") == "m.room.create" and pdu.get("state_key") == "":
            if "room_id" in pdu:
                problems.append("v12 m.room.create PDUs must not contain room_id")
        else:
            room_id = pdu.get("room_id")
            if not isinstance(room_id, str) or not room_id.startswith("!") or ":" in room_id:
                problems.append(f"v12 room_id must be '!' + a reference hash, got {room_id!r}")
    elif not isinstance(pdu.get("room_id"), str):
        problems.append("the PDU has no room_id")

    # Required PDU fields.
    for key in ("type", "sender", "content", "depth", "prev_events", "auth_events", "origin_server_ts"):
        if key not in pdu:
            problems.append(f"missing PDU field {key}")

    # 3. Signatures.
    problems.extend(verify_signatures(pdu, room_version, keys))
    return problems


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: verify_pdus.py FILE\n")
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"cannot read {argv[1]}: {e}\n")
        return 2
    events = data.get("events")
    if not isinstance(events, list) or not events:
        sys.stderr.write("input has no events\n")
        return 2

    failures = []
    keys = load_server_keys(data.get("server_keys") or [], failures)
    for entry in events:
        for problem in verify_event(entry, keys):
            failures.append(
                f"event {entry.get('event_id')} (room version {entry.get('room_version')}, "
                f"type {(entry.get('pdu') or {}).get('type')}): {problem}"
            )
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}")
        print(f"{len(failures)} failure(s) in {len(events)} events")
        return 1
    print(f"verified {len(events)} events")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
