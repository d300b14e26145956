#!/usr/bin/env python3
"""Black-box tests of the output features of `sd35-server --demo`: convert_output (JPEG/WebP),
webhook_v2 (Standard Webhooks, verified with the npm `standardwebhooks` package through
verify_webhook.js and node), the legacy webhook, retries, the address policy, PREPEND_FILENAMES,
a bad WEBHOOK_SECRET, and webhooks flushed during the SIGTERM drain.

Usage: test_server_async.py <path to sd35-server>

Reuses the Server helper of test_server_http.py. Webhook receivers are http.server instances
on 127.0.0.1 in threads. Every wait is bounded. node is required: without it the signature
checks FAIL (scripts/setup.sh installs it), they are never skipped.
"""
import base64
import http.server
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server_http as base  # noqa: E402  (Server, small_recipe, check, ...)

check = base.check
SERVER = base.SERVER
VERIFY = os.path.join(HERE, "verify_webhook.js")
SECRET = base64.b64encode(b"sd35 async test secret, 32 bytes").decode()


# ---- image headers -----------------------------------------------------------------------

def jpeg_info(data):
    """(sof_marker, width, height) of a JPEG, or None."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return marker, w, h
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        i += 2 + length
    return None


def webp_info(data):
    """(chunk, width, height) of a WebP ('VP8 ' lossy, 'VP8L' lossless, 'VP8X'), or None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[26:30])
        return "VP8", w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        bits = struct.unpack("<I", data[21:25])[0]
        return "VP8L", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return "VP8X", w, h
    return None


# ---- webhook receiver ----------------------------------------------------------------------

class Receiver:
    """Records every POST (path, lower-cased headers, raw body). `script[path]` is a list of
    statuses answered first (then 200)."""

    def __init__(self):
        self.requests = []
        self.script = {}
        self.cv = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.cv:
                    todo = outer.script.get(self.path, [])
                    status = todo.pop(0) if todo else 200
                    outer.requests.append({
                        "path": self.path, "status": status, "time": time.time(),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body})
                    outer.cv.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def wait(self, path, count, timeout=60):
        """The first `count` requests to `path` (fewer on timeout)."""
        end = time.time() + timeout
        with self.cv:
            while True:
                got = [r for r in self.requests if r["path"] == path]
                left = end - time.time()
                if len(got) >= count or left <= 0:
                    return got
                self.cv.wait(left)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def verify(secret, req):
    """Runs verify_webhook.js; True when standardwebhooks accepts the delivery."""
    node = shutil.which("node")
    if not node:
        check(False, "node is installed (needed to verify signatures; scripts/setup.sh)")
        return None
    payload = json.dumps({"secret": secret, "headers": req["headers"],
                          "body": req["body"].decode("utf-8")})
    p = subprocess.run([node, VERIFY], input=payload, capture_output=True, text=True, timeout=30)
    if p.returncode not in (0, 1):
        print("  info verify_webhook.js: %s %s" % (p.stdout.strip(), p.stderr.strip()), flush=True)
    return p.returncode == 0


def log_lines(server, pred):
    out = []
    for line in server.logs():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if pred(obj):
            out.append(obj)
    return out


def decoded_png_size(b64):
    return base.png_size(base64.b64decode(b64))


# ---- tests --------------------------------------------------------------------------------

