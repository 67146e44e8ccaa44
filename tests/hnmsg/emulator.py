#!/usr/bin/env python3
"""An AMQP 1.0 client that behaves as Helsenorge.Messaging does (research/hnmsg-interop.md §1),
for the integration tests in tests/hnmsg_amqp10.rs. Needs python-qpid-proton (.ci/run installs it
into target/venv).

  emulator.py send    --vhost V --address A --body FILE --message-id ID --subject S
                      [--prop NAME=VALUE ...] [--content-type T]
      One message as HN.Msg sends it: one data section with the bytes of FILE, string message-id,
      subject = message function, correlation-id = message-id, every application-property a
      string, no header (so not durable), no user-id unless --user-id; waits for the outcome and prints it
      ("accepted"), exit 1 otherwise.
  emulator.py receive --vhost V --address A --count N [--timeout SECONDS]
      Takes N messages with credit 25, accepting each, and prints one JSON object per message:
      subject, message_id, correlation_id, content_type, durable, application_properties (name →
      [type, value]), body_sha256, body_len and body_hex (the data section, for decrypting an
      encrypted delivery as the receiver would). Exit 1 if fewer than N arrive in time.
"""
import argparse
import hashlib
import json
import sys
import uuid

from proton import Message
from proton.utils import BlockingConnection, SendException

URL = "amqp://guest:guest@127.0.0.1:5672"


def connect(vhost):
    # RabbitMQ's AMQP 1.0 plugin picks the vhost from the open frame's hostname "vhost:NAME".
    return BlockingConnection(URL, timeout=30, virtual_host="vhost:" + vhost, allowed_mechs="PLAIN")


def send(a):
    body = open(a.body, "rb").read()
    props = {}
    for p in a.prop:
        k, _, v = p.partition("=")
        props[k] = str(v)
    m = Message(body=body, inferred=True)  # bytes + inferred: one data section, not amqp-value
    m.id = a.message_id
    m.correlation_id = a.message_id
    m.subject = a.subject
    m.content_type = a.content_type
    m.reply_to = a.reply_to
    m.properties = props
    m.durable = False
    if a.user_id:
        # HN.Msg sets no user-id; the hub's register may require one (amqp_users), see the README.
        m.user_id = a.user_id.encode()
    conn = connect(a.vhost)
    try:
        conn.create_sender(a.address).send(m, timeout=30)
        print("accepted")
    except SendException as e:
        print("not accepted: %s" % e)
        sys.exit(1)
    finally:
        conn.close()


def typed(v):
    if isinstance(v, str):
        return ["string", v]
    return [type(v).__name__, str(v)]


def receive(a):
    conn = connect(a.vhost)
    rcv = conn.create_receiver(a.address, credit=25)
    got = 0
    try:
        while got < a.count:
            m = rcv.receive(timeout=a.timeout)
            body = m.body if isinstance(m.body, (bytes, bytearray, memoryview)) else b""
            body = bytes(body)
            print(json.dumps({
                "subject": m.subject,
                "message_id": None if m.id is None else str(m.id),
                "correlation_id": None if m.correlation_id is None else str(m.correlation_id),
                "content_type": None if m.content_type is None else str(m.content_type),
                "durable": bool(m.durable),
                "application_properties": {str(k): typed(v) for k, v in (m.properties or {}).items()},
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_len": len(body),
                "body_hex": body.hex(),
            }), flush=True)
            rcv.accept()
            got += 1
    except Exception as e:  # Timeout and link errors alike: the test says what is missing.
        print("received %d of %d: %s" % (got, a.count, e), file=sys.stderr)
        sys.exit(1)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--vhost", required=True)
    s.add_argument("--address", required=True)
    s.add_argument("--body", required=True)
    s.add_argument("--message-id", default=str(uuid.uuid4()))
    s.add_argument("--subject", required=True)
    s.add_argument("--content-type", default="application/pkcs7-mime; smime-type=signed-data")
    s.add_argument("--reply-to", default=None)
    s.add_argument("--prop", action="append", default=[])
    s.add_argument("--user-id", default=None)
    r = sub.add_parser("receive")
    r.add_argument("--vhost", required=True)
    r.add_argument("--address", required=True)
    r.add_argument("--count", type=int, default=1)
    r.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    send(a) if a.cmd == "send" else receive(a)


if __name__ == "__main__":
    main()
