#!/usr/bin/env python3
"""Black-box tests of the API documentation and the workflow templates of `sd35-server --demo`.

Usage: test_server_docs.py <path to sd35-server>

Starts the server with a WORKFLOW_DIR holding a custom template and a broken one, and an
API_KEY; checks /docs/json (OpenAPI 3.0, every route), /docs/yaml, the /docs files and their
caching headers, runs the custom template and the built-in txt2img-advanced, and renders /docs
in headless Chromium (Debian's `chromium`, installed by scripts/setup.sh: its absence is a
failure, not a skip), asserting that Swagger UI rendered our operations without console errors
or failed requests. Standard library only; every wait is bounded; the server is always killed.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server_http as base  # noqa: E402  (Server, check, png_size, run_tests)

SERVER = base.SERVER
RECIPE = base.RECIPE
API_KEY = "docs-test-key"
FAILURES = base.FAILURES
check = base.check
png_size = base.png_size


class Server(base.Server):
    """base.Server with debug logs (the checks read request log lines) and JSON requests
    named as this file uses them: request() gives raw bytes, request_json() parsed JSON."""

    def __init__(self, env_extra):
        super().__init__(dict({"LOG_LEVEL": "debug"}, **env_extra))

    def request(self, method, path, body=None, headers=None, timeout=60):
        return self.request_raw(method, path, body, headers, timeout)

    def request_json(self, method, path, body=None, headers=None, timeout=60):
        return base.Server.request(self, method, path, body, headers, timeout)


def write_templates(root):
    """custom/tiny.json (one field sets both sizes) and bad.json (a target that does not exist)."""
    with open(RECIPE) as f:
        graph = json.load(f)
    graph["294"]["inputs"]["steps"] = 2
    tiny = {
        "summary": "Tiny test workflow",
        "description": "The recipe graph with one size field for both sides.",
        "fields": [
            {"name": "prompt", "type": "string", "required": True, "example": "a red cube",
             "description": "What to draw", "targets": [["6", "text"]]},
            {"name": "size", "type": "integer", "minimum": 64, "maximum": 256, "default": 128,
             "description": "Width and height", "targets": [["135", "width"], ["135", "height"]]},
            {"name": "steps", "type": "integer", "minimum": 1, "maximum": 4, "default": 2,
             "targets": [["294", "steps"]]},
        ],
        "graph": graph,
    }
    os.makedirs(os.path.join(root, "custom"))
    with open(os.path.join(root, "custom", "tiny.json"), "w") as f:
        json.dump(tiny, f)
    bad = dict(tiny, fields=[dict(tiny["fields"][0], targets=[["999", "text"]])])
    with open(os.path.join(root, "bad.json"), "w") as f:
        json.dump(bad, f)


def test_documents_and_routes(s, auth):
    logs = s.log_objects()
    bad = [l for l in logs if l.get("msg") == "workflow template not loaded"]
    check(len(bad) == 1 and bad[0].get("file", "").endswith("bad.json") and
          "999" in bad[0].get("reason", "") and bad[0].get("level") == "error",
          "the bad template is logged as an error naming the file and the problem (%s)" % bad)

    # The documents are open without the API key.
    status, hdrs, data = s.request("GET", "/docs/json")
    check(status == 200 and hdrs.get("content-type", "").startswith("application/json"),
          "/docs/json 200 application/json without the API key (%s)" % status)
    doc = json.loads(data)
    check(str(doc.get("openapi", "")).startswith("3.0."), "openapi 3.0.x (%s)" % doc.get("openapi"))
    check(doc.get("info", {}).get("title") == "ComfyUI API", "info.title ComfyUI API")
    default_url = doc["servers"][0]["variables"]["accessDomainName"]["default"]
    check(default_url == "http://localhost:%d" % s.port, "servers default is the bound port (%s)" % default_url)
    paths = doc.get("paths", {})
    want = ["/health", "/ready", "/models", "/prompt", "/interrupt", "/workflow/custom/tiny",
            "/workflow/sd3.5-medium/txt2img", "/workflow/txt2img", "/workflow/sd3.5-medium/img2img",
            "/workflow/img2img", "/workflow/sd3.5-medium/txt2img-advanced", "/workflow/txt2img-advanced"]
    check(all(p in paths for p in want), "paths include the custom route and the built-ins (%s)" % sorted(paths))
    check("/workflow/bad" not in paths, "the bad template has no route")
    tiny = paths["/workflow/custom/tiny"]["post"]
    size = tiny["requestBody"]["content"]["application/json"]["schema"]["properties"]["input"]["properties"]["size"]
    check(size == {"type": "integer", "minimum": 64, "maximum": 256, "default": 128,
                   "description": "Width and height"}, "custom input schema: size (%s)" % size)
    check("| size | integer |" in tiny.get("description", "") and tiny.get("summary") == "Tiny test workflow",
          "custom route: summary and markdown field table")
    check("security" in paths["/prompt"]["post"] and "security" not in paths["/health"]["get"],
          "API_KEY: security on /prompt, not on the probes")
    status, hdrs, data = s.request("GET", "/docs/yaml")
    check(status == 200 and "yaml" in hdrs.get("content-type", "") and b'"openapi": "3.0.' in data,
          "/docs/yaml 200 (%s %s)" % (status, hdrs.get("content-type")))

    status, hdrs, data = s.request("GET", "/docs")
    check(status == 200 and hdrs.get("content-type") == "text/html; charset=utf-8" and
          b"swagger-ui-bundle.js" in data, "/docs 200 text/html")
    check(s.request("GET", "/docs/")[0] == 200, "/docs/ 200")
    status, hdrs, data = s.request("GET", "/docs/static/swagger-ui-bundle.js")
    etag = hdrs.get("etag", "")
    check(status == 200 and hdrs.get("content-type", "").startswith("text/javascript") and
          "max-age" in hdrs.get("cache-control", "") and etag and len(data) > 100000,
          "swagger-ui-bundle.js 200 with Content-Type, Cache-Control and ETag")
    status, hdrs, data = s.request("GET", "/docs/static/swagger-ui-bundle.js", headers={"If-None-Match": etag})
    check(status == 304 and data == b"", "If-None-Match -> 304 without a body")
    status, hdrs, _ = s.request("GET", "/docs/static/swagger-ui.css")
    check(status == 200 and hdrs.get("content-type", "").startswith("text/css"), "swagger-ui.css text/css")
    status, _, body = s.request_json("GET", "/docs/static/nope.js")
    check(status == 404 and body.get("statusCode") == 404, "unknown /docs file -> 404 JSON")

    # Routes: the API key still guards the workflows; unknown ones are Fastify-style 404s.
    status, _, _ = s.request_json("POST", "/workflow/custom/tiny", {"input": {"prompt": "x"}})
    check(status == 401, "custom route without the API key -> 401")
    for path in ("/workflow/bad", "/workflow/nope", "/workflow/custom"):
        status, _, body = s.request_json("POST", path, {"input": {}}, headers=auth)
        check(status == 404 and body.get("message") == "Route POST:%s not found" % path,
              "%s -> 404 (%s)" % (path, status))


def test_generation(s, auth):
    status, _, body = s.request_json("POST", "/workflow/custom/tiny",
                                     {"input": {"prompt": "a red cube", "size": 64}}, headers=auth)
    ok = check(status == 200, "custom template -> 200 (%s %s)" % (status, body if status != 200 else ""))
    if ok:
        check(png_size(base64.b64decode(body["images"][0])) == (64, 64), "custom template image is 64x64")
        check(body["input"] == {"prompt": "a red cube", "size": 64, "steps": 2}, "input echoed with defaults")
        check(body["prompt"]["135"]["inputs"]["height"] == 64, "one field filled both targets")
    status, _, body = s.request_json("POST", "/workflow/custom/tiny",
                                     {"input": {"prompt": "x", "size": 1000}}, headers=auth)
    check(status == 400 and body.get("location") == "input.size", "custom template range -> 400 input.size")

    status, _, body = s.request_json(
        "POST", "/workflow/txt2img-advanced",
        {"input": {"prompt": "a cat", "negative_prompt": "blurry", "batch_size": 2, "steps": 2,
                   "slg_layers": "1, 2", "slg_end_percent": 0.9}, "id": "adv-1"},
        headers=auth, timeout=120)
    ok = check(status == 200, "txt2img-advanced batch 2 -> 200 (%s %s)" % (status, body if status != 200 else ""))
    if ok:
        sizes = [png_size(base64.b64decode(i)) for i in body["images"]]
        check(sizes == [(256, 256), (256, 256)], "two 256x256 PNGs (%s)" % sizes)
        check(body["filenames"] == ["adv-1_ComfyUI_00001_.png", "adv-1_ComfyUI_00002_.png"],
              "filenames of the batch (%s)" % body["filenames"])
        check(body["prompt"]["300"]["class_type"] == "SkipLayerGuidanceSD3" and
              body["prompt"]["300"]["inputs"]["layers"] == "1, 2", "skip-layer guidance node filled")
        check(body["input"]["negative_prompt"] == "blurry" and isinstance(body["input"]["seed"], int),
              "resolved input echoed")
    status, _, body = s.request_json("POST", "/workflow/txt2img-advanced",
                                     {"input": {"prompt": "a cat", "steps": 1, "slg_layers": "9"}},
                                     headers=auth, timeout=120)
    check(status == 400 and "layer" in body.get("error", ""),
          "a skip layer the model lacks -> 400 (%s %s)" % (status, body))


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_swagger_ui_renders(s):
    browser = find_chromium()
    if not check(browser is not None,
                 "chromium is installed (scripts/setup.sh installs Debian's chromium package)"):
        return
    profile = tempfile.mkdtemp(prefix="sd35_chromium_")
    first_log = len(s.log_objects())
    try:
        proc = subprocess.run(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--enable-logging=stderr", "--v=0",
             "--user-data-dir=" + profile, "--virtual-time-budget=10000", "--dump-dom",
             "http://127.0.0.1:%d/docs" % s.port],
            capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        check(False, "chromium finished within 120 s")
        return
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = proc.stdout
    check(proc.returncode == 0 and "swagger-ui" in dom,
          "chromium dumped the page (rc %s, %d bytes)" % (proc.returncode, len(dom)))
    for path in ("/health", "/prompt", "/workflow/custom/tiny", "/workflow/sd3.5-medium/txt2img-advanced"):
        check('data-path="%s"' % path in dom, "Swagger UI rendered the operation %s" % path)
    check("Tiny test workflow" in dom, "the custom template's summary is shown")
    check("errors-wrapper" not in dom, "Swagger UI shows no spec errors")
    console = [l for l in proc.stderr.splitlines()
               if "CONSOLE" in l or "Uncaught" in l or "net::ERR" in l]
    check(not console, "no console messages or network errors in the browser (%s)" % console[:5])
    # Every request the browser made was answered (the server logs each one at debug level).
    # Only the browser's paths: the reader thread may still be catching up with the log lines
    # of earlier requests of this test (a deliberate 400 among them), so the line count taken
    # before the browser started is not a clean boundary on a busy machine. Waits (bounded)
    # for the reader to catch up with the browser's own lines.
    wanted = {"/docs", "/docs/json", "/docs/static/swagger-ui-bundle.js",
              "/docs/static/swagger-ui.css", "/docs/static/sd35-docs.js"}
    end = time.time() + 10
    while True:
        reqs = [l for l in s.log_objects()[first_log:] if l.get("msg") == "request" and
                (l.get("path", "").startswith("/docs") or l.get("path") == "/favicon.ico")]
        fetched = {l.get("path") for l in reqs}
        if wanted <= fetched or time.time() > end:
            break
        time.sleep(0.05)
    failed = [(l.get("path"), l.get("status")) for l in reqs if l.get("status", 0) >= 400]
    check(not failed, "no failed resource loads (%s)" % failed)
    check(wanted <= fetched,
          "the browser loaded the page, its files and the document (%s)" % sorted(fetched))


def main():
    if not os.path.exists(SERVER):
        print("no server binary at " + SERVER)
        return 1
    t0 = time.time()
    root = tempfile.mkdtemp(prefix="sd35_workflows_")
    s = None
    try:
        write_templates(root)
        print("server: --demo, WORKFLOW_DIR with a custom and a bad template, API_KEY", flush=True)
        s = Server({"WORKFLOW_DIR": root, "API_KEY": API_KEY})
        s.wait_healthy()
        auth = {"Authorization": "Bearer " + API_KEY}
        for test in (test_documents_and_routes, test_generation):
            try:
                test(s, auth)
            except Exception as e:  # noqa: BLE001 - a crash is a failure, keep going
                FAILURES.append("%s: %r" % (test.__name__, e))
                print("  FAIL %s raised %r" % (test.__name__, e), flush=True)
        try:
            test_swagger_ui_renders(s)
        except Exception as e:  # noqa: BLE001
            FAILURES.append("test_swagger_ui_renders: %r" % e)
            print("  FAIL test_swagger_ui_renders raised %r" % e, flush=True)
    except Exception as e:  # noqa: BLE001
        FAILURES.append("server: %r" % e)
        print("  FAIL %r" % e, flush=True)
    finally:
        if s:
            s.kill()
        shutil.rmtree(root, ignore_errors=True)

    print("server: WORKFLOW_DIR that does not exist", flush=True)
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", WORKFLOW_DIR="/nonexistent/sd35-workflows")
    try:
        p = subprocess.run([SERVER, "--demo"], env=env, capture_output=True, text=True, timeout=60)
        check(p.returncode != 0 and "/nonexistent/sd35-workflows" in p.stdout,
              "a missing WORKFLOW_DIR stops the start with the reason (rc %s)" % p.returncode)
    except subprocess.TimeoutExpired:
        check(False, "a missing WORKFLOW_DIR stops the start within 60 s")

    print("%d failure(s) in %.1f s" % (len(FAILURES), time.time() - t0))
    for f in FAILURES:
        print("  - " + f)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