def test_convert_output(s):
    print("convert_output", flush=True)
    jid = "jpeg-" + uuid.uuid4().hex[:8]
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(128, 96, 1), "id": jid, "unknown_key": 1,
        "convert_output": {"format": "jpeg", "options": {"quality": 90, "progressive": True}}})
    if check(status == 200, "jpeg progressive -> 200 (%s %s)" % (status, body if status != 200 else "")):
        img = base64.b64decode(body["images"][0])
        info = jpeg_info(img)
        check(info is not None and info[0] == 0xC2 and info[1:] == (128, 96),
              "images[0] is a progressive (SOF2) 128x96 JPEG (%s)" % (info,))
        check(body["filenames"] == [jid + "_ComfyUI_00001_.jpeg"], "filename .jpeg (%s)" % body["filenames"])
        check(body.get("convert_output") == {"format": "jpeg", "options": {
            "quality": 90, "progressive": True, "chromaSubsampling": "4:2:0", "optimizeCoding": True}},
              "convert_output echoed with defaults (%s)" % body.get("convert_output"))
        check("unknown_key" not in body and "status" not in body, "unknown keys stripped, no status on 200")
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(128, 128, 1), "convert_output": {"format": "jpg"}})
    if check(status == 200, "jpg -> 200"):
        info = jpeg_info(base64.b64decode(body["images"][0]))
        check(info is not None and info[0] == 0xC0 and body["filenames"][0].endswith("_00001_.jpg"),
              "baseline JPEG, filename .jpg (%s %s)" % (info, body["filenames"]))
        check(body["convert_output"]["options"]["quality"] == 80, "default quality 80 echoed")
    sizes = {}
    for q in (5, 100):
        status, _, body = s.request("POST", "/prompt", {
            "prompt": base.small_recipe(128, 128, 1, prompt="same"),
            "convert_output": {"format": "jpeg", "options": {"quality": q}}})
        sizes[q] = len(base64.b64decode(body["images"][0])) if status == 200 else 0
    check(0 < sizes[5] < sizes[100], "jpeg quality is applied (q5 %d bytes < q100 %d bytes)"
          % (sizes[5], sizes[100]))

    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(128, 128, 1),
        "convert_output": {"format": "webp", "options": {"lossless": True, "effort": 6}}})
    if check(status == 200, "webp lossless -> 200 (%s)" % (body if status != 200 else "")):
        info = webp_info(base64.b64decode(body["images"][0]))
        check(info == ("VP8L", 128, 128), "lossless WebP (VP8L) 128x128 (%s)" % (info,))
        check(body["filenames"][0].endswith("_00001_.webp"), "filename .webp")
        opts = body["convert_output"]["options"]
        check(opts.get("lossless") is True and opts.get("effort") == 6 and opts.get("quality") == 80
              and opts.get("preset") == "default", "webp options echoed with defaults (%s)" % opts)
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(96, 128, 1),
        "convert_output": {"format": "webp", "options": {"quality": 40}}})
    if check(status == 200, "webp quality 40 -> 200"):
        info = webp_info(base64.b64decode(body["images"][0]))
        check(info == ("VP8", 96, 128), "lossy WebP (VP8) 96x128 (%s)" % (info,))
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "convert_output": {"format": "png"}})
    check(status == 200 and decoded_png_size(body["images"][0]) == (64, 64) and
          body["filenames"][0].endswith(".png"), "format png accepted (no conversion)")

    rid = "conv-warn-" + uuid.uuid4().hex[:8]
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1),
        "convert_output": {"format": "jpeg", "options": {"trellisQuantisation": True, "bogus": 1}}},
        headers={"X-Request-ID": rid})
    check(status == 200, "options that cannot be applied are accepted (200)")
    warns = log_lines(s, lambda o: o.get("level") == "warn" and o.get("request_id") == rid and
                      "convert_output" in o.get("msg", ""))
    check(len(warns) == 1 and len(warns[0].get("warnings", [])) == 2,
          "one warn log line with the request id lists both ignored options (%s)" % warns)

    bad = [({"format": "gif"}, "convert_output.format"),
           ({"options": {}}, "convert_output.format"),
           ("jpeg", "convert_output"),
           ({"format": "jpeg", "options": {"quality": 0}}, "convert_output.options.quality"),
           ({"format": "webp", "options": {"effort": 9}}, "convert_output.options.effort"),
           ({"format": "webp", "options": {"preset": "nope"}}, "convert_output.options.preset"),
           ({"format": "jpeg", "options": {"progressive": "yes"}}, "convert_output.options.progressive"),
           ({"format": "jpeg", "options": []}, "convert_output.options")]
    for value, location in bad:
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        "convert_output": value})
        check(status == 400 and body.get("location") == location and location in body.get("error", ""),
              "convert_output %s -> 400 at %s (%s %s)" % (json.dumps(value), location, status, body))
    status, _, body = s.request("POST", "/workflow/txt2img", {
        "input": {"prompt": "x", "steps": 1}, "convert_output": {"format": "bmp"}})
    check(status == 400 and body.get("location") == "convert_output.format",
          "workflow endpoint validates convert_output too")


