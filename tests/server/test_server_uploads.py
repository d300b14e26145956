#!/usr/bin/env python3
"""Black-box tests of the storage uploads of `sd35-server --demo`: the `http_upload` and `s3`
blocks of POST /prompt and POST /workflow/..., sync (200, images are URLs) and async (202, the
PUTs arrive later), failures (a store answering 500 / 403 fails the request), the S3 SigV4
Authorization header checked by an independent implementation here (hashlib/hmac), the refusals
(unconfigured S3, private targets, hf_upload, ...), bad upload settings at start-up, a slow
store holding only its own request (the engine runs the next job), and the SIGTERM drain
waiting for an in-flight upload.

Usage: test_server_uploads.py <path to sd35-server>

The store is an http.server on 127.0.0.1 that records every PUT (and webhook POST). Python 3
standard library only; every wait is bounded.
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server_http as base  # noqa: E402  (Server, small_recipe, check, png_size)
import test_server_async as outputs  # noqa: E402  (jpeg_info)

check = base.check
SERVER = base.SERVER
ACCESS_KEY = "AKIDSD35UPLOADTEST"
SECRET_KEY = "sd35/upload+test/secret-key-0123456789"
SESSION_TOKEN = "session-token-for-the-test"
REGION = "eu-central-1"
BUCKET = "test-bucket"


def hmac_sha256(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_problem(req, access_key, secret, region):
    """Checks an S3 request's SigV4 Authorization header the way a store does; None when it is
    valid, else what is wrong. Written from the AWS documentation, independent of the server."""
    h = req["headers"]
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request,\s*"
                     r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})",
                     h.get("authorization", ""))
    if not m:
        return "malformed Authorization header: %r" % h.get("authorization")
    key_id, day, scope_region, signed, signature = m.groups()
    if key_id != access_key or scope_region != region:
        return "credential scope %s/%s, expected %s/%s" % (key_id, scope_region, access_key, region)
    amz_date = h.get("x-amz-date", "")
    if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date) or not amz_date.startswith(day):
        return "x-amz-date %r does not match the scope day %s" % (amz_date, day)
    payload = hashlib.sha256(req["body"]).hexdigest()
    if h.get("x-amz-content-sha256") != payload:
        return "x-amz-content-sha256 is not the SHA-256 of the body"
    names = signed.split(";")
    for needed in ("host", "x-amz-content-sha256", "x-amz-date"):
        if needed not in names:
            return "%s is not signed" % needed
    if names != sorted(names) or any(n not in h for n in names):
        return "signed headers unsorted or missing: %s" % signed
    path, _, query = req["path"].partition("?")
    canonical_headers = "".join("%s:%s\n" % (n, " ".join(h[n].split())) for n in names)
    canonical = "\n".join([req["method"], path, query, canonical_headers, signed, payload])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, "%s/%s/s3/aws4_request" % (day, region),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = hmac_sha256(("AWS4" + secret).encode(), day)
    for part in (region, "s3", "aws4_request"):
        k = hmac_sha256(k, part)
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "signature mismatch"


class Store:
    """Records every PUT and POST (method, raw path, lower-cased headers, body). PUTs under
    /<BUCKET>/ are checked as S3 requests with `self.secret` (403 SignatureDoesNotMatch when
    wrong). `fail[path prefix] = (status, text)` answers that instead; `delay[path prefix]`
    holds the answer for that many seconds."""

    def __init__(self):
        self.requests = []
        self.fail = {}
        self.delay = {}
        self.secret = SECRET_KEY
        self.cv = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_any(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                req = {"method": self.command, "path": self.path, "body": body,
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                status, text = 200, b""
                for prefix, answer in outer.fail.items():
                    if self.path.startswith(prefix):
                        status, text = answer[0], answer[1].encode()
                if status == 200 and self.command == "PUT" and self.path.startswith("/%s/" % BUCKET):
                    req["sig_problem"] = sigv4_problem(req, ACCESS_KEY, outer.secret, REGION)
                    if req["sig_problem"]:
                        status = 403
                        text = (b"<?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                                b"<Message>The request signature we calculated does not match"
                                b"</Message></Error>")
                for prefix, seconds in outer.delay.items():
                    if self.path.startswith(prefix):
                        time.sleep(seconds)
                req["status"] = status
                with outer.cv:
                    outer.requests.append(req)
                    outer.cv.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_PUT = handle_any  # noqa: N815 - http.server's naming
            do_POST = handle_any  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, prefix, count, timeout=60):
        """The first `count` requests whose path starts with `prefix` (fewer on timeout)."""
        end = time.time() + timeout
        with self.cv:
            while True:
                got = [r for r in self.requests if r["path"].startswith(prefix)]
                left = end - time.time()
                if len(got) >= count or left <= 0:
                    return got
                self.cv.wait(left)

    def wait_for(self, pred, timeout=60):
        """The requests matching pred, as soon as there is one (empty on timeout)."""
        end = time.time() + timeout
        with self.cv:
            while True:
                got = [r for r in self.requests if pred(r)]
                left = end - time.time()
                if got or left <= 0:
                    return got
                self.cv.wait(left)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:8])


# ---- server U1: uploads configured ----------------------------------------------------------

def test_http_upload_sync(s, store):
    print("http_upload, synchronous", flush=True)
    jid = new_id("hu")
    prefix = store.base + "/up/"  # the trailing '/' is dropped
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid, "http_upload": {"url_prefix": prefix}})
    if not check(status == 200, "/prompt + http_upload -> 200 (%s %s)" % (status, body if status != 200 else "")):
        return
    name = jid + "_ComfyUI_00001_.png"
    url = store.base + "/up/" + name
    check(body.get("images") == [url] and body.get("filenames") == [name],
          "images are the destination URLs (%s)" % body.get("images"))
    check(body.get("http_upload") == {"url_prefix": prefix, "async": False},
          "the block is echoed with async false (%s)" % body.get("http_upload"))
    up = body.get("stats", {}).get("upload_time")
    check(isinstance(up, (int, float)) and up > 0, "stats.upload_time is the upload time (%s ms)" % up)
    got = store.wait("/up/" + name, 1, timeout=5)
    if check(len(got) == 1 and got[0]["method"] == "PUT", "the file was PUT to <prefix>/<filename>"):
        h = got[0]["headers"]
        check(h.get("content-type") == "image/png", "Content-Type image/png (%s)" % h.get("content-type"))
        check(h.get("x-upload-token") == "tok-123", "HTTP_AUTH_HEADER_NAME/VALUE sent")
        check(base.png_size(got[0]["body"]) == (64, 64), "the uploaded file is a 64x64 PNG")

    # The workflow endpoint with convert_output: JPEG bytes and name.
    jid = new_id("hu-jpeg")
    status, _, body = s.request("POST", "/workflow/sd3.5-medium/txt2img", {
        "input": {"prompt": "a dog", "width": 256, "height": 256, "steps": 1}, "id": jid,
        "convert_output": {"format": "jpeg"}, "http_upload": {"url_prefix": store.base + "/wf"}})
    name = jid + "_ComfyUI_00001_.jpeg"
    if check(status == 200 and body.get("images") == [store.base + "/wf/" + name],
             "workflow + convert_output jpeg + http_upload -> 200 with the URL (%s %s)"
             % (status, body.get("images") if status == 200 else body)):
        got = store.wait("/wf/" + name, 1, timeout=5)
        ok = len(got) == 1
        check(ok and got[0]["headers"].get("content-type") == "image/jpeg",
              "Content-Type image/jpeg")
        info = outputs.jpeg_info(got[0]["body"]) if ok else None
        check(info is not None and info[1:] == (256, 256), "the uploaded file is a 256x256 JPEG (%s)" % (info,))


def test_http_upload_async(s, store):
    print("http_upload, async (and with webhook_v2)", flush=True)
    jid = new_id("hua")
    t0 = time.time()
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 2), "id": jid,
        "http_upload": {"url_prefix": store.base + "/async", "async": True}})
    check(status == 202 and body.get("status") == "ok" and body.get("id") == jid and
          "images" not in body and body.get("http_upload", {}).get("async") is True,
          "async:true -> 202 with the echo (%s %s)" % (status, body if status != 202 else ""))
    got = store.wait("/async/" + jid, 1, timeout=60)
    check(len(got) == 1 and base.png_size(got[0]["body"]) == (64, 64),
          "the PUT arrives after the 202 (%.1f s)" % (time.time() - t0))
    ok = base.wait_until(lambda: any(o.get("msg") == "job finished" and o.get("id") == jid and
                                     o.get("state") == "succeeded" for o in s.log_objects()), 10)
    check(ok, "the async job's outcome is logged")

    jid = new_id("huw")
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid, "webhook_v2": store.base + "/hook",
        "http_upload": {"url_prefix": store.base + "/withhook"}})
    check(status == 202, "http_upload + webhook_v2 -> 202")
    hooks = store.wait_for(lambda r: r["path"] == "/hook" and json.loads(r["body"]).get("id") == jid)
    if check(len(hooks) == 1, "prompt.complete delivered"):
        ev = json.loads(hooks[0]["body"])
        check(ev.get("type") == "prompt.complete" and
              ev.get("images") == [store.base + "/withhook/" + jid + "_ComfyUI_00001_.png"],
              "the webhook carries the upload URLs (%s)" % ev.get("images"))
        check(len(store.wait("/withhook/" + jid, 1, timeout=1)) == 1, "... and the file is there")


def test_slow_store_does_not_block(s, store):
    print("a slow store holds only its own request", flush=True)
    store.delay["/held"] = 6  # margin for a loaded machine: the other job must fit inside
    held = base.run_async(lambda: s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "http_upload": {"url_prefix": store.base + "/held"}},
        timeout=60))
    # The 64x64 one-step job takes a fraction of a second; then its PUT waits on the store.
    time.sleep(1.5)
    t0 = time.time()
    status, _, _ = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1)})
    other_s = time.time() - t0
    try:
        held(timeout=0)
        held_done = True
    except RuntimeError:
        held_done = False
    check(status == 200 and not held_done,
          "another job runs and answers (%.2f s) while the first one's upload is held" % other_s)
    status, _, body = held(timeout=60)
    check(status == 200 and body.get("stats", {}).get("upload_time", 0) >= 5000,
          "the held upload then completes (upload_time %s ms)" % body.get("stats", {}).get("upload_time"))
    del store.delay["/held"]


def test_http_upload_failures(s, store):
    print("http_upload failures", flush=True)
    store.fail["/broken"] = (500, "disk full on the store")
    jid = new_id("huf")
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid,
        "http_upload": {"url_prefix": store.base + "/broken"}})
    err = (body or {}).get("error", "")
    check(status == 500 and "HTTP 500" in err and "disk full on the store" in err and
          jid + "_ComfyUI_00001_.png" in err and "http_upload" in err,
          "a store answering 500 -> sync 500 naming the file and the store's message (%s)" % err)

    jid = new_id("hufa")
    status, _, _ = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid, "webhook_v2": store.base + "/hook",
        "http_upload": {"url_prefix": store.base + "/broken", "async": True}})
    check(status == 202, "async upload to a failing store -> 202")
    hooks = store.wait_for(lambda r: r["path"] == "/hook" and json.loads(r["body"]).get("id") == jid)
    ev = json.loads(hooks[0]["body"]) if hooks else None
    check(ev is not None and ev.get("type") == "prompt.failed" and "HTTP 500" in ev.get("error", ""),
          "... webhook_v2 gets prompt.failed with the reason (%s)" % (ev and ev.get("error")))
    ok = base.wait_until(lambda: any(o.get("msg") == "job finished" and o.get("id") == jid and
                                     o.get("level") == "error" for o in s.log_objects()), 10)
    check(ok, "... and the failure is logged as an error")
    del store.fail["/broken"]

    # Nothing listens on port 9 of loopback: a network error fails the request too.
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "http_upload": {"url_prefix": "http://127.0.0.1:9/x"}})
    check(status == 500 and "failed" in (body or {}).get("error", ""),
          "an unreachable store -> 500 (%s)" % (body or {}).get("error"))


def test_s3(s, store):
    print("s3 (SigV4 against the loopback store)", flush=True)
    jid = new_id("s3")
    prefix = "out puts/$x/"
    status, _, body = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid,
        "s3": {"bucket": BUCKET, "prefix": prefix}})
    if not check(status == 200, "/prompt + s3 -> 200 (%s %s)" % (status, body if status != 200 else "")):
        return
    name = jid + "_ComfyUI_00001_.png"
    key = prefix + name
    check(body.get("images") == ["s3://%s/%s" % (BUCKET, key)],
          "images are s3://<bucket>/<prefix><filename> (%s)" % body.get("images"))
    check(body.get("s3") == {"bucket": BUCKET, "prefix": prefix, "async": False}, "the block is echoed")
    got = store.wait_for(lambda r: urllib.parse.unquote(r["path"]) == "/%s/%s" % (BUCKET, key),
                         timeout=5)
    if not check(len(got) == 1, "one PUT at /<bucket>/<key> (path style)"):
        return
    req = got[0]
    check(req["path"] == "/%s/out%%20puts/%%24x/%s" % (BUCKET, name),
          "the key is URI-encoded the S3 way (%s)" % req["path"])
    check(req.get("sig_problem") is None and req["status"] == 200,
          "the store's independent SigV4 check accepts the signature (%s)" % req.get("sig_problem"))
    check(sigv4_problem(req, ACCESS_KEY, SECRET_KEY + "x", REGION) == "signature mismatch",
          "the same check with a wrong secret fails (so the check can fail)")
    h = req["headers"]
    check(h.get("x-amz-security-token") == SESSION_TOKEN and
          "x-amz-security-token" in h.get("authorization", ""),
          "AWS_SESSION_TOKEN sent as x-amz-security-token and signed")
    check(h.get("content-type") == "image/png" and base.png_size(req["body"]) == (64, 64),
          "Content-Type image/png, the body is the 64x64 PNG")
    check(h.get("host") == "127.0.0.1:%d" % store.port, "Host is the endpoint's host:port")

    # The store rejects the signature (it expects another secret): the request fails.
    store.secret = "not the server's secret"
    try:
        status, _, body = s.request("POST", "/prompt", {
            "prompt": base.small_recipe(64, 64, 1), "s3": {"bucket": BUCKET, "prefix": ""}})
    finally:
        store.secret = SECRET_KEY
    err = (body or {}).get("error", "")
    check(status == 500 and "HTTP 403" in err and "SignatureDoesNotMatch" in err,
          "a rejected signature -> 500 with the store's answer (%s)" % err)

    # Async s3 on the workflow endpoint.
    jid = new_id("s3a")
    status, _, body = s.request("POST", "/workflow/txt2img", {
        "input": {"prompt": "a cat", "width": 256, "height": 256, "steps": 1}, "id": jid,
        "s3": {"bucket": BUCKET, "prefix": "async/", "async": True}})
    check(status == 202 and body.get("s3") == {"bucket": BUCKET, "prefix": "async/", "async": True},
          "workflow + s3 async -> 202 (%s %s)" % (status, body if status != 202 else ""))
    got = store.wait("/%s/async/%s" % (BUCKET, jid), 1, timeout=60)
    check(len(got) == 1 and got[0].get("sig_problem") is None, "the signed PUT arrives later")


def test_refusals(s, store):
    print("upload refusals", flush=True)
    g = base.small_recipe(64, 64, 1)
    cases = [
        ({"http_upload": {}}, "http_upload.url_prefix", "url_prefix"),
        ({"http_upload": "http://x/"}, "http_upload", "object"),
        ({"http_upload": {"url_prefix": "ftp://example.com/x"}}, "http_upload.url_prefix", "scheme"),
        ({"http_upload": {"url_prefix": store.base + "/a?b=1"}}, "http_upload.url_prefix", "query"),
        ({"http_upload": {"url_prefix": store.base, "async": "yes"}}, "http_upload.async", "boolean"),
        ({"s3": {"bucket": BUCKET}}, "s3.prefix", "prefix"),
        ({"s3": {"bucket": "a/b", "prefix": ""}}, "s3.bucket", "bucket"),
        ({"s3": {"bucket": BUCKET, "prefix": ""}, "http_upload": {"url_prefix": store.base}}, "s3",
         "one upload target"),
        ({"webhook": store.base + "/legacy", "http_upload": {"url_prefix": store.base}}, "webhook",
         "webhook_v2"),
        ({"hf_upload": {"repo": "a/b"}}, "hf_upload", "not supported"),
        ({"azure_blob_upload": {"container": "c"}}, "azure_blob_upload", "not supported"),
        ({"credentials": []}, "credentials", "not supported"),
    ]
    for extra, location, words in cases:
        status, _, body = s.request("POST", "/prompt", dict({"prompt": g}, **extra))
        check(status == 400 and body.get("location") == location and words in body.get("error", ""),
              "%s -> 400 at %s (%s %s)" % (json.dumps(extra)[:70], location, status, body))
    status, _, body = s.request("POST", "/workflow/txt2img",
                                {"input": {"prompt": "x"}, "hf_upload": {"repo": "a/b"}})
    check(status == 400 and body.get("location") == "hf_upload",
          "workflow endpoint: hf_upload -> 400 naming it (%s)" % body)
    check(not store.wait("/legacy", 1, timeout=0.2), "refused requests sent nothing")


def test_drain_waits_for_upload(s, store):
    print("SIGTERM drain waits for an in-flight upload", flush=True)
    store.delay["/slow"] = 3
    jid = new_id("drain")
    status, _, _ = s.request("POST", "/prompt", {
        "prompt": base.small_recipe(64, 64, 1), "id": jid,
        "http_upload": {"url_prefix": store.base + "/slow", "async": True}})
    check(status == 202, "async upload accepted")
    # SIGTERM once the PUT has started (the store holds it for 3 s).
    started = base.wait_until(lambda: any(o.get("msg") == "request" and o.get("id") == jid
                                          for o in s.log_objects()), 10)
    time.sleep(1.0)
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(60)
    except subprocess.TimeoutExpired:
        rc = None
    got = store.wait("/slow/" + jid, 1, timeout=1)
    check(started and rc == 0 and len(got) == 1 and got[0]["status"] == 200,
          "the upload finished before exit 0 (rc %s, %d PUTs)" % (rc, len(got)))
    check(any(o.get("msg") == "outputs uploaded" and o.get("id") == jid for o in s.log_objects()),
          "the server logged the upload as done")


def test_configured():
    store = Store()
    print("server U1: uploads configured (ALLOW_PRIVATE_UPLOADS, auth header, S3 endpoint)", flush=True)
    s = base.Server({"ALLOW_PRIVATE_UPLOADS": "true", "ALLOW_PRIVATE_WEBHOOKS": "true",
                     "HTTP_AUTH_HEADER_NAME": "X-Upload-Token", "HTTP_AUTH_HEADER_VALUE": "tok-123",
                     "AWS_REGION": "", "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                     "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": SESSION_TOKEN,
                     "AWS_ENDPOINT_URL": store.base, "PROMPT_WEBHOOK_RETRIES": "1"})
    try:
        s.wait_healthy()
        check(any(o.get("msg") == "s3 uploads enabled" and o.get("region") == REGION
                  for o in s.log_objects()), "start-up logs the S3 configuration (AWS_DEFAULT_REGION)")
        test_http_upload_sync(s, store)
        test_http_upload_async(s, store)
        test_slow_store_does_not_block(s, store)
        test_http_upload_failures(s, store)
        test_s3(s, store)
        test_refusals(s, store)
        test_drain_waits_for_upload(s, store)
    finally:
        s.kill()
        store.close()


# ---- server U2: nothing configured ---------------------------------------------------------

def test_unconfigured():
    print("server U2: no AWS settings, private upload targets refused (default)", flush=True)
    env = {k: "" for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                           "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    s = base.Server(env)
    try:
        s.wait_healthy()
        g = base.small_recipe(64, 64, 1)
        status, _, body = s.request("POST", "/prompt", {"prompt": g, "s3": {"bucket": "b", "prefix": ""}})
        check(status == 400 and body.get("location") == "s3" and
              "S3 is not configured" in body.get("error", "") and "AWS_REGION" in body.get("error", ""),
              "s3 without configuration -> 400 naming s3 and the settings (%s)" % body)
        status, _, body = s.request("POST", "/workflow/txt2img",
                                    {"input": {"prompt": "x"}, "s3": {"bucket": "b", "prefix": ""}})
        check(status == 400 and body.get("location") == "s3", "... on the workflow endpoint too")
        status, _, body = s.request("POST", "/prompt", {
            "prompt": g, "http_upload": {"url_prefix": "http://127.0.0.1:9/x"}})
        check(status == 400 and body.get("location") == "http_upload.url_prefix" and
              "ALLOW_PRIVATE_UPLOADS" in body.get("error", ""),
              "loopback http_upload -> 400 naming the setting (%s)" % body)
        status, _, body = s.request("POST", "/prompt", {"prompt": g, "hf_upload": {"repo": "a/b"}})
        check(status == 400 and body.get("location") == "hf_upload", "hf_upload -> 400")
    finally:
        s.kill()


def test_bad_settings():
    print("server U3: bad upload settings stop the start-up", flush=True)
    for extra, name in ((("HTTP_AUTH_HEADER_NAME", "bad name"), ("HTTP_AUTH_HEADER_VALUE", "x")),
                        "HTTP_AUTH_HEADER_NAME"), \
                       ((("AWS_ENDPOINT_URL", "ftp://store.example"),), "AWS_ENDPOINT_URL"):
        env = dict(os.environ, PORT="0", HOST="127.0.0.1", **dict(extra))
        p = subprocess.run([SERVER, "--demo"], env=env, capture_output=True, text=True, timeout=60)
        check(p.returncode != 0 and name in p.stdout + p.stderr and "listening" not in p.stdout,
              "bad %s -> non-zero exit before listening, naming it (rc %s)" % (name, p.returncode))


def main():
    return base.run_tests((test_configured, test_unconfigured, test_bad_settings))


if __name__ == "__main__":
    sys.exit(main())
