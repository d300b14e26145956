#!/usr/bin/env python3
"""Black-box HTTP tests of `sd35-server --demo` (the tiny random model).

Usage: test_server_http.py <path to sd35-server>

Starts real server processes on free loopback ports (PORT=0; the port is read from the
"listening" log line), talks HTTP with the standard library only, and always kills the
servers at the end. Every wait is bounded.
"""
import base64
import http.client
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid

SERVER = sys.argv[1] if len(sys.argv) > 1 else "build/sd35-server"
HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, "..", "data", "workflows", "sd35-medium-txt2img.json")
FAILURES = []


def check(cond, what):
    if cond:
        print("  ok   " + what, flush=True)
    else:
        print("  FAIL " + what, flush=True)
        FAILURES.append(what)
    return cond


class Server:
    """One sd35-server process; stdout JSON lines are collected by a reader thread."""

    def __init__(self, env_extra, args=("--demo",)):
        env = dict(os.environ)
        env.update({"PORT": "0", "HOST": "127.0.0.1", "LOG_LEVEL": "info", "THREADS": "2"})
        env.update(env_extra)
        if env_extra.get("HOST") == "":
            del env["HOST"]  # the server's default
        self.proc = subprocess.Popen([SERVER, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.port = None
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        with self.cv:
            self.cv.wait_for(lambda: self.port is not None or self.proc.poll() is not None, 30)
        if self.port is None:
            self.kill()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines))

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.cv:
                self.lines.append(line)
                try:
                    obj = json.loads(line)
                    if obj.get("msg") == "listening":
                        self.port = obj["port"]
                except ValueError:
                    pass
                self.cv.notify_all()

    def logs(self):
        with self.cv:
            return list(self.lines)

    def log_objects(self):
        """The JSON log lines parsed (other lines skipped)."""
        out = []
        for line in self.logs():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def request_raw(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = {"_raw": data[:200].decode("latin-1")}
            return resp.status, dict(resp.getheaders()), parsed
        finally:
            conn.close()

    def wait_healthy(self, timeout=60):
        """Polls /health; returns the list of statuses seen (500s first, then 200)."""
        seen = []
        end = time.time() + timeout
        while time.time() < end:
            try:
                status, _, _ = self.request("GET", "/health", timeout=5)
                seen.append(status)
                if status == 200:
                    return seen
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server not healthy in time; statuses %s; log:\n%s" %
                           (seen, "\n".join(self.logs())))

    def kill(self):
        # SIGTERM first so the server removes its --demo folder; SIGKILL if it lingers.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def png_size(data):
    """(width, height) from a PNG's IHDR, or None if it is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def small_recipe(width, height, steps, prompt="a photo of a cat"):
    with open(RECIPE) as f:
        g = json.load(f)
    g["135"]["inputs"]["width"] = width
    g["135"]["inputs"]["height"] = height
    g["294"]["inputs"]["steps"] = steps
    g["6"]["inputs"]["text"] = prompt
    return g


def run_async(fn):
    """Runs fn() on a thread; returns a getter that waits (bounded) for its result."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the getter
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()

    def get(timeout=120):
        t.join(timeout)
        if t.is_alive():
            raise RuntimeError("request did not finish in time")
        if "error" in box:
            raise box["error"]
        return box["value"]
    return get


