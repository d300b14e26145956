#!/usr/bin/env python3
"""Black-box tests of input images and graph features over HTTP (`sd35-server --demo`).

Usage: test_server_inputs.py <path to sd35-server>

LoadImage's `image` as base64, data: URL, http(s) URL (a loopback HTTP server, allowed by
ALLOW_PRIVATE_INPUT_URLS) and a file name inside INPUT_DIR, through the img2img template and
raw graphs; the refusals (bad base64, absolute paths, "..", loopback URLs without the flag);
the newer graph nodes (ImageScale, PreviewImage, KSamplerAdvanced, SamplerCustomAdvanced);
per-node start times in stats; VAELoader (a server warmed up with a VAE file, and the
refusals of graphs asking for another VAE). Python 3 standard library only; every wait is bounded.
"""
import base64
import http.server
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server_http as base  # noqa: E402  (Server, small_recipe, check, png_size)

check = base.check
SERVER = base.SERVER


class ImageHost:
    """Serves one file at /init.png on a loopback port."""

    def __init__(self, data):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path != "/init.png":
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/init.png" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SlowHost:
    """Accepts connections and answers nothing for `hold_s` seconds, then closes them."""

    def __init__(self, hold_s):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d/slow.png" % self.sock.getsockname()[1]
        self.hold_s = hold_s
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Timer(self.hold_s, conn.close).start()

    def close(self):
        self.sock.close()


def png_pixels(b64):
    """The inflated IDAT stream of a base64 PNG: equal for equal pixels from the same encoder
    (the PNG bytes themselves differ, since they carry the request's graph in a text chunk)."""
    data = base64.b64decode(b64)
    pos, idat = 8, b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def same_pixels(a, b):
    return [png_pixels(x) for x in a["images"]] == [png_pixels(x) for x in b["images"]]


def generate_png(s, size):
    """A size x size PNG from the recipe graph (the demo model's output is noise, fine here)."""
    status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(size, size, 1)},
                                timeout=120)
    if status != 200:
        raise RuntimeError("could not generate the input image: %s %s" % (status, body))
    return base64.b64decode(body["images"][0])


