#!/usr/bin/env python3
"""Hostile-input probe of the indexer and the worker: fails on any 5xx, hang, crash or
unbounded memory growth.

Usage:
  scripts/robustness.py --spawn-indexer target/debug/indexer --spawn-worker target/debug/worker
                        [--quick]
      starts an indexer of its own (empty fixture chain, scratch data directory, loopback
      port), checks that a second indexer on the same data directory is refused at once,
      and starts a worker of its own without a chain (`worker serve` with dev attestation
      and `worker run --metrics-listen --outputs-listen` whose JSON-RPC URL is a closed
      loopback port); probes all four HTTP servers and stops the processes. Either option
      may be given alone. test.sh runs this with --quick (about 45 s).
  scripts/robustness.py --indexer-url http://127.0.0.1:8090 [--indexer-pid PID]
                        [--worker-url URL [--worker-pid PID]]
                        [--worker-metrics-url URL] [--worker-outputs-url URL]
                        [--worker-run-pid PID] [--quick]
      probes a stack that is already running (e.g. `scripts/demo.sh --keep`: the worker's
      metrics and outputs URLs are in its summary). Without a pid the memory and
      file-descriptor checks are skipped.

What is sent: malformed, huge and odd query strings, unknown parameters on every route,
ids that are not canonical decimals, other methods, oversized headers, garbage request
lines, connections that send a partial request head and then nothing (they must be
closed after the server's header timeout), and many SSE connections at once. Every loop
is bounded and every socket has a deadline; only loopback addresses are accepted.

Exit status: 0 when every check passed, 1 when one failed (each failure is printed), 2 on
bad usage. Python 3 standard library only.

Adding checks: write `def check_x(target, budget)` that calls `target.fail(...)` on a
problem, and append it to INDEXER_CHECKS or one of the WORKER_*_CHECKS lists.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

# How long one request may take before it counts as a hang.
REQUEST_DEADLINE_S = 10.0
# The servers' header read timeout (http-serve's default) and the slack allowed over it.
HEADER_TIMEOUT_S = 10.0
HEADER_TIMEOUT_SLACK_S = 8.0


class Budget:
    """How hard to push: `--quick` for test.sh, the default for a real probe."""

    def __init__(self, quick):
        self.quick = quick
        self.rounds = 2 if quick else 10
        self.variants = 200 if quick else 2000
        self.partial_connections = 100 if quick else 1000
        self.sse_connections = 50 if quick else 500
        # RSS may grow this much over the probe (after a warm-up round), in KiB.
        self.rss_growth_kib = 48 * 1024
        # Open file descriptors may exceed the baseline by this many once connections close.
        self.fd_slack = 32


class Target:
    """One server under test: its base URL and (optionally) its process."""

    def __init__(self, name, url, pid, probe_path=None, healthy=200):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SystemExit(f"robustness: {name} URL must be http://HOST:PORT, got {url!r}")
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"robustness: {name} URL must be loopback, got {parsed.hostname}")
        self.name = name
        self.host = "127.0.0.1" if parsed.hostname == "localhost" else parsed.hostname
        self.port = parsed.port or 80
        self.pid = pid
        # A route that answers 200 when the server is well: asked while hostile connections
        # are held open and at the end.
        self.probe_path = probe_path or ("/v1/status" if name == "indexer" else "/v1/attestation")
        self.healthy = {healthy}  # its status
        self.failures = []
        self.requests = 0

    def fail(self, message):
        self.failures.append(message)
        print(f"  FAIL [{self.name}] {message}", flush=True)

    def alive(self):
        if self.pid is None:
            return True
        try:
            with open(f"/proc/{self.pid}/status") as f:
                return "State:\tZ" not in f.read()
        except FileNotFoundError:
            return False

    def rss_kib(self):
        return proc_status_field(self.pid, "VmRSS")

    def open_fds(self):
        if self.pid is None:
            return None
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def connect(self):
        return socket.create_connection((self.host, self.port), timeout=REQUEST_DEADLINE_S)

    def raw(self, data):
        """Sends raw bytes, reads until the server closes; returns (status, headers, body).
        status is None when the server closed without an HTTP answer; raises TimeoutError
        when it neither answers nor closes in time."""
        self.requests += 1
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        with self.connect() as s:
            s.sendall(data)
            chunks = []
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    raise TimeoutError(f"no answer within {REQUEST_DEADLINE_S} s") from None
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"answer not finished within {REQUEST_DEADLINE_S} s")
        return parse_response(b"".join(chunks))

    def request(self, method, target, headers=None, body=b""):
        lines = [f"{method} {target} HTTP/1.1", f"host: {self.host}:{self.port}", "connection: close"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body:
            lines.append(f"content-length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return self.raw(head + body)


def proc_status_field(pid, field):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parse_response(data):
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, {}, data
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return int(parts[1]), headers, body


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def expect(target, what, method, path, want=None, headers=None, body=b"", may_reset=False):
    """Sends one request; fails on 5xx, a hang, no answer, or a status outside `want`
    (a set of codes, or a predicate). With `may_reset`, a server that refuses an oversized
    request by closing the connection while it is still being sent passes too."""
    try:
        status, hdrs, data = target.request(method, path, headers, body)
    except TimeoutError as e:
        target.fail(f"{what}: {method} {path[:120]}: hang: {e}")
        return None
    except OSError as e:
        if not may_reset:
            target.fail(f"{what}: {method} {path[:120]}: connection failed: {e}")
        return None
    if status is None:
        target.fail(f"{what}: {method} {path[:120]}: closed without an HTTP answer")
        return None
    if status >= 500:
        target.fail(f"{what}: {method} {path[:120]}: {status} {data[:200]!r}")
    elif want is not None and not (want(status) if callable(want) else status in want):
        target.fail(f"{what}: {method} {path[:120]}: status {status}, expected {want}: {data[:200]!r}")
    return status, hdrs, data


def is_4xx(status):
    return 400 <= status < 500


# ---------------------------------------------------------------------------------------
# Indexer checks


def indexer_routes(target):
    """Routes with real ids where the index has some (a node, a job, a model)."""
    node, job, model = "1", "1", "minilm"
    try:
        _, _, body = target.request("GET", "/v1/nodes?limit=1")
        items = json.loads(body or b"{}").get("items") or []
        if items:
            node = items[0]["node_id"]
        _, _, body = target.request("GET", "/v1/jobs?limit=1")
        items = json.loads(body or b"{}").get("items") or []
        if items:
            job = items[0]["job_id"]
        _, _, body = target.request("GET", "/v1/models?limit=1")
        items = json.loads(body or b"{}").get("items") or []
        if items:
            model = items[0]["model_id"]
    except (OSError, TimeoutError, ValueError, KeyError):
        pass
    return {
        "list": ["/v1/nodes", "/v1/jobs", "/v1/models", "/v1/governance"],
        "single": [
            "/v1/stats",
            "/v1/status",
            f"/v1/nodes/{node}",
            f"/v1/nodes/{node}/offers",
            f"/v1/jobs/{job}",
            "/v1/requests/1",
            f"/v1/models/{model}",
            "/v1/accounts/alice.test.near",
            "/openapi.json",
            "/metrics",
        ],
        "node": node,
    }


def check_indexer_query_strings(target, budget):
    routes = indexer_routes(target)
    every = routes["list"] + routes["single"]
    # Unknown parameters: refused on every route, those without parameters included.
    for path in every:
        expect(target, "unknown parameter", "GET", path + "?colour=blue", {400})
        expect(target, "misplaced limit", "GET", path + "?limit=5&bogus", lambda s: s in (200, 400))
    for path in routes["list"]:
        for q in [
            "limit=0", "limit=-1", "limit=201", "limit=99999999999999999999999", "limit=1e3",
            "limit=%2B5x", "limit=1&limit=2", "status=%00", "model=%ff%fe", "model=" + "m" * 300,
            "user=NOT..AN..ACCOUNT", "node=%2B1", "sort=bogus", "max_price=-1",
            "max_price=340282366920938463463374607431768211456", "region=" + "r" * 10000,
        ]:
            expect(target, "bad value", "GET", f"{path}?{q}", is_4xx)
        # Numeric cursors (nodes, jobs) have one spelling; a model listing's cursor is a
        # model id, so any valid id is a position there.
        numeric = path != "/v1/models"
        for q in ["cursor=garbage", "cursor=-1", "cursor=%2B1", "cursor=01"]:
            expect(target, "bad cursor", "GET", f"{path}?{q}",
                   is_4xx if numeric else (lambda s: s in (200, 400)))
        for q in ["", "limit=000050", "limit=50", "%", "=&=&", "a[]=1&a[]=2", "&&&", "limit"]:
            expect(target, "odd query", "GET", f"{path}?{q}", lambda s: s in (200, 400))
    # Ids: strictly canonical decimals.
    for path in ["/v1/jobs/%2B1", "/v1/jobs/01", "/v1/jobs/-1", "/v1/jobs/1.0", "/v1/jobs/%201",
                 "/v1/jobs/99999999999999999999999", "/v1/nodes/%2B1", "/v1/nodes/0x1",
                 "/v1/requests/%2B1", "/v1/nodes/%2B1/feed", "/v1/nodes/01/offers"]:
        expect(target, "non-canonical id", "GET", path, {400})
    for path in ["/v1/accounts/UPPER.near", "/v1/accounts/" + "a" * 5000, "/v1/models/%ff",
                 "/v1/models/" + "x" * 1000, "/v1/accounts/%00"]:
        expect(target, "bad id", "GET", path, is_4xx)
    # A huge query string and huge headers: refused (414/431/400, or the connection closed
    # while they are still arriving), not a crash.
    expect(target, "long query", "GET", "/v1/nodes?model=" + "x" * 100_000, is_4xx)
    expect(target, "huge query", "GET", "/v1/nodes?model=" + "x" * 1_000_000, is_4xx, may_reset=True)
    expect(target, "huge header", "GET", "/v1/status", is_4xx, {"x-big": "y" * 1_000_000},
           may_reset=True)
    for method in ["POST", "PUT", "DELETE", "PATCH"]:
        expect(target, "read-only API", method, "/v1/nodes", {405}, body=b"{}")
    expect(target, "bad Last-Event-ID", "GET", f"/v1/nodes/{routes['node']}/feed",
           lambda s: s in (400, 404), {"last-event-id": "%2B1"})


def check_indexer_cache_keys(target, budget):
    """Spellings of one `/v1/nodes` query share one cache entry: memory must not grow with
    the number of spellings (the RSS check at the end measures it)."""
    for i in range(budget.variants):
        zeros = "0" * (i % 400)
        expect(target, "cache-key variant", "GET", f"/v1/nodes?limit={zeros}50", {200})


def check_raw_garbage(target, budget):
    """Request lines and heads that are not HTTP: a 4xx or a closed connection, never a
    hang or a crash."""
    samples = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v1/status HTTP/1.1\r\n" + b"x-h: v\r\n" * 500 + b"\r\n",
        b"GET /v1/status?" + b"a=1&" * 20000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
    ]
    for data in samples:
        target.requests += 1
        try:
            status, _, body = target.raw(data)
        except TimeoutError as e:
            target.fail(f"raw garbage {data[:40]!r}: hang: {e}")
            continue
        except OSError:
            continue  # the server closed the connection on us: fine
        if status is not None and status >= 500:
            target.fail(f"raw garbage {data[:40]!r}: {status} {body[:200]!r}")


def check_partial_heads(target, budget):
    """Connections that send part of a request head and then nothing must be closed after
    the header timeout; while they are open the server still answers others."""
    conns = []
    fds_before = target.open_fds()
    for _ in range(budget.partial_connections):
        try:
            s = target.connect()
            s.sendall(f"GET {target.probe_path} HTTP/1.1\r\nhost: x\r\nx-slow: ".encode())
            conns.append(s)
        except OSError as e:
            target.fail(f"partial head: could not open connection {len(conns) + 1}: {e}")
            break
    print(f"  [{target.name}] {len(conns)} connections hold a partial request head", flush=True)
    expect(target, "answer while partial heads are held", "GET", target.probe_path, target.healthy)
    deadline = time.monotonic() + HEADER_TIMEOUT_S + HEADER_TIMEOUT_SLACK_S
    still_open = list(conns)
    while still_open and time.monotonic() < deadline:
        remaining = []
        for s in still_open:
            s.settimeout(0.05)
            try:
                if s.recv(4096) == b"":
                    s.close()
                    continue
                # An answer (408/400) before closing is fine; wait for the close.
                remaining.append(s)
            except socket.timeout:
                remaining.append(s)
            except OSError:
                s.close()
        still_open = remaining
        if still_open:
            time.sleep(0.2)
    if still_open:
        target.fail(
            f"partial head: {len(still_open)} of {len(conns)} connections still open "
            f"{HEADER_TIMEOUT_S + HEADER_TIMEOUT_SLACK_S:.0f} s after sending half a head"
        )
    for s in still_open:
        s.close()
    settle_fds(target, fds_before, budget, "partial heads")


def check_many_sse(target, budget):
    """Many feed streams at once: all answered (200, or 404 without nodes), the server stays
    responsive, and their sockets are released when clients go."""
    node = indexer_routes(target)["node"]
    fds_before = target.open_fds()
    conns = []
    for _ in range(budget.sse_connections):
        try:
            s = target.connect()
            s.sendall(f"GET /v1/nodes/{node}/feed HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n".encode())
            conns.append(s)
        except OSError as e:
            target.fail(f"SSE: could not open stream {len(conns) + 1}: {e}")
            break
    answered = 0
    for s in conns:
        s.settimeout(REQUEST_DEADLINE_S)
        try:
            head = s.recv(4096)
        except OSError:
            head = b""
        status, _, _ = parse_response(head)
        if status is None:
            target.fail("SSE: a stream got no HTTP answer")
        elif status >= 500:
            target.fail(f"SSE: {status} {head[:200]!r}")
        else:
            answered += 1
    print(f"  [{target.name}] {answered} feed streams answered", flush=True)
    expect(target, "answer while feeds are open", "GET", "/v1/status", {200})
    for s in conns:
        s.close()
    settle_fds(target, fds_before, budget, "SSE streams")


def settle_fds(target, before, budget, what):
    """After clients closed their sockets the server's descriptors return near the baseline."""
    if before is None:
        return
    deadline = time.monotonic() + 10
    now = target.open_fds()
    while now is not None and now > before + budget.fd_slack and time.monotonic() < deadline:
        time.sleep(0.2)
        now = target.open_fds()
    if now is not None and now > before + budget.fd_slack:
        target.fail(f"{what}: {now} file descriptors open, {before} before (not released)")


