#!/usr/bin/python3
"""Load test of `qkv serve`'s dynamic batching: many clients at once against one at a time.

    bench/serve_load.py --qkv build/release/qkv --model-dir /work/exp/base
                        [--clients 64] [--requests 20] [--beam 1]
                        [--max-batch-tokens N] [--max-wait-ms MS] [--json PATH]

Starts `qkv serve` on a free loopback port, then sends clients x requests POST /v1/translate,
each one Spanish sentence of the Bible dev split (data/bible.es-en.dev.tsv.xz), twice:
  1. concurrently: one thread per client, each with its own keep-alive connection (http.client),
     all starting together, each sending its requests one after another;
  2. the same requests one at a time, from one client.
Every answer must be 200 with exactly one translation: a failed or lost request makes the run
fail (exit 1). Prints p50/p99 latency and throughput of both, their ratio (goal: >= 4x), the
batch sizes the server reports in /metrics, and how many concurrent answers differ from the
one-at-a-time answer to the same sentence (batching must not change a result).
"""
import argparse
import http.client
import json
import lzma
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spanish_sentences(path):
    """The Spanish side of the dev split: lines are `reference<TAB>Spanish<TAB>English`."""
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[1] for line in f if line.strip()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a, port):
    args = [a.qkv, "serve", "--model-dir", a.model_dir, "--host", "127.0.0.1", "--port",
            str(port)]
    if a.max_batch_tokens is not None:
        args += ["--max-batch-tokens", str(a.max_batch_tokens)]
    if a.max_wait_ms is not None:
        args += ["--max-wait-ms", str(a.max_wait_ms)]
    args += a.server_arg
    print("server:", " ".join(args))
    log = open(a.server_log, "w")
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"qkv serve exited {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("qkv serve did not answer /health within 120 s")