def test_webhook_v2(s, rx):
    print("webhook_v2", flush=True)
    jid = "v2-" + uuid.uuid4().hex[:8]
    url = rx.url("/v2")
    t0 = time.time()
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(128, 128, 2), "id": jid, "webhook_v2": url, "extra": True})
    check(status == 202, "webhook_v2 -> 202 (%s %s)" % (status, body if status != 202 else ""))
    check(body.get("status") == "ok" and body.get("id") == jid and body.get("webhook_v2") == url and
          body["prompt"]["301"]["inputs"]["filename_prefix"] == jid + "_ComfyUI" and
          "images" not in body and "extra" not in body,
          "202 body: echo, status ok, id, rewritten prompt, no images (%s)" % sorted(body))
    got = rx.wait("/v2", 1)
    if not check(len(got) == 1, "prompt.complete delivered"):
        return
    req = got[0]
    h = req["headers"]
    ev = json.loads(req["body"])
    check(ev.get("type") == "prompt.complete" and ev.get("id") == jid and
          re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ev.get("timestamp", "")),
          "event type, id, ISO timestamp")
    check(len(ev.get("images", [])) == 1 and decoded_png_size(ev["images"][0]) == (128, 128) and
          ev.get("filenames") == [jid + "_ComfyUI_00001_.png"],
          "event carries the decodable PNG and its filename")
    check("total_time" in ev.get("stats", {}) and "comfy_execution" in ev["stats"] and
          ev.get("webhook_v2") == url and "status" not in ev and ev["prompt"]["301"]["inputs"]
          ["filename_prefix"] == jid + "_ComfyUI", "event has stats, the echo and the prompt")
    check(h.get("content-type", "").startswith("application/json") and h.get("webhook-id") == jid and
          abs(int(h.get("webhook-timestamp", "0")) - t0) < 120 and
          h.get("webhook-signature", "").startswith("v1,"),
          "Standard Webhooks headers (webhook-id = id, timestamp, v1 signature)")
    check(verify(SECRET, req) is True, "standardwebhooks verifies the signature with WEBHOOK_SECRET")
    check(verify("whsec_" + SECRET, req) is True, "... and with the whsec_ form of the secret")
    wrong = base64.b64encode(b"another secret, not the server's").decode()
    check(verify(wrong, req) is False, "a wrong secret fails verification")
    tampered = dict(req, body=req["body"].replace(jid.encode(), b"v2-tampered"))
    check(verify(SECRET, tampered) is False, "a changed body fails verification")

    # The workflow endpoint takes the same keys; the event adds input (with the seed used).
    jid = "wf-" + uuid.uuid4().hex[:8]
    status, _, body = s.request("POST", "/workflow/txt2img", {
        "input": {"prompt": "a dog", "steps": 1}, "id": jid,
        "webhook_v2": rx.url("/wf"), "convert_output": {"format": "webp"}})
    check(status == 202 and body.get("id") == jid and isinstance(body.get("input", {}).get("seed"), int)
          and body.get("convert_output", {}).get("format") == "webp",
          "workflow + webhook_v2 -> 202 with input and convert_output (%s %s)"
          % (status, body if status != 202 else ""))
    got = rx.wait("/wf", 1)
    if check(len(got) == 1, "workflow prompt.complete delivered"):
        ev = json.loads(got[0]["body"])
        info = webp_info(base64.b64decode(ev["images"][0]))
        check(ev.get("type") == "prompt.complete" and info and info[1:] == (256, 256) and
              ev["filenames"][0] == jid + "_ComfyUI_00001_.webp" and
              ev.get("input", {}).get("seed") == body["input"]["seed"],
              "workflow event: WebP image, .webp name, input with the seed")
        check(verify(SECRET, got[0]) is True, "workflow event signature verifies")

    # Interrupted: the webhook gets prompt.failed.
    jid = "int-" + uuid.uuid4().hex[:8]
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(256, 256, 100), "id": jid, "webhook_v2": rx.url("/int")})
    check(status == 202, "long job with webhook_v2 -> 202")
    time.sleep(0.3)
    status, _, body = s.request("POST", "/interrupt", {"id": jid})
    check(status == 200, "/interrupt -> 200")
    got = rx.wait("/int", 1)
    if check(len(got) == 1, "prompt.failed delivered for the interrupted job"):
        ev = json.loads(got[0]["body"])
        check(ev.get("type") == "prompt.failed" and ev.get("id") == jid and
              "interrupted" in ev.get("error", "") and "prompt" in ev and "timestamp" in ev,
              "prompt.failed {type, timestamp, id, prompt, error: interrupted} (%s)" %
              {k: v for k, v in ev.items() if k != "prompt"})
        check(verify(SECRET, got[0]) is True, "prompt.failed signature verifies")

    # Retries: 500, 500, then 200 -> delivered on the third attempt with the same webhook-id.
    jid = "retry-" + uuid.uuid4().hex[:8]
    rx.script["/flaky"] = [500, 500]
    status, _, _ = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid, "webhook_v2": rx.url("/flaky")})
    got = rx.wait("/flaky", 3, timeout=30)
    check(status == 202 and [r["status"] for r in got] == [500, 500, 200] and
          all(r["headers"].get("webhook-id") == jid for r in got),
          "receiver answering 500, 500, 200 gets the event on the 3rd attempt (%s)" %
          [r["status"] for r in got])
    if got:
        check(verify(SECRET, got[-1]) is True, "the retried delivery verifies")
    time.sleep(0.5)
    check(len(rx.wait("/flaky", 4, timeout=0.1)) == 3, "no attempt after the 2xx")


