#!/usr/bin/env python3
"""Check incidentd's hash chain without incidentd.

Reads stored events, one JSON object per line, in log order from position 1, as

    incidentctl events --limit 0 --format json | python3 tools/check-chain.py [--expect-head POSITION:HASH ...]

prints, and checks each one's hash the way PROTOCOL.md ("The canonical form and the hash chain") defines it:

    hash = SHA-256(prevHash as 32 bytes || canonical bytes of the event without its "hash" member)

with 32 zero bytes as the prevHash of position 1, and each prevHash equal to the hash before it. The canonical
bytes are those of json.dumps with keys sorted, no whitespace and no escaping beyond what JSON requires, which is
what incidentd writes. Only Python's standard library is used, so that whoever checks a log need not trust any
code of incidentd's.

Exits 0 when every line checks (printing the head as POSITION:HASH), 1 naming the first position that does not,
2 for input that is not a log's events from position 1.
"""

import argparse
import hashlib
import json
import sys


def canonical(value):
    """The event's bytes as incidentd hashes them."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--expect-head", action="append", default=[], metavar="POSITION:HASH",
        help="a head published earlier (incidentctl status: position and headHash): the chain must hold it")
    args = parser.parse_args()
    expected = {}
    for head in args.expect_head:
        position, _, digest = head.partition(":")
        if not position.isdigit() or len(digest) != 64:
            print(f"check-chain: --expect-head {head}: expected POSITION:HASH, the hash in 64 hex digits", file=sys.stderr)
            return 2
        expected[int(position)] = digest.lower()

    previous = "0" * 64
    position = 0
    # The empty log's head, which status shows before the first append, is held by every log.
    if 0 in expected and expected.pop(0) != previous:
        print("check-chain: position 0: its head is the zero hash in every log", file=sys.stderr)
        return 1
    for number, line in enumerate(sys.stdin.buffer, start=1):
        if not line.strip():
            continue
        try:
            # A number with a fraction or an exponent is read as a double and written again in its shortest
            # round-trip form, one without as an integer, as incidentd does.
            event = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            print(f"check-chain: line {number}: not UTF-8", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"check-chain: line {number}: not JSON ({error})", file=sys.stderr)
            return 2
        if not isinstance(event, dict) or not isinstance(event.get("hash"), str) or not isinstance(event.get("position"), int):
            print(f"check-chain: line {number}: not a stored event (no hash or position)", file=sys.stderr)
            return 2
        position += 1
        if event["position"] != position:
            print(f"check-chain: line {number}: position {event['position']} where {position} was next"
                  " (give every event from position 1: incidentctl events --limit 0)", file=sys.stderr)
            return 1 if position > 1 else 2
        claimed = event.pop("hash")
        if event.get("prevHash") != previous:
            print(f"check-chain: position {position}: prevHash {event.get('prevHash')} is not the hash of position"
                  f" {position - 1}, {previous}", file=sys.stderr)
            return 1
        digest = hashlib.sha256(bytes.fromhex(previous) + canonical(event)).hexdigest()
        if digest != claimed:
            print(f"check-chain: position {position}: its bytes hash to {digest}, not to its hash {claimed}:"
                  " the event was changed after it was chained", file=sys.stderr)
            return 1
        if position in expected and expected.pop(position) != digest:
            print(f"check-chain: position {position}: hash {digest}, not the one published for it: the log was"
                  " rewritten at or before it", file=sys.stderr)
            return 1
        previous = digest
    for missing in sorted(expected):
        print(f"check-chain: the published head at position {missing} is past the last event read, {position}",
              file=sys.stderr)
        return 1
    print(f"{position}:{previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