def check_unknown_paths(target, budget):
    """Paths no server of ours has: a 404 (any body) or another 4xx with a JSON body."""
    for path in ["/nope", "/v1", "/v1/", "//v1//nodes", "/v1/nodes/1/2/3", "/../../etc/passwd",
                 "/v1/jobs/1/", "/%2e%2e/%2e%2e/", "/" + "a" * 10_000]:
        answer = expect(target, "no such route", "GET", path, is_4xx)
        if answer and answer[0] != 404 and not is_json(answer[2]):
            target.fail(f"no such route: GET {path[:120]}: {answer[0]} without a JSON body")


def is_json(body):
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


def check_worker_api(target, budget):
    """The worker's OpenAI-compatible endpoint refuses what is not its API without a 5xx."""
    expect(target, "attestation", "GET", "/v1/attestation", {200})
    for path in ["/v1/attestation?x=" + "y" * 100_000, "/v1/../etc/passwd"]:
        expect(target, "odd path", "GET", path, lambda s: s < 500)
    for body in [b"", b"{", b"[]", b'{"model": 1}', b"\x00" * 1000]:
        for path in ["/v1/embeddings", "/v1/chat/completions"]:
            expect(target, "bad JSON", "POST", path, is_4xx,
                   {"content-type": "application/json"}, body)
    expect(target, "huge body", "POST", "/v1/embeddings", is_4xx,
           {"content-type": "application/json"}, b"[" * 4_000_000, may_reset=True)
    for method in ["GET", "PUT", "DELETE"]:
        expect(target, "wrong method", method, "/v1/embeddings", {405})