def wait_until(pred, timeout=30, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def test_main_server():
    print("server A: defaults, MAX_BODY_SIZE_MB=1, LOG_LEVEL=debug", flush=True)
    s = Server({"MAX_BODY_SIZE_MB": "1", "LOG_LEVEL": "debug"})
    try:
        seen = s.wait_healthy()
        check(seen[-1] == 200 and all(x in (500, 200) for x in seen),
              "/health 500 until warm, then 200 (seen %s)" % sorted(set(seen)))
        status, _, body = s.request("GET", "/health")
        check(status == 200 and body.get("status") == "healthy" and "version" in body,
              "/health body {version, status: healthy}")
        status, _, body = s.request("GET", "/ready")
        check(status == 200 and body.get("status") == "ready", "/ready 200")

        # The built-in endpoint, with a caller's X-Request-ID.
        t0 = time.time()
        status, hdrs, body = s.request(
            "POST", "/workflow/sd3.5-medium/txt2img",
            {"input": {"prompt": "a cat", "width": 256, "height": 256, "steps": 2}},
            headers={"X-Request-ID": "req-txt2img-1"})
        wall_ms = (time.time() - t0) * 1000
        ok = check(status == 200, "txt2img 256x256 -> 200 (got %s %s)" % (status, body if status != 200 else ""))
        if ok:
            img = base64.b64decode(body["images"][0])
            check(png_size(img) == (256, 256), "txt2img images[0] is a 256x256 PNG")
            check(re.fullmatch(re.escape(body["id"]) + r"_ComfyUI_00001_\.png", body["filenames"][0])
                  is not None, "txt2img filename <id>_ComfyUI_00001_.png (%s)" % body["filenames"][0])
            inp = body.get("input", {})
            check(isinstance(inp.get("seed"), int) and inp.get("steps") == 2 and
                  inp.get("cfg_scale") == 4.5 and inp.get("sampler_name") == "dpmpp_2m",
                  "txt2img echoes input with the seed used and defaults")
            check(body["prompt"]["294"]["inputs"]["seed"] == inp.get("seed"),
                  "the seed used is the graph's seed")
            stats = body.get("stats", {})
            check("comfy_execution" in stats and "total_time" in stats, "stats present")
            engine_ms = stats.get("engine", {}).get("execute_ms", 0)
            print("  info request %.1f ms at the client, engine %.1f ms, overhead %.1f ms"
                  % (wall_ms, engine_ms, wall_ms - engine_ms), flush=True)
        check(hdrs.get("X-Request-ID") == "req-txt2img-1", "X-Request-ID echoed")
        status, hdrs, _ = s.request("GET", "/ready")
        check(re.fullmatch(r"[0-9a-f-]{36}", hdrs.get("X-Request-ID", "")) is not None,
              "X-Request-ID generated when absent")
        status, _, body = s.request("POST", "/workflow/txt2img",
                                    {"input": {"prompt": "a dog", "steps": 1, "seed": 42}})
        check(status == 200 and body["input"]["seed"] == 42 and body["input"]["width"] == 256,
              "/workflow/txt2img alias, seed kept, demo default size 256")
        status, _, body = s.request("POST", "/workflow/txt2img",
                                    {"input": {"prompt": "a dog", "steps": 1, "width": 512}})
        check(status == 400 and "position embedding" in body.get("error", ""),
              "512 on the tiny model -> 400 with the engine's reason (%s)" % body)

        # /prompt with the recipe graph, small.
        jid = "job-" + uuid.uuid4().hex[:8]
        status, _, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 2), "id": jid})
        ok = check(status == 200, "/prompt recipe graph 128x128 -> 200 (got %s %s)" % (status, body if status != 200 else ""))
        if ok:
            check(body["id"] == jid, "/prompt keeps the caller's id")
            check(body["filenames"] == [jid + "_ComfyUI_00001_.png"], "/prompt filenames")
            check(png_size(base64.b64decode(body["images"][0])) == (128, 128),
                  "/prompt images[0] is a 128x128 PNG")
            check(body["prompt"]["301"]["inputs"]["filename_prefix"] == jid + "_ComfyUI",
                  "/prompt echoes the graph with the id-prefixed filename_prefix")
        status, _, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)})
        check(status == 200 and re.fullmatch(r"[0-9a-f-]{36}", body.get("id", "")) is not None,
              "/prompt without id gets a uuid")

        # Errors: each a 4xx JSON body, and the server still answers afterwards.
        status, _, body = s.request("POST", "/prompt", '{"prompt": {')
        check(status == 400 and "error" in body, "malformed JSON -> 400")
        g = small_recipe(128, 128, 2)
        g["99"] = {"class_type": "NoSuchNode", "inputs": {}}
        status, _, body = s.request("POST", "/prompt", {"prompt": g})
        check(status == 400 and "99" in body.get("node_errors", {}) and
              body["node_errors"]["99"]["class_type"] == "NoSuchNode",
              "unknown node type -> 400 with node_errors naming node 99 (%s)" % body)
        g = small_recipe(128, 128, 0)
        status, _, body = s.request("POST", "/prompt", {"prompt": g})
        errs = body.get("node_errors", {}).get("294", {}).get("errors", [{}])
        check(status == 400 and errs[0].get("extra_info", {}).get("input_name") == "steps",
              "/prompt steps 0 -> 400 naming node 294 input steps")
        status, _, body = s.request("POST", "/workflow/sd3.5-medium/txt2img",
                                    {"input": {"prompt": "x", "steps": 500}})
        check(status == 400 and body.get("location") == "input.steps" and "steps" in body["error"],
              "txt2img steps 500 -> 400 naming the field")
        status, _, body = s.request("POST", "/workflow/sd3.5-medium/txt2img",
                                    {"input": {"prompt": "x", "width": 100}})
        check(status == 400 and body.get("location") == "input.width", "txt2img width 100 -> 400")
        status, _, body = s.request("POST", "/workflow/sd3.5-medium/txt2img", {"input": {}})
        check(status == 400 and body.get("location") == "input.prompt", "txt2img without prompt -> 400")
        g = small_recipe(128, 128, 2)
        g["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
        status, _, body = s.request("POST", "/prompt", {"prompt": g})
        check(status == 400 and "4" in body.get("node_errors", {}), "unknown checkpoint -> 400 naming node 4")
        g = small_recipe(128, 128, 2)
        del g["301"]
        status, _, body = s.request("POST", "/prompt", {"prompt": g})
        check(status == 400 and "filename_prefix" in body.get("error", ""), "no SaveImage -> 400")
        status, _, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1),
                                                        "s3": {"bucket": "b", "prefix": ""}})
        check(status == 400 and body.get("location") == "s3", "s3 upload (not supported) -> clear 400")
        status, _, body = s.request("POST", "/prompt", b"x" * (2 << 20))
        check(status == 413 and "error" in body, "2 MB body with MAX_BODY_SIZE_MB=1 -> 413")
        deep = '{"prompt": {"1": {"class_type": "SaveImage", "inputs": {"x": ' + "[" * 100000 + "]" * 100000 + "}}}}"
        status, _, body = s.request("POST", "/prompt", deep)
        check(status == 400 and "deeper" in body.get("error", ""), "JSON nested 100000 deep -> 400")
        # Keep-alive: several requests on one connection, HEAD without a body.
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        try:
            conn.request("HEAD", "/health")
            r = conn.getresponse()
            head_body = r.read()
            conn.request("GET", "/ready")
            r2 = conn.getresponse()
            ready = json.loads(r2.read())
            check(r.status == 200 and head_body == b"" and ready.get("status") == "ready",
                  "keep-alive connection: HEAD /health (no body) then GET /ready")
        finally:
            conn.close()
        status, _, body = s.request("POST", "/interrupt", {"id": "no-such-job"})
        check(status == 404 and body == {"id": "no-such-job", "interrupted": "failed"},
              "/interrupt unknown id -> 404")
        status, _, body = s.request("GET", "/nope")
        check(status == 404 and body.get("statusCode") == 404, "unknown route -> 404 JSON")
        status, _, body = s.request("POST", "/prompt", "{}", headers={"Content-Type": "text/plain"})
        check(status == 415, "non-JSON content type -> 415")
        status, _, body = s.request("GET", "/models")
        check(status == 200 and "sd3.5_medium.safetensors" in body.get("checkpoints", []) and
              "clip_g.safetensors" in body.get("text_encoders", []), "/models lists the files")
        status, _, _ = s.request("GET", "/health")
        check(status == 200, "/health still 200 after all errors")
        check(all(json.loads(l).get("msg") for l in s.logs() if l.startswith("{")) and
              any('"path":"/prompt"' in l and '"status":400' in l for l in s.logs()),
              "one JSON log object per line, requests logged with status")
        check(any("demo model: random weights" in l for l in s.logs()), "demo mode says so in the log")

        # /interrupt of a queued job removes it (it fails with "interrupted" at once), then
        # the running one.
        first_id, queued_id = "run-" + uuid.uuid4().hex[:8], "queued-" + uuid.uuid4().hex[:8]
        first = run_async(lambda: s.request("POST", "/prompt",
                                            {"prompt": small_recipe(256, 256, 100), "id": first_id},
                                            timeout=120))
        # LOG_LEVEL=debug logs "queued" once a job is accepted: FIFO puts the next one behind.
        check(wait_until(lambda: any('"msg":"queued"' in l and first_id in l for l in s.logs()),
                         timeout=20), "first job accepted")
        queued = run_async(lambda: s.request("POST", "/prompt",
                                             {"prompt": small_recipe(128, 128, 1), "id": queued_id},
                                             timeout=120))
        check(wait_until(lambda: any('"msg":"queued"' in l and queued_id in l for l in s.logs()),
                         timeout=20), "second job queued behind it")
        status, _, body = s.request("POST", "/interrupt", {"id": queued_id})
        check(status == 200, "/interrupt of a queued job -> 200")
        status, _, body = queued(timeout=30)
        check(status == 500 and body.get("status") == "interrupted", "the queued job reports interrupted")
        status, _, body = s.request("POST", "/interrupt", {"id": first_id})
        check(status == 200, "/interrupt of the running job -> 200")
        status, _, body = first(timeout=60)
        check(status == 500 and body.get("status") == "interrupted", "the running job reports interrupted")

        # SIGTERM with nothing running: clean exit 0.
        s.proc.send_signal(signal.SIGTERM)
        try:
            rc = s.proc.wait(20)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "SIGTERM when idle -> exit 0 (rc %s)" % rc)
    finally:
        s.kill()