def test_legacy_webhook(s, rx):
    print("legacy webhook (+ webhook_v2 together)", flush=True)
    jid = "legacy-" + uuid.uuid4().hex[:8]
    g = base.small_recipe(64, 64, 1)
    g["135"]["inputs"]["batch_size"] = 2
    status, _, body = s.request("POST", "/prompt", {
        "prompt": g, "id": jid, "webhook": rx.url("/legacy"), "webhook_v2": rx.url("/both"),
        "convert_output": {"format": "jpeg"}})
    check(status == 202 and body.get("webhook") == rx.url("/legacy"),
          "webhook + webhook_v2 -> 202, both echoed (%s)" % status)
    got = rx.wait("/legacy", 2)
    if check(len(got) == 2, "legacy: one output.complete per image (%d)" % len(got)):
        evs = sorted((json.loads(r["body"]) for r in got), key=lambda e: e.get("filename", ""))
        check([e.get("event") for e in evs] == ["output.complete"] * 2 and
              [e.get("filename") for e in evs] == [jid + "_ComfyUI_00001_.jpeg",
                                                   jid + "_ComfyUI_00002_.jpeg"] and
              all(e.get("id") == jid and "prompt" in e and "stats" in e for e in evs),
              "legacy events {event, id, filename, prompt, stats}")
        check(all((jpeg_info(base64.b64decode(e["image"])) or (0,))[1:] == (64, 64) for e in evs),
              "legacy events carry the decodable JPEGs")
        check(all("webhook-signature" not in r["headers"] for r in got), "legacy webhooks are unsigned")
    got = rx.wait("/both", 1)
    check(len(got) == 1 and json.loads(got[0]["body"]).get("filenames") ==
          [jid + "_ComfyUI_00001_.jpeg", jid + "_ComfyUI_00002_.jpeg"],
          "webhook_v2 of the same request gets prompt.complete with both files")
    check(any(o.get("level") == "warn" and o.get("id") == jid and "deprecated" in o.get("msg", "")
              for o in log_lines(s, lambda o: True)), "deprecation warning logged")


def test_refusals(s):
    print("request-time refusals", flush=True)
    cases = [("webhook_v2", "ftp://example.com/hook"), ("webhook", "not a url"),
             ("webhook_v2", 42), ("webhook", "http://"), ("webhook_v2", "file:///etc/passwd")]
    for key, value in cases:
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        key: value})
        check(status == 400 and body.get("location") == key and key in body.get("error", ""),
              "%s=%r -> 400 naming the field (%s %s)" % (key, value, status, body))
    status, _, body = s.request("POST", "/workflow/txt2img", {"input": {"prompt": "x"},
                                                              "webhook_v2": "gopher://x/"})
    check(status == 400 and body.get("location") == "webhook_v2", "workflow: bad webhook_v2 -> 400")
    # s3 and http_upload are implemented: test_server_uploads.py.
    for key in ("credentials", "hf_upload", "azure_blob_upload"):
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        key: {}})
        check(status == 400 and body.get("location") == key and "not supported" in body.get("error", ""),
              "%s -> 400 not supported" % key)
    status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                    "webhook_v2": ""})
    check(status == 200 and body.get("webhook_v2") == "", "empty webhook_v2 means none (200, sync)")


def test_drain_flushes_webhooks(s, rx):
    print("SIGTERM drain flushes webhooks", flush=True)
    jid = "drain-" + uuid.uuid4().hex[:8]
    status, _, _ = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(256, 256, 8), "id": jid, "webhook_v2": rx.url("/drain")})
    check(status == 202, "job with webhook_v2 accepted")
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(60)
    except subprocess.TimeoutExpired:
        rc = None
    got = rx.wait("/drain", 1, timeout=1)
    check(rc == 0 and len(got) == 1 and json.loads(got[0]["body"]).get("type") == "prompt.complete",
          "the job finished and its webhook went out before exit 0 (rc %s, %d deliveries)"
          % (rc, len(got)))