def check_worker_metrics(target, budget):
    """The metrics endpoint serves Prometheus text and nothing else."""
    answer = expect(target, "metrics", "GET", "/metrics", {200})
    if answer and b"# TYPE" not in answer[2]:
        target.fail(f"metrics: no Prometheus text: {answer[2][:200]!r}")
    expect(target, "metrics with a query", "GET", "/metrics?x=" + "y" * 10_000, lambda s: s < 500)
    for method in ["POST", "PUT", "DELETE"]:
        expect(target, "read-only metrics", method, "/metrics", {405}, body=b"{}")


def check_worker_outputs(target, budget):
    """Stored outputs by job id: unknown ids are a JSON 404, ids that are not decimal digits a
    JSON 400, other methods 405."""
    for path, want in [("/v1/outputs/1", 404), ("/v1/outputs/99999999999999999999999", 400),
                       ("/v1/outputs/%2B1", 400), ("/v1/outputs/-1", 400),
                       ("/v1/outputs/1.0", 400), ("/v1/outputs/%00", 400),
                       ("/v1/outputs/" + "9" * 5000, 400)]:
        answer = expect(target, "output id", "GET", path, {want})
        if answer and not is_json(answer[2]):
            target.fail(f"output id: GET {path[:120]}: {answer[0]} without a JSON body")
    for method in ["POST", "PUT", "DELETE"]:
        expect(target, "read-only outputs", method, "/v1/outputs/1", {405}, body=b"{}")