def test_queue_interrupt_auth_drain():
    print("server B: MAX_QUEUE_DEPTH=1, API_KEY, DRAIN_TIMEOUT_S=60", flush=True)
    key = "test-key-123"
    s = Server({"MAX_QUEUE_DEPTH": "1", "API_KEY": key, "DRAIN_TIMEOUT_S": "60"})
    auth = {"Authorization": "Bearer " + key}
    try:
        s.wait_healthy()
        status, _, _ = s.request("GET", "/ready")
        check(status == 200, "/ready 200 without a key (probes are open)")
        status, hdrs, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)})
        check(status == 401 and "error" in body, "no API key -> 401")
        status, _, _ = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)},
                                 headers={"X-API-Key": "wrong"})
        check(status == 401, "wrong API key -> 401")
        status, _, _ = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)},
                                 headers={"Salad-Api-Key": key})
        check(status == 200, "Salad-Api-Key accepted")

        # A slow job fills the queue (depth 1): /ready 503, the next job 429, then interrupt it.
        slow_id = "slow-" + uuid.uuid4().hex[:8]
        slow = run_async(lambda: s.request("POST", "/prompt",
                                           {"prompt": small_recipe(256, 256, 100), "id": slow_id},
                                           headers=auth, timeout=120))
        full = wait_until(lambda: s.request("GET", "/ready")[0] == 503, timeout=20)
        check(full, "/ready 503 while the queue is full")
        status, hdrs, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)},
                                       headers=auth)
        check(status == 429 and int(hdrs.get("Retry-After", "0")) >= 1 and "error" in body,
              "second job -> 429 with Retry-After (%s %s)" % (status, hdrs.get("Retry-After")))
        status, _, body = s.request("GET", "/health")
        check(status == 200, "/health answers while a job runs")
        t0 = time.time()
        status, _, body = s.request("POST", "/interrupt", {"id": slow_id}, headers=auth)
        check(status == 200 and body == {"id": slow_id, "interrupted": "success"},
              "/interrupt of the running job -> 200")
        status, _, body = slow(timeout=60)
        check(status == 500 and body.get("status") == "interrupted" and body.get("id") == slow_id,
              "the interrupted job's response reports interrupted (%s %s)" % (status, body))
        print("  info interrupt took effect in %.2f s" % (time.time() - t0), flush=True)
        check(wait_until(lambda: s.request("GET", "/ready")[0] == 200, timeout=10),
              "/ready 200 again after the interrupt")

        # SIGTERM while a job runs: /ready 503 at once, new jobs 503, the job finishes, exit 0.
        drain_id = "drain-" + uuid.uuid4().hex[:8]
        job = run_async(lambda: s.request("POST", "/prompt",
                                          {"prompt": small_recipe(256, 256, 12), "id": drain_id},
                                          headers=auth, timeout=120))
        running = wait_until(lambda: s.request("GET", "/ready")[0] == 503, timeout=20)
        check(running, "drain test: job running")
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        status, _, _ = s.request("GET", "/ready")
        check(status == 503, "/ready 503 right after SIGTERM")
        status, _, body = s.request("POST", "/prompt", {"prompt": small_recipe(128, 128, 1)},
                                    headers=auth)
        check(status == 503, "new job during drain -> 503 (%s)" % status)
        status, _, body = job(timeout=90)
        check(status == 200 and body.get("id") == drain_id and len(body.get("images", [])) == 1,
              "the running job finishes during the drain (%s)" % status)
        try:
            rc = s.proc.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, "exit 0 after the drain (rc %s)" % rc)
    finally:
        s.kill()


