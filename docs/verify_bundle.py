#!/usr/bin/env python3
"""An independent verifier of Proctor export bundles, written from docs/journal-format.md alone.

    python3 docs/verify_bundle.py BUNDLE.json 'proctor/host+1a2b3c4d+AbC...'

Exits 0 if the bundle holds, 1 naming the first check that fails. Needs the `cryptography` package
for Ed25519; everything else is the standard library.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def jcs_number(n):
    """RFC 8785: a number is written as ECMAScript writes a double."""
    if isinstance(n, int) and abs(n) <= 2**53:
        return str(n)
    f = float(n)
    if f == int(f) and abs(f) < 1e21:
        digits, _, exponent = repr(f).partition("e")
        mantissa = digits.replace(".", "").rstrip("0") or "0"
        if exponent:
            point = len(digits.split(".")[0]) + int(exponent)
            return mantissa.ljust(point, "0")
        return str(int(f))
    raise ValueError("a number this verifier does not need to canonicalize: %r" % n)


def jcs(value):
    """RFC 8785 canonical JSON (keys sorted by UTF-16 code units, no whitespace)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(value[k]) for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return jcs_number(value)
    return json.dumps(value, ensure_ascii=False)


def rfc3339_ns(at):
    seconds, nanos = divmod(at, 10**9)
    import datetime
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % nanos


def sha256(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def node(left, right):
    return sha256(b"\x01", left, right)


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_note(note, verifier):
    name, key_id, key = verifier.split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 1, "only Ed25519 keys"
    expected_id = sha256(name.encode(), b"\n", raw)[:4]
    assert expected_id.hex() == key_id, "the verifier key's id does not match its key"
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    for line in signatures.splitlines():
        signer, blob = line[len("\u2014 "):].split(" ", 1)
        blob = base64.b64decode(blob)
        if signer == name and blob[:4] == expected_id:
            public.verify(blob[4:], text.encode())  # raises if the signature does not hold
            return text
    raise ValueError("no signature by this key")


def main(path, verifier):
    bundle = json.load(open(path, encoding="utf-8"))
    text = verify_note(bundle["checkpoint"], verifier)
    origin, size, root = text.splitlines()[:3]
    size, root = int(size), base64.b64decode(root)
    print("ok   checkpoint signed, tree of %d leaves" % size)

    header = bundle["session"]
    prev = sha256(b"proctor/session/v1\0", jcs(header).encode()).hex()
    for seq, event in enumerate(bundle["events"], start=1):
        unhashed = {k: event[k] for k in ("session_id", "seq", "kind", "body", "findings", "prev")}
        unhashed["at"] = rfc3339_ns(event["at"])
        digest = sha256(b"proctor/event/v1\0", prev.encode(), jcs(unhashed).encode()).hex()
        if event["seq"] != seq or event["prev"] != prev or event["hash"] != digest:
            sys.exit("FAIL chain: event %d does not hold" % seq)
        prev = digest
    print("ok   chain of %d events" % len(bundle["events"]))

    next_seq = 1
    for seal in bundle["seals"]:
        leaf = json.loads(seal["leaf"])
        last = leaf["last_seq"]
        if leaf["session_id"] != header["session_id"] or leaf["first_seq"] != next_seq \
                or last > len(bundle["events"]) or bundle["events"][last - 1]["hash"] != leaf["chain_head"]:
            sys.exit("FAIL seals: leaf %d does not seal this chain" % seal["index"])
        proof = [base64.b64decode(p) for p in seal["proof"]]
        leaf_hash = sha256(b"\x00", seal["leaf"].encode())
        if not verify_inclusion(leaf_hash, seal["index"], size, proof, root):
            sys.exit("FAIL inclusion: leaf %d" % seal["index"])
        next_seq = last + 1
    if next_seq != len(bundle["events"]) + 1:
        sys.exit("FAIL seals: events %d.. are in no seal" % next_seq)
    print("ok   %d seals cover every event and are in the signed tree" % len(bundle["seals"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