INDEXER_CHECKS = [
    check_indexer_query_strings,
    check_unknown_paths,
    check_indexer_cache_keys,
    check_raw_garbage,
    check_many_sse,
    check_partial_heads,
]
# The worker's three HTTP servers: `worker serve` (the OpenAI-compatible endpoint) and, in
# `worker run`, --metrics-listen and --outputs-listen.
WORKER_API_CHECKS = [check_worker_api, check_unknown_paths, check_raw_garbage, check_partial_heads]
WORKER_METRICS_CHECKS = [check_worker_metrics, check_unknown_paths, check_raw_garbage,
                         check_partial_heads]
WORKER_OUTPUTS_CHECKS = [check_worker_outputs, check_unknown_paths, check_raw_garbage,
                         check_partial_heads]


def probe(target, checks, budget):
    print(f"probing the {target.name} at http://{target.host}:{target.port}", flush=True)
    if not target.alive():
        target.fail("not running before the probe")
        return
    # Warm-up: allocators, caches and connection pools reach their working size first, so
    # the growth measured is what the rounds add. (The slow partial-head check runs once,
    # in the first measured round.)
    for check in checks:
        if check is not check_partial_heads:
            check(target, budget)
    rss_before = target.rss_kib()
    started = time.monotonic()
    for round_no in range(budget.rounds):
        for check in checks:
            if check is check_partial_heads and round_no > 0:
                continue  # one slow check per probe is enough (it waits for the timeout)
            check(target, budget)
        if not target.alive():
            target.fail(f"crashed during round {round_no + 1}")
            return
    rss_after = target.rss_kib()
    elapsed = time.monotonic() - started
    print(f"  [{target.name}] {target.requests} requests, {budget.rounds} rounds in {elapsed:.1f} s", flush=True)
    if rss_before is not None and rss_after is not None:
        growth = rss_after - rss_before
        print(f"  [{target.name}] RSS {rss_before} KiB -> {rss_after} KiB ({growth:+d} KiB)", flush=True)
        if growth > budget.rss_growth_kib:
            target.fail(f"RSS grew by {growth} KiB over {budget.rounds} rounds (limit {budget.rss_growth_kib} KiB)")
    expect(target, "still answering at the end", "GET", target.probe_path, target.healthy)
    if not target.alive():
        target.fail("not running after the probe")