def test_warmup_and_default_host():
    print("server C: WARMUP_PROMPT_FILE, default HOST (:: dual-stack or the 0.0.0.0 fallback)",
          flush=True)
    path = os.path.join("/tmp", "sd35_warmup_%d.json" % os.getpid())
    with open(path, "w") as f:
        json.dump(small_recipe(128, 128, 1), f)
    env = {"WARMUP_PROMPT_FILE": path}
    s = None
    try:
        env["HOST"] = ""
        s = Server(env)
        s.wait_healthy()
        logs = s.logs()
        warm = [i for i, l in enumerate(logs) if '"warm-up done"' in l]
        healthy = [i for i, l in enumerate(logs) if '"msg":"healthy"' in l]
        check(warm and healthy and warm[0] < healthy[0], "warm-up ran before /health turned 200")
        status, _, _ = s.request("GET", "/ready")
        check(status == 200, "reachable on 127.0.0.1 with the default HOST")
    finally:
        if s:
            s.kill()
        os.unlink(path)


def test_warmup_failure():
    print("server D: a broken WARMUP_PROMPT_FILE", flush=True)
    path = os.path.join("/tmp", "sd35_bad_warmup_%d.json" % os.getpid())
    g = small_recipe(128, 128, 2)
    g["294"]["inputs"]["sampler_name"] = "no_such_sampler"
    with open(path, "w") as f:
        json.dump(g, f)
    try:
        env = dict(os.environ, PORT="0", HOST="127.0.0.1", WARMUP_PROMPT_FILE=path)
        p = subprocess.run([SERVER, "--demo"], env=env, capture_output=True, text=True, timeout=60)
        check(p.returncode != 0 and "sampler_name" in p.stdout,
              "warm-up failure -> non-zero exit with the reason (rc %s)" % p.returncode)
    finally:
        os.unlink(path)


def run_tests(tests):
    """Runs each test function (a crash counts as a failure and the others still run), prints
    the failures and returns the exit status. Shared by every tests/server script."""
    if not os.path.exists(SERVER):
        print("no server binary at " + SERVER)
        return 1
    t0 = time.time()
    for test in tests:
        try:
            test()
        except Exception as e:  # noqa: BLE001 - a crash is a failure, keep going
            FAILURES.append("%s: %s" % (test.__name__, e))
            print("  FAIL %s raised %r" % (test.__name__, e), flush=True)
    print("%d failure(s) in %.1f s" % (len(FAILURES), time.time() - t0))
    for f in FAILURES:
        print("  - " + f)
    return 1 if FAILURES else 0


def main():
    return run_tests((test_main_server, test_queue_interrupt_auth_drain,
                      test_warmup_and_default_host, test_warmup_failure))


if __name__ == "__main__":
    sys.exit(main())
