#!/usr/bin/env python3
"""bench/media.py — the media benchmark driver: uploads and downloads by many
concurrent clients, and one large file, against one homeserver.

`run` measures one server (bench/media.sh starts Tessera and Synapse one
after the other and runs it against each, twice: --phases concurrent,
then --phases big on a freshly started server):

  1. registers --clients users (one for big alone) through shared-secret
     registration (/_synapse/admin/v1/register), each with its own
     keep-alive connection;
  2. upload phase (concurrent): all clients start together and each uploads --files files
     of --size random bytes, one after the other
     (POST /_matrix/media/v3/upload, application/octet-stream); every file's
     bytes differ (a content-addressed store cannot fold them together);
  3. download phase (concurrent): all clients start together and each downloads the
     files it uploaded (GET /_matrix/client/v1/media/download/{server}/{id}),
     checking every byte;
  4. big: one client uploads one file of --big-mb MiB, then downloads it (read in
     1 MiB pieces and hashed, never held whole by the client).

For each phase: requests/s and MiB/s over the phase's wall time (first
request sent to last response read), per-request latency (p50, p99, max),
failures, the server's CPU seconds, the CPU seconds of every other
process on the machine meanwhile (the client excluded: near 0 unless
something else, a build say, competes for the cores) and the server's RSS.
For the concurrent phases the server's peak RSS is its VmHWM, reset at the
phase's start (writing 5 to /proc/PID/clear_refs); for the large file,
VmRSS is sampled every 50 ms during each transfer and the growth is the
peak minus the value just before (and VmHWM, reset just before each
transfer, gives the exact peak that 50 ms samples of a short transfer can
miss). The result is printed and written as JSON (--json).

`report` renders such JSON files as Markdown tables (the files of one
target, e.g. its concurrent and big runs, are merged).

Usage:
  bench/media.py run --url URL --target NAME --pid PID [--clients 50]
                     [--files 20] [--size 1048576] [--big-mb 100]
                     [--phases concurrent,big] [--secret S] [--json FILE]
  bench/media.py report FILE.json...

Python 3 standard library only.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import secrets
import statistics
import sys
import threading
import time
import urllib.parse

MIB = 1 << 20
SAMPLE_SECONDS = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# The server process.

class Proc:
    """Reads a server process's memory and CPU from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def status_kib(self, field):
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/{self.pid}/status")

    def rss(self):
        return self.status_kib("VmRSS") * 1024

    def hwm(self):
        return self.status_kib("VmHWM") * 1024

    def reset_hwm(self):
        """Reset VmHWM to the current RSS; False if the kernel refused."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat; fields[0] is field 3.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds():
    """CPU seconds spent by every process on the machine so far (all
    cores: the non-idle, non-iowait jiffies of /proc/stat's cpu line)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def client_cpu_seconds():
    t = os.times()
    return t.user + t.system


class Sampler:
    """Samples the server's VmRSS every SAMPLE_SECONDS in a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.before = proc.rss()
        self.peak = self.before
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.rss())
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.rss())
        return self


# ---------------------------------------------------------------------------
# HTTP.

class HttpError(Exception):
    pass


class Conn:
    """One client's keep-alive connection to the server."""

    def __init__(self, url, token=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise SystemExit(f"only http:// URLs: {url}")
        self.host, self.port = u.hostname, u.port or 80
        self.token = token
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600, blocksize=MIB)

    def request(self, method, path, body=None, headers=None, sink=None):
        """Send one request; return (status, body bytes). With SINK, the body
        is passed to SINK(piece) in pieces of at most 1 MiB and b"" is
        returned. A broken keep-alive connection is reopened once, before
        anything was sent."""
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                if sink is None or resp.status != 200:
                    data = resp.read()
                else:
                    data = b""
                    while True:
                        piece = resp.read(MIB)
                        if not piece:
                            break
                        sink(piece)
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if attempt:
                    raise HttpError(f"{method} {path}: {e!r}") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise HttpError(f"{method} {path}: {e!r}") from None
        raise AssertionError("unreachable")

    def json(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, raw = self.request(method, path, data, headers)
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = raw[:200].decode(errors="replace")
        if status != 200:
            raise HttpError(f"{method} {path} -> {status} {str(parsed)[:200]}")
        return parsed

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def register(url, secret, localpart):
    """Shared-secret registration; returns the access token."""
    c = Conn(url)
    try:
        nonce = c.json("GET", "/_synapse/admin/v1/register")["nonce"]
        password = "password-" + localpart
        msg = b"\0".join(s.encode() for s in (nonce, localpart, password, "notadmin"))
        mac = hmac.new(secret.encode(), msg, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": False, "mac": mac}
        return c.json("POST", "/_synapse/admin/v1/register", body)["access_token"]
    finally:
        c.close()


def upload(conn, data):
    """Upload DATA; return (mxc server name, media ID)."""
    status, raw = conn.request("POST", "/_matrix/media/v3/upload?filename=bench.bin", body=data,
                               headers={"Content-Type": "application/octet-stream"})
    if status != 200:
        raise HttpError(f"upload -> {status} {raw[:200].decode(errors='replace')}")
    uri = json.loads(raw)["content_uri"]
    if not uri.startswith("mxc://"):
        raise HttpError(f"upload answered content_uri {uri!r}")
    server, media_id = uri[len("mxc://"):].split("/", 1)
    return server, media_id


def download_path(server, media_id):
    return (f"/_matrix/client/v1/media/download/{urllib.parse.quote(server, safe='')}"
            f"/{urllib.parse.quote(media_id, safe='')}")


# ---------------------------------------------------------------------------
# Phases.

def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class Phase:
    """Runs FN(client index, record) in one thread per client, all released
    at once, and measures the server meanwhile. FN calls record(seconds,
    bytes) per successful request and raises (or returns) on failure."""

    def __init__(self, name, proc):
        self.name = name
        self.proc = proc

    def run(self, n_clients, fn):
        latencies, nbytes, errors = [], [0], []
        lock = threading.Lock()

        def record(seconds, size):
            with lock:
                latencies.append(seconds)
                nbytes[0] += size

        barrier = threading.Barrier(n_clients + 1)

        def worker(i):
            barrier.wait()
            try:
                fn(i, record)
            except Exception as e:  # reported, never fatal
                with lock:
                    errors.append(f"client {i}: {e}")

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_clients)]
        for t in threads:
            t.start()
        hwm_reset = self.proc.reset_hwm()
        sampler = Sampler(self.proc)
        cpu0, client0, busy0 = self.proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu1, client1, busy1 = self.proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
        sampler.stop()
        peak = max(sampler.peak, self.proc.hwm()) if hwm_reset else sampler.peak
        ms = [x * 1000 for x in latencies]
        result = {
            "phase": self.name,
            "clients": n_clients,
            "requests": len(latencies),
            "errors": len(errors),
            "first_errors": errors[:5],
            "wall_s": wall,
            "requests_per_s": len(latencies) / wall if wall else None,
            "mib": nbytes[0] / MIB,
            "mib_per_s": nbytes[0] / MIB / wall if wall else None,
            "p50_ms": pct(ms, 50),
            "p99_ms": pct(ms, 99),
            "max_ms": max(ms) if ms else None,
            "mean_ms": statistics.fmean(ms) if ms else None,
            "rss_before": sampler.before,
            "rss_peak": peak,
            "rss_peak_source": "VmHWM (reset at phase start) and 50 ms VmRSS samples" if hwm_reset
                               else "50 ms VmRSS samples (clear_refs refused)",
            "rss_after": self.proc.rss(),
            "server_cpu_s": cpu1 - cpu0,
            "client_cpu_s": client1 - client0,
            # Everything else on the machine meanwhile (another build, say):
            # near 0 on a quiet machine, else the numbers are contended.
            "other_cpu_s": (busy1 - busy0) - (cpu1 - cpu0) - (client1 - client0),
        }
        say(f"  {self.name}: {result['requests']} requests, {result['errors']} failed, "
            f"{wall:.2f} s, {fmt(result['requests_per_s'], 1)}/s, {fmt(result['mib_per_s'], 1)} MiB/s, "
            f"p50 {fmt(result['p50_ms'], 1)} ms, p99 {fmt(result['p99_ms'], 1)} ms; "
            f"server RSS {mib(sampler.before)} -> peak {mib(peak)} MiB, CPU {result['server_cpu_s']:.1f} s; "
            f"other processes' CPU {result['other_cpu_s']:.1f} s")
        for e in errors[:5]:
            say(f"    error: {e}")
        return result


def unique_file(base, client, n):
    """BASE with its first 16 bytes replaced by (client, n): a distinct file
    per upload without generating fresh random bytes each time."""
    return client.to_bytes(8, "big") + n.to_bytes(8, "big") + base[16:]


def big_transfer(url, token, proc, size):
    """One upload of SIZE random bytes and its download, each with VmRSS
    sampled every 50 ms."""
    conn = Conn(url, token)
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    out = {"bytes": size}

    time.sleep(1.0)  # let the server settle (after registration, or the concurrent phases)
    hwm_reset = proc.reset_hwm()
    sampler = Sampler(proc)
    cpu0, client0, busy0 = proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
    t0 = time.perf_counter()
    try:
        server, media_id = upload(conn, data)
        error = None
    except HttpError as e:
        error = str(e)
    took = time.perf_counter() - t0
    cpu1, client1, busy1 = proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
    other = (busy1 - busy0) - (cpu1 - cpu0) - (client1 - client0)
    sampler.stop()
    del data
    out["upload"] = transfer_result(sampler, took, size, cpu1 - cpu0, error, proc.hwm() if hwm_reset else None, other)
    say(f"  {size // MIB} MiB upload: {'FAILED ' + error if error else 'ok'}, {took:.2f} s, "
        f"RSS {mib(sampler.before)} -> peak {mib(sampler.peak)} MiB (+{mib(sampler.peak - sampler.before)}), "
        f"{sampler.samples} samples, VmHWM +{fmt(None if not hwm_reset else (proc.hwm() - sampler.before) / MIB, 1)}")
    if error:
        out["download"] = None
        conn.close()
        return out

    time.sleep(1.0)
    hwm_reset = proc.reset_hwm()
    h = hashlib.sha256()
    got = [0]

    def sink(piece):
        h.update(piece)
        got[0] += len(piece)

    sampler = Sampler(proc)
    cpu0, client0, busy0 = proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
    t0 = time.perf_counter()
    error = None
    try:
        status, raw = conn.request("GET", download_path(server, media_id), sink=sink)
        if status != 200:
            error = f"download -> {status} {raw[:200].decode(errors='replace')}"
        elif got[0] != size or h.hexdigest() != digest:
            error = f"download: {got[0]} bytes, sha256 {'matches' if h.hexdigest() == digest else 'differs'}"
    except HttpError as e:
        error = str(e)
    took = time.perf_counter() - t0
    cpu1, client1, busy1 = proc.cpu_seconds(), client_cpu_seconds(), machine_busy_seconds()
    other = (busy1 - busy0) - (cpu1 - cpu0) - (client1 - client0)
    sampler.stop()
    conn.close()
    out["download"] = transfer_result(sampler, took, size, cpu1 - cpu0, error, proc.hwm() if hwm_reset else None, other)
    say(f"  {size // MIB} MiB download: {'FAILED ' + error if error else 'ok'}, {took:.2f} s, "
        f"RSS {mib(sampler.before)} -> peak {mib(sampler.peak)} MiB (+{mib(sampler.peak - sampler.before)}), "
        f"{sampler.samples} samples, VmHWM +{fmt(None if not hwm_reset else (proc.hwm() - sampler.before) / MIB, 1)}")
    return out


def transfer_result(sampler, took, size, cpu, error, hwm, other):
    """HWM: the server's VmHWM after the transfer, reset just before it (the
    exact peak, which 50 ms samples of a short transfer can miss), or None."""
    return {
        "hwm_peak": hwm,
        "hwm_growth": None if hwm is None else hwm - sampler.before,
        "ok": error is None,
        "error": error,
        "seconds": took,
        "mib_per_s": size / MIB / took if took else None,
        "rss_before": sampler.before,
        "rss_peak": sampler.peak,
        "rss_growth": sampler.peak - sampler.before,
        "samples": sampler.samples,
        "server_cpu_s": cpu,
        "other_cpu_s": other,
    }


def cmd_run(args):
    proc = Proc(args.pid)
    run_id = secrets.token_hex(3)
    phases = set(args.phases.split(","))
    if not phases or phases - {"concurrent", "big"}:
        raise SystemExit(f"--phases takes concurrent and/or big, got {args.phases!r}")
    say(f"{args.target}: {args.url}, server pid {args.pid}, run {run_id}: "
        + ("; ".join(
            ([f"{args.clients} clients x {args.files} files of {args.size} bytes"] if "concurrent" in phases else [])
            + ([f"one file of {args.big_mb} MiB"] if "big" in phases else []))))
    result = {
        "target": args.target,
        "url": args.url,
        "run": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    n_users = args.clients if "concurrent" in phases else 1
    part = {"rss_start": proc.rss()}

    t0 = time.perf_counter()
    tokens = [None] * n_users
    reg_errors = []

    def reg(i):
        try:
            tokens[i] = register(args.url, args.secret, f"media_{run_id}_{i}")
        except Exception as e:
            reg_errors.append(f"user {i}: {e}")

    threads = [threading.Thread(target=reg, args=(i,)) for i in range(n_users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if reg_errors:
        say(f"registration failed: {reg_errors[:3]}")
        return 1
    say(f"  registered {n_users} users in {time.perf_counter() - t0:.1f} s")
    part["rss_idle"] = proc.rss()
    failed = 0

    if "concurrent" in phases:
        result.update(clients=args.clients, files_per_client=args.files, file_bytes=args.size)
        conns = [Conn(args.url, tok) for tok in tokens]
        uploaded = [[] for _ in range(args.clients)]
        bases = [os.urandom(args.size) for _ in range(args.clients)]

        def do_upload(i, record):
            for n in range(args.files):
                data = unique_file(bases[i], i, n)
                t = time.perf_counter()
                server, media_id = upload(conns[i], data)
                record(time.perf_counter() - t, len(data))
                uploaded[i].append((n, server, media_id))

        def do_download(i, record):
            for n, server, media_id in uploaded[i]:
                t = time.perf_counter()
                status, raw = conns[i].request("GET", download_path(server, media_id))
                took = time.perf_counter() - t
                if status != 200:
                    raise HttpError(f"download {media_id} -> {status} {raw[:200].decode(errors='replace')}")
                if raw != unique_file(bases[i], i, n):
                    raise HttpError(f"download {media_id}: {len(raw)} bytes, not the uploaded file")
                record(took, len(raw))

        result["upload"] = Phase("upload", proc).run(args.clients, do_upload)
        time.sleep(1.0)
        result["download"] = Phase("download", proc).run(args.clients, do_download)
        for c in conns:
            c.close()
        del bases
        part["rss_end"] = proc.rss()
        part["hwm_end"] = proc.hwm()
        result["concurrent_rss"] = part
        failed += result["upload"]["errors"] + result["download"]["errors"]
        part = {"rss_start": proc.rss(), "rss_idle": proc.rss()}

    if "big" in phases:
        result["big"] = big_transfer(args.url, tokens[0], proc, args.big_mb * MIB)
        part["rss_end"] = proc.rss()
        part["hwm_end"] = proc.hwm()
        result["big_rss"] = part
        big = result["big"]
        failed += (not big["upload"]["ok"]) + (big["download"] is None or not big["download"]["ok"])

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# Report.

def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def mib(n):
    return "-" if n is None else f"{n / MIB:,.0f}"


def cmd_report(args):
    merged = {}  # target -> its runs' results, merged (later files win)
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        merged.setdefault(r["target"], {}).update(r)
    results = list(merged.values())
    conc = [r for r in results if "upload" in r]
    bigs = [r for r in results if "big" in r]
    if conc:
        r0 = conc[0]
        print(f"{r0['clients']} concurrent clients, each with its own keep-alive connection, "
              f"{r0['files_per_client']} files of {r0['file_bytes'] / MIB:g} MiB each "
              f"({r0['clients'] * r0['files_per_client']} uploads, then as many downloads):\n")
        print("| target | phase | requests/s | MiB/s | p50 ms | p99 ms | max ms | failed "
              "| server RSS before (MiB) | server peak RSS (MiB) | server CPU s | client CPU s | other CPU s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in conc:
            for ph in ("upload", "download"):
                p = r[ph]
                print(f"| {r['target']} | {ph} | {fmt(p['requests_per_s'], 1)} | {fmt(p['mib_per_s'], 1)} "
                      f"| {fmt(p['p50_ms'], 1)} | {fmt(p['p99_ms'], 1)} | {fmt(p['max_ms'], 1)} | {p['errors']} "
                      f"| {mib(p['rss_before'])} | {mib(p['rss_peak'])} | {fmt(p['server_cpu_s'], 1)} "
                      f"| {fmt(p['client_cpu_s'], 1)} | {fmt(p.get('other_cpu_s'), 1)} |")
    if bigs:
        size = bigs[0]["big"]["bytes"] / MIB
        print(f"\nOne file of {size:g} MiB, uploaded then downloaded by one client; server VmRSS "
              f"sampled every {SAMPLE_SECONDS * 1000:g} ms during each transfer; RSS growth is the "
              f"sampled peak minus the sample just before the transfer, VmHWM growth the kernel's exact "
              f"peak (VmHWM reset just before the transfer) minus that same sample:\n")
        print("| target | transfer | ok | seconds | MiB/s | RSS before (MiB) | RSS peak (MiB) "
              "| RSS growth (MiB) | VmHWM growth (MiB) | server CPU s | other CPU s |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in bigs:
            for ph in ("upload", "download"):
                t = r["big"].get(ph)
                if t is None:
                    print(f"| {r['target']} | {ph} | not run | | | | | | | | |")
                    continue
                ok = "yes" if t["ok"] else f"no: {t['error']}"
                print(f"| {r['target']} | {ph} | {ok} | {fmt(t['seconds'], 2)} | {fmt(t['mib_per_s'], 1)} "
                      f"| {mib(t['rss_before'])} | {mib(t['rss_peak'])} | {fmt(t['rss_growth'] / MIB, 1)} "
                      f"| {fmt(None if t.get('hwm_growth') is None else t['hwm_growth'] / MIB, 1)} "
                      f"| {fmt(t['server_cpu_s'], 1)} | {fmt(t.get('other_cpu_s'), 1)} |")
    print("\nServer RSS (MiB) at start, after registering the users and at the end of each part, and "
          "VmHWM at the end (since its last reset: the start of the download phase, or of the "
          "large file's download):\n")
    print("| target | part | start | after registration | end | VmHWM at end |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        for key, label in (("concurrent_rss", "concurrent"), ("big_rss", "large file")):
            p = r.get(key)
            if p:
                print(f"| {r['target']} | {label} | {mib(p['rss_start'])} | {mib(p['rss_idle'])} "
                      f"| {mib(p['rss_end'])} | {mib(p['hwm_end'])} |")
    return 0


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="measure one server")
    run.add_argument("--url", required=True, help="client API URL, http://127.0.0.1:PORT")
    run.add_argument("--target", required=True, help="name in the results, e.g. tessera-sqlite")
    run.add_argument("--pid", type=int, required=True, help="the server's (main) process ID")
    run.add_argument("--clients", type=int, default=50)
    run.add_argument("--files", type=int, default=20, help="files each client uploads, then downloads")
    run.add_argument("--size", type=int, default=MIB, help="bytes per file (default 1 MiB)")
    run.add_argument("--big-mb", type=int, default=100, help="MiB of the single large file")
    run.add_argument("--phases", default="concurrent,big",
                     help="concurrent (the clients' uploads, then downloads) and/or big (the large file)")
    run.add_argument("--secret", default=os.environ.get("BENCH_SHARED_SECRET", "tessera-bench-secret"))
    run.add_argument("--json", help="write the result here")
    rep = sub.add_parser("report", help="Markdown tables of run results")
    rep.add_argument("files", nargs="+")
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