# ---------------------------------------------------------------------------------------
# Processes of its own (for test.sh)


def free_ports(count):
    """`count` distinct free loopback ports: all held open until each is chosen (separate
    single-port picks can be handed the same port)."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port():
    return free_ports(1)[0]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def child_env():
    """The environment without the project's ECLOUD_* settings, so a spawned process uses only
    the arguments given here (and never a chain or an indexer the caller configured)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ECLOUD_")}


class Spawned:
    """A process started by the probe, its output in a log file."""

    def __init__(self, name, argv, log):
        self.name = name
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            env=child_env())

    @property
    def pid(self):
        return self.process.pid

    def wait_until_up(self, target):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"robustness: {self.name} exited with {self.process.returncode}:\n{read(self.log)}")
            try:
                status, _, _ = target.request("GET", target.probe_path)
                if status in target.healthy:
                    return
            except (OSError, TimeoutError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"robustness: {self.name} did not answer within 60 s:\n{read(self.log)}")

    def stop(self):
        """SIGTERM; returns a failure message when it does not stop in time."""
        if self.process.poll() is not None:
            return f"{self.name} exited early with {self.process.returncode}"
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"{self.name} did not stop within 20 s of SIGTERM"
        return None


def indexer_args(binary, data_dir, fixtures, port):
    return [
        binary, "--source", "fixtures", "--source-url", fixtures, "--data-dir", data_dir,
        "--registry", "registry.test", "--marketplace", "market.test",
        "--factory", "factory.test", "--listen", f"127.0.0.1:{port}",
    ]