def img2img_graph(image, scale_to=None, preview=False):
    """Recipe text encoders + LoadImage -> (ImageScale) -> VAEEncode -> KSampler -> SaveImage."""
    g = base.small_recipe(64, 64, 2)
    g["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    pixels = ["10", 0]
    if scale_to:
        g["20"] = {"class_type": "ImageScale",
                   "inputs": {"image": pixels, "upscale_method": "bilinear", "width": scale_to[0],
                              "height": scale_to[1], "crop": "center"}}
        pixels = ["20", 0]
    g["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": pixels, "vae": ["4", 2]}}
    g["294"]["inputs"]["latent_image"] = ["12", 0]
    g["294"]["inputs"]["denoise"] = 0.6
    del g["135"]  # the empty latent is no longer used
    if preview:
        g["30"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    return g


def test_img2img_sources(s, png, host, input_dir):
    b64 = base64.b64encode(png).decode()
    shutil.copy(os.path.join(input_dir, "init.png"), os.path.join(input_dir, "copy.png"))
    sources = [("base64", b64), ("data URL", "data:image/png;base64," + b64),
               ("http URL", host.url), ("INPUT_DIR file name", "copy.png")]
    for what, image in sources:
        status, _, body = s.request(
            "POST", "/workflow/img2img",
            {"input": {"image": image, "prompt": "a cat", "steps": 2, "denoise": 0.6}}, timeout=120)
        ok = check(status == 200, "img2img with a %s -> 200 (%s %s)" %
                   (what, status, body if status != 200 else ""))
        if ok:
            size = base.png_size(base64.b64decode(body["images"][0]))
            check(size == (64, 64), "img2img (%s) output has the input's size (%s)" % (what, size))
            check(body["input"]["denoise"] == 0.6 and body["input"]["image"] == image,
                  "img2img (%s) echoes its input" % what)


def test_img2img_refusals(s):
    cases = [
        ("not base64", "not-an-image!"),
        ("base64 of text", base64.b64encode(b"hello, this is not an image").decode()),
        ("truncated PNG", base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()),
    ]
    for what, image in cases:
        status, _, body = s.request("POST", "/workflow/img2img",
                                    {"input": {"image": image, "prompt": "x"}})
        check(status == 400 and body.get("location") == "input.image",
              "img2img with %s -> 400 at input.image (%s %s)" % (what, status, body))
    for what, image in [("an absolute path", "/etc/hostname"), ("a '..' path", "../init.png"),
                        ("a missing file", "nothing-here.png"), ("an s3 URL", "s3://b/k.png")]:
        status, _, body = s.request("POST", "/prompt", {"prompt": img2img_graph(image)})
        errs = (body or {}).get("node_errors", {}).get("10", {}).get("errors", [{}])
        check(status == 400 and errs[0].get("extra_info", {}).get("input_name") == "image",
              "LoadImage with %s -> 400 naming node 10, input image (%s %s)" % (what, status, body))
    status, _, _ = s.request("GET", "/health")
    check(status == 200, "the server still answers after the refusals")


def test_graph_nodes_and_stats(s, png):
    b64 = base64.b64encode(png).decode()
    status, _, body = s.request("POST", "/prompt",
                                {"prompt": img2img_graph(b64, scale_to=(96, 64), preview=True),
                                 "id": "scaled-1"}, timeout=120)
    ok = check(status == 200, "LoadImage -> ImageScale -> img2img + PreviewImage -> 200 (%s %s)" %
               (status, body if status != 200 else ""))
    if ok:
        sizes = [base.png_size(base64.b64decode(i)) for i in body["images"]]
        check(sizes == [(96, 64)], "one image (previews are not returned), scaled to 96x64 (%s)" % sizes)
        check(body["filenames"] == ["scaled-1_ComfyUI_00001_.png"], "filenames (%s)" % body["filenames"])
        ex = body["stats"]["comfy_execution"]
        nodes = ex["nodes"]
        check({"4", "10", "20", "12", "294", "8", "301", "30"} <= set(nodes),
              "stats.comfy_execution.nodes lists the executed nodes (%s)" % sorted(nodes))
        starts = [v["start"] for v in nodes.values()]
        check(all(ex["start"] <= t <= ex["end"] for t in starts),
              "every node started within the execution window")
        check(nodes["10"]["start"] <= nodes["12"]["start"] <= nodes["294"]["start"] <= nodes["8"]["start"],
              "node start times follow the graph order")

    # KSamplerAdvanced over the whole range equals KSampler (the engine test checks bits; here
    # the route): same seed, same image.
    g = base.small_recipe(64, 64, 2)
    status, _, plain = s.request("POST", "/prompt", {"prompt": g}, timeout=120)
    k = g["294"]["inputs"]
    g["294"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": k["model"], "positive": k["positive"], "negative": k["negative"],
        "latent_image": k["latent_image"], "add_noise": "enable", "noise_seed": k["seed"],
        "steps": 2, "cfg": k["cfg"], "sampler_name": k["sampler_name"], "scheduler": k["scheduler"],
        "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    status2, _, adv = s.request("POST", "/prompt", {"prompt": g}, timeout=120)
    check(status == 200 and status2 == 200 and same_pixels(plain, adv),
          "KSamplerAdvanced (full range) gives KSampler's image over HTTP")

    # SamplerCustomAdvanced with its helper nodes.
    g = base.small_recipe(64, 64, 2)
    g["294"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["401", 0], "guider": ["402", 0], "sampler": ["403", 0], "sigmas": ["404", 0],
        "latent_image": ["135", 0]}}
    g["401"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": k["seed"]}}
    g["402"] = {"class_type": "CFGGuider", "inputs": {"model": k["model"], "positive": k["positive"],
                                                      "negative": k["negative"], "cfg": k["cfg"]}}
    g["403"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": k["sampler_name"]}}
    g["404"] = {"class_type": "BasicScheduler", "inputs": {"model": k["model"], "scheduler": k["scheduler"],
                                                           "steps": 2, "denoise": 1.0}}
    status3, _, custom = s.request("POST", "/prompt", {"prompt": g}, timeout=120)
    check(status3 == 200 and same_pixels(custom, plain),
          "SamplerCustomAdvanced (RandomNoise, CFGGuider, KSamplerSelect, BasicScheduler) gives "
          "KSampler's image (%s)" % (status3 if status3 != 200 else "same"))
    g["401"]["inputs"]["noise_seed"] = k["seed"] + 1
    status5, _, other = s.request("POST", "/prompt", {"prompt": g}, timeout=120)
    check(status5 == 200 and not same_pixels(other, plain),
          "... and another noise seed gives another image (the comparison can fail)")
    g["404"]["inputs"]["scheduler"] = "no-such-scheduler"
    status4, _, bad = s.request("POST", "/prompt", {"prompt": g})
    check(status4 == 400 and "404" in (bad or {}).get("node_errors", {}),
          "an unknown scheduler in BasicScheduler -> 400 naming node 404 (%s)" % status4)


def test_slow_url_does_not_block(s):
    """An input image URL that takes seconds must not hold the I/O thread (this server has
    HTTP_THREADS=1): probes and other requests are answered meanwhile."""
    slow = SlowHost(hold_s=4)
    try:
        pending = base.run_async(lambda: s.request(
            "POST", "/workflow/img2img", {"input": {"image": slow.url, "prompt": "x"}}, timeout=60))
        time.sleep(0.5)  # the request is being validated (waiting for the download)
        t0 = time.time()
        status, _, _ = s.request("GET", "/health", timeout=10)
        waited = time.time() - t0
        check(status == 200 and waited < 2.0,
              "/health answers while an image URL is being fetched (%.2f s)" % waited)
        status, _, body = pending(timeout=60)
        check(status == 400 and body.get("location") == "input.image",
              "the stalled image URL -> 400 at input.image once the host gives up (%s %s)" %
              (status, body))
    finally:
        slow.close()


def vae_graph(vae_name, size=64):
    """The recipe with its VAE from a VAELoader (node 39) instead of the checkpoint."""
    g = base.small_recipe(size, size, 1)
    g["39"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}}
    g["8"]["inputs"]["vae"] = ["39", 0]
    return g


def node_error(body, node):
    """(input_name, message) of the first error of `node` in a 400's node_errors."""
    err = (body or {}).get("node_errors", {}).get(node, {}).get("errors", [{}])[0]
    return err.get("extra_info", {}).get("input_name"), err.get("details", "") + err.get("message", "")


def write_vae_only(src, dst):
    """The tiny checkpoint's first_stage_model.* tensors as a bare VAE file (SAI keys, as the
    SD3.5 repo's VAE-only safetensors)."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out_header, blobs, pos = {}, [], 0
    for name, info in header.items():
        if not name.startswith("first_stage_model."):
            continue
        a, b = info["data_offsets"]
        blobs.append(data[a:b])
        out_header[name[len("first_stage_model."):]] = dict(info, data_offsets=[pos, pos + b - a])
        pos += b - a
    raw = json.dumps(out_header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_vae_refused_by_demo(s):
    # The demo's model folder has no vae/: the name is refused before anything runs.
    status, _, body = s.request("POST", "/prompt", {"prompt": vae_graph("sd35_vae.safetensors")})
    name, msg = node_error(body, "39")
    check(status == 400 and name == "vae_name" and "not found" in msg,
          "VAELoader naming a missing file -> 400 naming node 39, input vae_name (%s %s)" % (status, body))
    status, _, body = s.request("POST", "/prompt", {"prompt": vae_graph("../checkpoints/sd3.5_medium.safetensors")})
    check(status == 400 and node_error(body, "39")[0] == "vae_name",
          "VAELoader with a '..' name -> 400 naming node 39, input vae_name (%s)" % status)


def test_vae_loader_server():
    print("server H: MODEL_DIR with vae/, warm-up graph with a VAELoader", flush=True)
    tiny = os.path.join(HERE, "..", "data", "tiny-a")
    models = tempfile.mkdtemp(prefix="sd35_vae_models_")
    for sub in ("checkpoints", "text_encoders", "vae"):
        os.makedirs(os.path.join(models, sub))
    for src, dst in [("model.safetensors", "checkpoints/sd3.5_medium.safetensors"),
                     ("clip_g.safetensors", "text_encoders/clip_g.safetensors"),
                     ("clip_l.safetensors", "text_encoders/clip_l.safetensors"),
                     ("t5xxl.safetensors", "text_encoders/t5xxl_fp8_e4m3fn.safetensors"),
                     ("config.json", "checkpoints/config.json"),
                     ("config.json", "text_encoders/config.json")]:
        os.symlink(os.path.abspath(os.path.join(tiny, src)), os.path.join(models, dst))
    write_vae_only(os.path.join(tiny, "model.safetensors"), os.path.join(models, "vae", "sd35_vae.safetensors"))
    # A copy, not a link: the server compares canonical paths, a link would be the same file.
    shutil.copy(os.path.join(models, "vae", "sd35_vae.safetensors"), os.path.join(models, "vae", "other.safetensors"))
    warmup = os.path.join(models, "warmup.json")
    with open(warmup, "w") as f:
        json.dump(vae_graph("sd35_vae.safetensors"), f)
    s = base.Server({"MODEL_DIR": models, "WARMUP_PROMPT_FILE": warmup}, args=())
    try:
        s.wait_healthy(timeout=120)
        status, _, body = s.request("POST", "/prompt", {"prompt": vae_graph("sd35_vae.safetensors")}, timeout=120)
        check(status == 200 and len(body.get("images", [])) == 1,
              "the warm-up's VAELoader graph -> 200 with one image (%s)" % status)
        status, _, body = s.request("POST", "/prompt", {"prompt": vae_graph("other.safetensors")})
        name, msg = node_error(body, "39")
        check(status == 400 and name == "vae_name" and "sd35_vae.safetensors" in msg,
              "another VAE file -> 400 naming node 39, input vae_name, and the loaded VAE (%s %s)" % (status, body))
        status, _, body = s.request("POST", "/prompt", {"prompt": base.small_recipe(64, 64, 1)})
        name, msg = node_error(body, "8")
        check(status == 400 and name == "vae" and "VAELoader" in msg,
              "the checkpoint's VAE on a server with a VAE file -> 400 naming node 8, input vae (%s %s)" % (status, body))
        status, _, body = s.request("GET", "/models")
        check(status == 200 and "sd35_vae.safetensors" in body.get("vae", []), "/models lists vae/ (%s)" % body)
        s.kill()
        # The same folder without the warm-up file: the recipe loads the checkpoint's VAE, so
        # a VAELoader graph asks for a VAE this server does not hold.
        s = base.Server({"MODEL_DIR": models}, args=())
        s.wait_healthy(timeout=120)
        status, _, body = s.request("POST", "/prompt", {"prompt": vae_graph("sd35_vae.safetensors")})
        name, msg = node_error(body, "39")
        check(status == 400 and name == "vae_name" and "checkpoint's VAE" in msg,
              "a VAELoader on a server using the checkpoint's VAE -> 400 naming node 39, input "
              "vae_name (%s %s)" % (status, body))
    finally:
        s.kill()
        shutil.rmtree(models, ignore_errors=True)


def test_main():
    print("server F: INPUT_DIR, ALLOW_PRIVATE_INPUT_URLS=true, HTTP_THREADS=1", flush=True)
    input_dir = tempfile.mkdtemp(prefix="sd35_inputs_")
    s = base.Server({"INPUT_DIR": input_dir, "ALLOW_PRIVATE_INPUT_URLS": "true",
                     "HTTP_THREADS": "1"})
    host = None
    try:
        s.wait_healthy()
        png = generate_png(s, 64)
        with open(os.path.join(input_dir, "init.png"), "wb") as f:
            f.write(png)
        host = ImageHost(png)
        test_img2img_sources(s, png, host, input_dir)
        test_img2img_refusals(s)
        test_graph_nodes_and_stats(s, png)
        test_slow_url_does_not_block(s)
        test_vae_refused_by_demo(s)
    finally:
        s.kill()
        if host:
            host.close()
        shutil.rmtree(input_dir, ignore_errors=True)


def test_private_urls_refused():
    print("server G: default address policy (loopback input URLs refused)", flush=True)
    s = base.Server({})
    host = ImageHost(b"\x89PNG\r\n\x1a\n")
    try:
        s.wait_healthy()
        status, _, body = s.request("POST", "/workflow/img2img",
                                    {"input": {"image": host.url, "prompt": "x"}})
        check(status == 400 and body.get("location") == "input.image",
              "a loopback image URL -> 400 at input.image (%s %s)" % (status, body))
    finally:
        s.kill()
        host.close()


def main():
    return base.run_tests((test_main, test_private_urls_refused, test_vae_loader_server))


if __name__ == "__main__":
    sys.exit(main())