class Client:
    """One keep-alive connection; translate() returns (latency s, translation or None, error)."""

    def __init__(self, port, beam):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.beam = beam

    def translate(self, sentence):
        body = json.dumps({"text": sentence, "beam": self.beam})
        start = time.perf_counter()
        try:
            self.connection.request("POST", "/v1/translate", body,
                                    {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.connection.close()  # the next request opens a new connection
            return time.perf_counter() - start, None, f"{type(e).__name__}: {e}"
        latency = time.perf_counter() - start
        if response.status != 200:
            return latency, None, f"{response.status}: {data[:200]!r}"
        translations = json.loads(data).get("translations")
        if not (isinstance(translations, list) and len(translations) == 1 and
                isinstance(translations[0], str)):
            return latency, None, f"not one translation: {data[:200]!r}"
        return latency, translations[0], None


def run_concurrent(port, beam, jobs):
    """jobs[c] is client c's list of (request index, sentence); all clients start together."""
    results = {}
    barrier = threading.Barrier(len(jobs) + 1)

    def client(requests):
        c = Client(port, beam)
        barrier.wait()
        for index, sentence in requests:
            results[index] = c.translate(sentence)  # distinct keys: safe across threads
        c.connection.close()

    threads = [threading.Thread(target=client, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def run_sequential(port, beam, jobs):
    c = Client(port, beam)
    results = {}
    start = time.perf_counter()
    for requests in jobs:
        for index, sentence in requests:
            results[index] = c.translate(sentence)
    return results, time.perf_counter() - start


def own_cpu_s():
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """CPU that processes other than the server and this script use during a phase, in cores
    (from /proc): the machine is shared, and a timing means little if others were busy."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def ticks(self):
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        with open(f"/proc/{self.server_pid}/stat") as f:
            server = sum(int(v) for v in f.read().rsplit(")", 1)[1].split()[11:13])
        own = os.times()
        return busy - server - (own.user + own.system) * self.tick, time.monotonic()

    def cores(self, start, end):
        return max(0.0, (end[0] - start[0]) / self.tick / (end[1] - start[1]))


def metric_totals(port):
    """Sums over labels of the batch histograms' _sum and _count in /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
    except OSError as e:
        print("no /metrics:", e)
        return {}
    totals = {}
    for line in text.splitlines():
        m = re.match(r"(qkv_batch_(?:requests|items)_(?:sum|count))(?:\{[^}]*\})? (\S+)$", line)
        if m:
            totals[m[1]] = totals.get(m[1], 0.0) + float(m[2])
    return totals


def mean_batch(before, after, name):
    count = after.get(name + "_count", 0) - before.get(name + "_count", 0)
    total = after.get(name + "_sum", 0) - before.get(name + "_sum", 0)
    return total / count if count else None


def summary(name, results, wall):
    latencies = sorted(r[0] for r in results.values())
    n = len(latencies)
    s = {
        "requests": n,
        "failed": sum(1 for r in results.values() if r[2] is not None),
        "wall_s": wall,
        "latency_p50_ms": 1000 * statistics.median(latencies),
        "latency_p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))],
        "requests_per_s": n / wall,
        "sentences_per_s": n / wall,  # one sentence per request
    }
    print(f"{name:>14}: {n} requests in {wall:.2f} s, {s['requests_per_s']:.1f} requests/s "
          f"({s['sentences_per_s']:.1f} sentences/s), latency p50 {s['latency_p50_ms']:.1f} ms, "
          f"p99 {s['latency_p99_ms']:.1f} ms, {s['failed']} failed")
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qkv", required=True, help="the qkv binary")
    p.add_argument("--model-dir", required=True, help="a translation model (qkv train)")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=20, help="requests per client")
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--max-batch-tokens", type=int)
    p.add_argument("--max-wait-ms", type=int)
    p.add_argument("--server-arg", action="append", default=[],
                   help="another argument for qkv serve (repeatable)")
    p.add_argument("--server-log", default=os.devnull, help="where qkv serve's output goes")
    p.add_argument("--data", default=os.path.join(ROOT, "data/bible.es-en.dev.tsv.xz"))
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()

    sentences = spanish_sentences(a.data)
    # Client c's r-th request: sentence c * requests + r, the same in both runs.
    jobs = [[(i, sentences[i % len(sentences)])
             for i in range(c * a.requests, (c + 1) * a.requests)] for c in range(a.clients)]
    total = a.clients * a.requests

    port = free_port()
    load_before = os.getloadavg()
    server = start_server(a, port)
    try:
        run_sequential(port, a.beam, [jobs[0][:5]])  # warm-up: first allocations, page cache
        other = OtherLoad(server.pid)
        before = metric_totals(port)
        t0, own0 = other.ticks(), own_cpu_s()
        concurrent, concurrent_wall = run_concurrent(port, a.beam, jobs)
        t1, own1 = other.ticks(), own_cpu_s()
        after = metric_totals(port)
        sequential, sequential_wall = run_sequential(port, a.beam, jobs)
        t2, own2 = other.ticks(), own_cpu_s()
        after_sequential = metric_totals(port)
        other_cores = {"concurrent": other.cores(t0, t1), "sequential": other.cores(t1, t2)}
        # The clients share the 2 cores with the server: what they take, the server lacks.
        client_cores = {"concurrent": (own1 - own0) / concurrent_wall,
                        "sequential": (own2 - own1) / sequential_wall}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server_exit = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server_exit = "killed after 120 s"

    c = summary("concurrent", concurrent, concurrent_wall)
    s = summary("one at a time", sequential, sequential_wall)
    lost = total - len(concurrent) + total - len(sequential)
    ratio = c["requests_per_s"] / s["requests_per_s"]
    differ = [i for i in range(total) if concurrent.get(i, (0, None))[1] is not None and
              sequential.get(i, (0, None))[1] is not None and concurrent[i][1] != sequential[i][1]]
    batches = {
        "concurrent_mean_requests_per_batch": mean_batch(before, after, "qkv_batch_requests"),
        "concurrent_mean_sentences_per_batch": mean_batch(before, after, "qkv_batch_items"),
        "sequential_mean_requests_per_batch": mean_batch(after, after_sequential,
                                                         "qkv_batch_requests"),
    }
    print(f"ratio concurrent / one at a time: {ratio:.2f}x (goal >= 4x)")
    print("batches (from /metrics):", json.dumps(batches))
    print(f"answers that differ between the runs: {len(differ)}; lost requests: {lost}; "
          f"server exit on SIGTERM: {server_exit}")
    print("CPU used by other processes, in cores: "
          f"{other_cores['concurrent']:.2f} (concurrent), {other_cores['sequential']:.2f} "
          "(one at a time)")
    print("CPU used by this script's clients, in cores: "
          f"{client_cores['concurrent']:.2f} (concurrent), {client_cores['sequential']:.2f} "
          "(one at a time)")
    for i in differ[:3]:
        print(f"  request {i}: {concurrent[i][1]!r} against {sequential[i][1]!r}")
    errors = [(run, i, i % a.requests, r[2]) for run, results in
              (("concurrent", concurrent), ("sequential", sequential))
              for i, r in sorted(results.items()) if r[2]]
    for run, i, position, e in errors[:5]:
        print(f"  {run} request {i} (client's request {position}): {e}")

    if a.json:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), platform.processor())
        result = {
            "model_dir": a.model_dir, "clients": a.clients, "requests_per_client": a.requests,
            "beam": a.beam, "max_batch_tokens": a.max_batch_tokens,
            "max_wait_ms": a.max_wait_ms, "server_args": a.server_arg,
            "machine": {"cpu": cpu, "cores": os.cpu_count(),
                        "load_average_before": load_before,
                        "other_processes_cores": other_cores,
                        "client_cores": client_cores},
            "concurrent": c, "sequential": s, "ratio": ratio, "batches": batches,
            "lost": lost, "differing_answers": len(differ), "server_exit": server_exit,
            "errors": [{"run": run, "request": i, "clients_request": position, "error": e}
                       for run, i, position, e in errors],
        }
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