def spawn_indexer(binary, scratch):
    """An indexer on an empty fixture chain; a second one on its data directory must be refused
    at once, before indexing."""
    data_dir = os.path.join(scratch, "indexer-data")
    fixtures = os.path.join(scratch, "blocks")
    os.makedirs(fixtures)
    port = free_port()
    spawned = Spawned("the indexer", indexer_args(binary, data_dir, fixtures, port),
                      os.path.join(scratch, "indexer.log"))
    target = Target("indexer", f"http://127.0.0.1:{port}", spawned.pid)
    spawned.wait_until_up(target)
    second = Spawned("a second indexer", indexer_args(binary, data_dir, fixtures, free_port()),
                     os.path.join(scratch, "second-indexer.log"))
    try:
        code = second.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        second.stop()
        target.fail("a second indexer on the same data directory kept running")
    else:
        text = read(second.log)
        if code == 0 or "another indexer" not in text:
            target.fail(f"second indexer: exit {code} without the lock error:\n{text}")
        else:
            print("  [indexer] a second indexer on the same data directory is refused at once", flush=True)
    return [spawned], [(target, INDEXER_CHECKS)]


def spawn_worker(binary, scratch):
    """A worker without a chain: `worker serve` (dev attestation, an OpenAI backend at a closed
    loopback port) and `worker run` whose JSON-RPC URL is a closed loopback port too (it logs
    the failures and keeps trying), serving --metrics-listen and --outputs-listen."""
    data_dir = os.path.join(scratch, "worker-data")
    subprocess.run([binary, "--data-dir", data_dir, "init"], check=True, env=child_env(),
                   stdout=subprocess.DEVNULL)
    ca = os.path.join(scratch, "dev-ca.hex")
    with open(ca, "w") as f:
        f.write("05" * 32 + "\n")
    closed_port, api, metrics, outputs = free_ports(4)
    closed = f"http://127.0.0.1:{closed_port}"
    attest = ["--provider", "dev", "--dev-ca-key-file", ca]
    backend = ["--backend", "openai", "--upstream-url", closed + "/v1"]
    serve = Spawned("worker serve", [binary, "--data-dir", data_dir, "serve", "--unpaid-api", *attest,
                                     *backend, "--listen", f"127.0.0.1:{api}"],
                    os.path.join(scratch, "worker-serve.log"))
    run = Spawned("worker run", [
        binary, "--data-dir", data_dir, "run", "--rpc-url", closed, "--node-id", "1",
        "--heartbeat-secs", "3600", "--operator", "operator.test", "--registry", "registry.test",
        "--marketplace", "market.test", "--model", "minilm=none", *attest, *backend,
        "--metrics-listen", f"127.0.0.1:{metrics}", "--outputs-listen", f"127.0.0.1:{outputs}",
    ], os.path.join(scratch, "worker-run.log"))
    targets = worker_targets(f"http://127.0.0.1:{api}", serve.pid, f"http://127.0.0.1:{metrics}",
                             f"http://127.0.0.1:{outputs}", run.pid)
    serve.wait_until_up(targets[0][0])
    for target, _ in targets[1:]:
        run.wait_until_up(target)
    return [serve, run], targets


