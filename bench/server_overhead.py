#!/usr/bin/env python3
"""Request latency overhead of sd35-server: time in the server minus engine time.

Usage: bench/server_overhead.py [path to sd35-server] [--runs N] [--sizes 128,256]
                                [--format png|jpeg|webp]

Starts `sd35-server --demo` (the tiny random model) on a free loopback port, warms it up,
then sends N sequential requests per size to POST /prompt with the recipe's graph
(tests/data/workflows/sd35-medium-txt2img.json, 4 steps; the txt2img endpoint's minimum
width is 256 and the demo model's maximum is 256)
and reports medians of
  client      what the client waited (connect → full response read)
  engine      stats.engine.execute_ms (graph execution on the engine)
  overhead    client − engine: HTTP parsing, validation, queueing, PNG/JPEG/WebP encoding,
              base64, JSON serialisation, transfer
and the server's own split (preprocess, queue, postprocess). Sequential requests on an idle
server: the overhead a single client sees, not throughput. Python 3 standard library only.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPE = os.path.join(HERE, "..", "tests", "data", "workflows", "sd35-medium-txt2img.json")


def start_server(binary):
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", LOG_LEVEL="info")
    proc = subprocess.Popen([binary, "--demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    port = [None]
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == "listening":
                port[0] = obj["port"]
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(60)
    if port[0] is None:
        proc.kill()
        sys.exit("sd35-server did not start")
    return proc, port[0]


def request(port, path, body, timeout=300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    return resp.status, json.loads(raw), ms, len(raw)


def wait_healthy(port, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("sd35-server did not become healthy")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server", nargs="?", default=os.path.join(HERE, "..", "build", "sd35-server"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--format", default="png", choices=["png", "jpeg", "webp"])
    args = ap.parse_args()
    proc, port = start_server(args.server)
    try:
        wait_healthy(port)
        print(f"sd35-server --demo on port {port}; {args.runs} sequential requests per size, "
              f"the recipe graph, 4 steps, output {args.format}")
        print(f"{'size':>6} {'client ms':>10} {'engine ms':>10} {'overhead ms':>12} "
              f"{'preproc':>8} {'queue':>7} {'postproc':>9} {'resp KB':>8}")
        for size in [int(s) for s in args.sizes.split(",")]:
            with open(RECIPE) as f:
                graph = json.load(f)
            graph["135"]["inputs"].update(width=size, height=size)
            graph["294"]["inputs"].update(steps=4, seed=1)
            graph["6"]["inputs"]["text"] = "a lighthouse at dusk"
            body = {"prompt": graph}
            if args.format != "png":
                body["convert_output"] = {"format": args.format}
            rows = []
            for i in range(args.runs + 1):
                status, out, ms, nbytes = request(port, "/prompt", body)
                if status != 200:
                    sys.exit(f"HTTP {status}: {out}")
                if i == 0:
                    continue  # first request at this size: allocations, prompt cache
                st = out["stats"]
                rows.append((ms, st["engine"]["execute_ms"], st["preprocess_time"],
                             st["queue_time"], st["postprocess_time"], nbytes))
            med = lambda k: statistics.median(r[k] for r in rows)
            over = statistics.median(r[0] - r[1] for r in rows)
            print(f"{size:>6} {med(0):>10.1f} {med(1):>10.1f} {over:>12.1f} {med(2):>8.1f} "
                  f"{med(3):>7.1f} {med(4):>9.1f} {med(5) / 1024:>8.1f}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