def test_main():
    print("server E: WEBHOOK_SECRET, ALLOW_PRIVATE_WEBHOOKS=true, retries 3, delay 0.2 s", flush=True)
    rx = Receiver()
    s = base.Server({"WEBHOOK_SECRET": SECRET, "ALLOW_PRIVATE_WEBHOOKS": "true",
                     "PROMPT_WEBHOOK_RETRIES": "3", "WEBHOOK_RETRY_DELAY_S": "0.2",
                     "LOG_LEVEL": "debug"})
    try:
        s.wait_healthy()
        for t in (test_convert_output, test_refusals):
            t(s)
        for t in (test_webhook_v2, test_legacy_webhook, test_drain_flushes_webhooks):
            t(s, rx)
    finally:
        s.kill()
        rx.close()


def test_strict_policy():
    print("server F: private webhooks refused (default), PREPEND_FILENAMES=false", flush=True)
    rx = Receiver()
    s = base.Server({"WEBHOOK_SECRET": SECRET, "PREPEND_FILENAMES": "false"})
    try:
        s.wait_healthy()
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        "webhook_v2": rx.url("/x")})
        check(status == 400 and body.get("location") == "webhook_v2" and
              "ALLOW_PRIVATE_WEBHOOKS" in body.get("error", ""),
              "literal loopback webhook -> 400 naming the field and the setting (%s)" % body)
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        "webhook": "http://[::1]:9/x"})
        check(status == 400 and body.get("location") == "webhook", "literal [::1] -> 400")
        # A host *name* that resolves to loopback is only known at delivery: 202, the job runs,
        # the refusal is logged with the request id, nothing reaches the receiver.
        rid, jid = "strict-" + uuid.uuid4().hex[:8], "strict-job-" + uuid.uuid4().hex[:8]
        status, _, body = s.request("POST", "/prompt", {
            "prompt": base.small_recipe(64, 64, 1), "id": jid,
            "webhook_v2": rx.url("/name", host="localhost")}, headers={"X-Request-ID": rid})
        check(status == 202, "webhook to localhost (a name) -> 202")
        ok = base.wait_until(lambda: log_lines(s, lambda o: o.get("level") == "error" and
                                               o.get("request_id") == rid and
                                               "webhook" in o.get("msg", "")), timeout=30)
        check(ok, "the refused delivery is logged as an error with the request id")
        check(any(o.get("id") == jid and o.get("state") == "succeeded"
                  for o in log_lines(s, lambda o: o.get("msg") == "job finished")),
              "the job itself ran")
        check(len(rx.wait("/name", 1, timeout=0.5)) == 0, "nothing reached the loopback receiver")
        jid = "plain-" + uuid.uuid4().hex[:8]
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1),
                                                        "id": jid})
        check(status == 200 and body.get("filenames") == [jid + "_00001_.png"] and
              body["prompt"]["301"]["inputs"]["filename_prefix"] == jid,
              "PREPEND_FILENAMES=false: prefix is the id (%s)" % body.get("filenames"))
    finally:
        s.kill()
        rx.close()


def test_bad_secret():
    print("server G: a WEBHOOK_SECRET that is not base64", flush=True)
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", WEBHOOK_SECRET="not base64!!")
    p = subprocess.run([SERVER, "--demo"], env=env, capture_output=True, text=True, timeout=60)
    check(p.returncode != 0 and "WEBHOOK_SECRET" in p.stdout + p.stderr and
          "listening" not in p.stdout,
          "bad WEBHOOK_SECRET -> non-zero exit before listening, naming it (rc %s)" % p.returncode)
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", PROMPT_WEBHOOK_RETRIES="0")
    p = subprocess.run([SERVER, "--demo"], env=env, capture_output=True, text=True, timeout=60)
    check(p.returncode != 0 and "prompt-webhook-retries" in p.stdout + p.stderr,
          "PROMPT_WEBHOOK_RETRIES=0 -> refused at start-up (rc %s)" % p.returncode)


def main():
    return base.run_tests((test_main, test_strict_policy, test_bad_secret))


if __name__ == "__main__":
    sys.exit(main())
