"""Latency, concurrency and memory of the demo app, driven through gradio_client as an API user would.

    python benchmarks/bench_app.py [--weights weights] [--calls 50] [--concurrent 20] [--image examples/tennis.jpg]
                                   [--runtime auto]
    python benchmarks/bench_app.py --png16 8900 --calls 3 --concurrent 4   # memory: a 79 MP 16-bit PNG
    python benchmarks/bench_app.py --png palette --calls 3 --concurrent 4  # ... a palette (8bit, rgba) PNG

Starts ``python app.py`` on a free localhost port, then measures: the p50/p95 latency of one
caption (the weights' default decoding; each call uploads the image) over ``--calls`` sequential calls;
``--concurrent`` captions sent at once, counting errors; and the peak resident memory of the app
process (VmHWM), next to its resident memory once started (idle). Targets: p95 <= 250 ms and 0 errors; with
``--png16 8900`` (an 8900 x 8900 16-bit PNG of a few hundred kB, just under the 80-megapixel cap) or ``--png
KIND`` (the same as 8-bit gray, RGB, RGBA or palette), peak memory <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
P95_TARGET_MS = 250


@contextmanager
def app_process(
    weights: str | None, log: Path, timeout: float = 180.0, runtime: str = "auto"
) -> Iterator[tuple[str, int]]:
    """``python app.py`` on a free localhost port, until it answers: its URL and process id; stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "app.py"),
                "--port",
                str(port),
                "--runtime",
                runtime,
                *(["--weights", weights] if weights else []),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url, started = f"http://127.0.0.1:{port}/", time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - started < timeout:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"app.py did not start:\n{log.read_text()[-3000:]}")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait()


def memory_mib(pid: int) -> dict[str, float]:
    """The process's peak resident memory (VmHWM) and, now, its private (RssAnon) and file-backed
    (RssFile: mostly shared libraries) parts, from the kernel's accounting (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: its work, however busy the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_client(url: str) -> Client:
    """A client for the app on localhost. The URL is plain http, so no TLS is involved; by default
    gradio_client still builds a certificate-checking SSL context for every HTTP request it makes,
    which costs about 0.15 s of CPU per caption here: client overhead, not the app's latency."""
    return Client(url, verbose=False, analytics_enabled=False, ssl_verify=False)


PNG_KINDS = ("16bit", "gray", "rgb", "rgba", "palette")


def write_png(path: Path, size: int, kind: str = "16bit") -> None:
    """A ``size`` x ``size`` PNG of a smooth gradient, so the file is small and the image is not: 16-bit or 8-bit
    gray, RGB, RGBA (its transparency a gradient too) or palette (the app converts each differently)."""
    import numpy as np
    from PIL import Image

    if kind == "16bit":
        row = np.linspace(0, 65535, size).astype(np.uint16)
        Image.fromarray(np.broadcast_to(row, (size, size)).copy()).save(path)
        return
    gray = Image.fromarray(np.broadcast_to(np.linspace(0, 255, size).astype(np.uint8), (size, size)).copy())
    if kind == "gray":
        image = gray
    elif kind == "palette":
        image = gray.convert("P")
    else:
        image = Image.merge("RGB", (gray, gray.transpose(Image.Transpose.ROTATE_90), gray))
        if kind == "rgba":
            image.putalpha(gray.transpose(Image.Transpose.ROTATE_270))
    image.save(path)


def timed_caption(client: Client, image: str) -> float:
    start = time.perf_counter()
    client.predict(handle_file(image), api_name="/caption")
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="weights entry name or folder (default: the default entry)")
    parser.add_argument("--image", default=str(ROOT / "examples" / "tennis.jpg"))
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--png16", type=int, metavar="SIZE", help="caption a SIZE x SIZE 16-bit PNG instead")
    parser.add_argument("--runtime", default="auto", help="the app's encoder runtime (default: auto)")
    parser.add_argument("--png", choices=PNG_KINDS, help="caption a PNG of this kind instead (--png-size pixels)")
    parser.add_argument("--png-size", type=int, default=8900, metavar="SIZE", help="its sides (default 8900: 79 MP)")
    args = parser.parse_args()
    if args.png16:
        args.png, args.png_size = "16bit", args.png16

    load_before = os.getloadavg()[0]  # other work on the machine slows every figure below
    with (
        tempfile.TemporaryDirectory() as tmp,
        app_process(args.weights, Path(tmp) / "app.log", runtime=args.runtime) as (url, pid),
    ):
        idle = memory_mib(pid)["VmRSS"]
        if args.png:
            args.image = str(Path(tmp) / f"gradient-{args.png_size}-{args.png}.png")
            write_png(Path(args.image), args.png_size, args.png)
        client = local_client(url)
        for _ in range(3):  # warm-up: first calls pay for lazy initialisation in the app and the client
            timed_caption(client, args.image)
        app_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        latencies = [timed_caption(client, args.image) for _ in range(args.calls)]
        app_cpu, client_cpu = cpu_seconds(pid) - app_cpu, time.process_time() - client_cpu

        users = [local_client(url) for _ in range(args.concurrent)]
        start, errors, burst = time.perf_counter(), [], []
        with ThreadPoolExecutor(args.concurrent) as pool:
            futures = [pool.submit(timed_caption, user, args.image) for user in users]
            for future in futures:
                try:
                    burst.append(future.result())
                except Exception as e:  # any failure counts: the target is zero
                    errors.append(f"{type(e).__name__}: {e}")
        wall = time.perf_counter() - start
        memory = memory_mib(pid)

    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    verdict = "met" if p95 <= P95_TARGET_MS else "MISSED"
    print(
        f"weights: {args.weights or 'default entry'}   runtime: {args.runtime}   image: {args.image}   "
        f"load average before the run: {load_before:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"caption latency, default decoding, {len(latencies)} calls: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {max(latencies):.0f} ms (target p95 <= {P95_TARGET_MS} ms: {verdict})"
    )
    print(
        f"CPU time per caption: app {1000 * app_cpu / args.calls:.0f} ms, "
        f"client {1000 * client_cpu / args.calls:.0f} ms (what an idle machine's latency would be made of)"
    )
    print(
        f"{args.concurrent} concurrent captions: {len(errors)} errors, all answered in {wall:.1f} s"
        + (f", slowest {max(burst):.0f} ms" if burst else "")
    )
    for error in sorted(set(errors)):
        print(f"  error: {error}")
    print(
        f"app memory once started (VmRSS): {idle:.0f} MiB; its peak (VmHWM): {memory['VmHWM']:.0f} MiB; at the end "
        f"{memory['RssAnon']:.0f} MiB private "
        f"+ {memory['RssFile']:.0f} MiB file-backed (shared libraries)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
