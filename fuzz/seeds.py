#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/ from eddy's own tests:
tests/data/cloudevents (events, batches, raw texts), the JSON Schema Test
Suite (Debian's json-schema-test-suite package: one schema + instance per
group, joined by a NUL byte), and the URLs and JSON lines the CLI tests use.
Only needed to regenerate them: the corpora are committed. Usage:
    python3 fuzz/seeds.py
"""
import base64, glob, hashlib, json, os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUITE = "/usr/share/json-schema-test-suite/tests/draft7"


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# CloudEvents: every vector of tests/data/cloudevents, as text
events = []
for path in sorted(glob.glob(os.path.join(ROOT, "tests/data/cloudevents/*.json"))):
    for t in json.load(open(path))["tests"]:
        if "text_base64" in t:
            raw = base64.b64decode(t["text_base64"])
        elif "text" in t:
            raw = t["text"].encode("utf-8")
        else:
            raw = compact(t.get("event", t.get("batch"))).encode("utf-8")
        put("fuzz_event_decode", raw)
        if isinstance(t.get("event"), dict):
            events.append(t["event"])

# JSON lines for `eddy append`: [read size, line limit] + lines
lines = [compact(e) for e in events[:20]] + ['{"order_id":"1","amount":10}', "", "  ",
                                              '{"n": oops}', "[1,2,[3]]", '"bare"', "42"]
for chunk, limit in [(0, 0), (1, 0), (7, 0), (3, 40), (0, 16)]:
    put("fuzz_jsonl", bytes([chunk, limit]) + "\n".join(lines).encode("utf-8"))
    put("fuzz_jsonl", bytes([chunk, limit]) + "\r\n".join(lines[:5]).encode("utf-8") + b"\r\n")

# Binary mode: the valid events as Kafka and NATS headers
for i, e in enumerate(events[:25]):
    nats = i % 2
    prefix = "ce-" if nats else "ce_"
    heads = []
    types = []
    payload = b""
    for k, v in e.items():
        if v is None:
            continue
        if k == "data":
            payload = compact(v).encode("utf-8") if not isinstance(v, str) else v.encode("utf-8")
            if isinstance(v, str) and e.get("datacontenttype", "application/json").startswith("text"):
                types.append("data=s")
            continue
        if k == "data_base64":
            payload = base64.b64decode(v)
            types.append("data=b")
            continue
        if k == "datacontenttype":
            heads.append("content-type: " + v)
            continue
        if isinstance(v, bool):
            types.append(k + "=b")
            v = "true" if v else "false"
        elif isinstance(v, int):
            types.append(k + "=i")
            v = str(v)
        elif not isinstance(v, str):
            continue
        heads.append(prefix + k + ": " + v)
    if types:
        heads.append(("eddy-types" if nats else "eddy_types") + ": " + ",".join(types))
    put("fuzz_ce_binary", bytes([nats]) + ("\n".join(heads) + "\n\n").encode("utf-8") + payload)
put("fuzz_ce_binary", b"\x01ce-specversion: 1.0\nce-id: a%20b\nce-type: t\nce-source: %2Fs\n"
    b"content-type: text/plain; charset=utf-8\n\nhello")
put("fuzz_ce_binary", b"\x00ce_specversion: 1.0\nce_id: x\nce_type: t\nce_source: s\n"
    b"content-type: application/json\n\n{\"a\":[1,2]}")

# JSON Schema: one schema + NUL + instance per group of the suite
if os.path.isdir(SUITE):
    for path in sorted(glob.glob(SUITE + "/*.json")):
        for g in json.load(open(path)):
            for t in g["tests"][:2]:
                put("fuzz_schema", compact(g["schema"]).encode("utf-8") + b"\0" +
                    compact(t["data"]).encode("utf-8"))
for schema, data in [('{"pattern":"(a+)+b|c"}', '"aaaaaaaaaaaaaaaaaaaaaaaaaaac"'),
                     ('{"uniqueItems":true}', '[1,1.0,{"a":[1]},{"a":[1.0]}]'),
                     ('{"$id":"http://x/","items":{"$id":"y/","$ref":"#"}}', "[[1]]"),
                     ('{"definitions":{"a":{"$id":"#a","type":"null"}},"$ref":"#a"}', "null")]:
    put("fuzz_schema", schema.encode() + b"\0" + data.encode())

# URLs
for url in ["sqlite:eddy.db", "sqlite:///tmp/x.db", "sqlite://rel.db", "orders.db", "./a:b.db",
            "C:store.db", "postgres://u:p@h:5432/db?sslmode=require", "mem:", "", ":", "sqlite:"]:
    put("fuzz_store_url", url)
for url in ["mem:", "mem:name", "redis://127.0.0.1:6379/0?stream_maxlen=100&x=%20y+z",
            "kafka://h1:9092,h2:9092?acks=all&linger.ms=5", "nats://localhost:4222?token=a%2Bb",
            "NATS://HOST", "redis://?k", "x:?a=%zz", "noscheme", "redis://[::1]:6379", "a+b.c-d:x"]:
    put("fuzz_transport_url", url)