def worker_targets(api_url, api_pid, metrics_url, outputs_url, run_pid):
    targets = []
    if api_url:
        targets.append((Target("worker", api_url, api_pid, "/v1/attestation"), WORKER_API_CHECKS))
    if metrics_url:
        targets.append((Target("worker metrics", metrics_url, run_pid, "/metrics"),
                        WORKER_METRICS_CHECKS))
    if outputs_url:
        # No output is stored for job 0: its JSON 404 is the healthy answer.
        targets.append((Target("worker outputs", outputs_url, run_pid, "/v1/outputs/0", 404),
                        WORKER_OUTPUTS_CHECKS))
    return targets


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("--quick", action="store_true", help="short version (scripts/test.sh)")
    parser.add_argument("--spawn-indexer", metavar="BINARY", help="start and probe an indexer of its own")
    parser.add_argument("--indexer-url", help="probe a running indexer, e.g. http://127.0.0.1:8090")
    parser.add_argument("--indexer-pid", type=int, help="its process id (memory and descriptor checks)")
    parser.add_argument("--spawn-worker", metavar="BINARY",
                        help="start and probe a worker of its own (no chain needed)")
    parser.add_argument("--worker-url", help="probe a running `worker serve` endpoint")
    parser.add_argument("--worker-pid", type=int, help="its process id")
    parser.add_argument("--worker-metrics-url", help="probe a running `worker run --metrics-listen`")
    parser.add_argument("--worker-outputs-url", help="probe a running `worker run --outputs-listen`")
    parser.add_argument("--worker-run-pid", type=int, help="the `worker run` process id")
    args = parser.parse_args()
    running_worker = args.worker_url or args.worker_metrics_url or args.worker_outputs_url
    if args.spawn_indexer and args.indexer_url:
        parser.error("give at most one of --spawn-indexer and --indexer-url")
    if args.spawn_worker and running_worker:
        parser.error("give either --spawn-worker or the --worker-*-url options")
    if not (args.spawn_indexer or args.indexer_url or args.spawn_worker or running_worker):
        parser.error("nothing to probe: give --spawn-indexer, --indexer-url, --spawn-worker or --worker-url")
    budget = Budget(args.quick)
    scratch = tempfile.mkdtemp(prefix="ecloud-robustness-")
    spawned, targets = [], []
    try:
        if args.spawn_indexer:
            processes, found = spawn_indexer(args.spawn_indexer, scratch)
            spawned += processes
            targets += found
        elif args.indexer_url:
            targets.append((Target("indexer", args.indexer_url, args.indexer_pid), INDEXER_CHECKS))
        if args.spawn_worker:
            processes, found = spawn_worker(args.spawn_worker, scratch)
            spawned += processes
            targets += found
        elif running_worker:
            targets += worker_targets(args.worker_url, args.worker_pid, args.worker_metrics_url,
                                      args.worker_outputs_url, args.worker_run_pid)
        for target, checks in targets:
            probe(target, checks, budget)
    finally:
        stopped = [(p, p.stop()) for p in spawned]
    failures = sum(len(t.failures) for t, _ in targets)
    for process, problem in stopped:
        if problem:
            print(f"  FAIL {problem}")
            failures += 1
    if failures:
        for process, _ in stopped:
            print(f"{process.name} log (tail, {process.log}):\n{read(process.log)}")
        if not spawned:
            shutil.rmtree(scratch, ignore_errors=True)  # no logs worth keeping
        print(f"robustness: {failures} failure(s)")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    print("robustness: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
