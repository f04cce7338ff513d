"""Benchmark: the trust store's CRL index (``pki.crl_index``) for CRLs of 10, 10,000
and 1,000,000 entries: build time, memory, and look-up cost per call.

    .venv/bin/python bench/pki_revocation.py            # 10, 10000, 1000000
    .venv/bin/python bench/pki_revocation.py --sizes 10,10000 --lookups 50000

For each size a CRL is written directly in DER (16-octet serials, a revocation time
and a reasonCode per entry, as a real CA writes them) and signed with an ECDSA P-256
key (the test factory of tests/pki). Measured, in this process:

* build: CPU seconds of ``CrlIndex.from_der`` (signature check, DER walk, hash
  table), best of ``--repeat``;
* memory: the bytes held by the index's buffers, and the growth of the process's
  resident set while building (the DER itself was allocated before);
* look-up: nanoseconds per ``lookup`` call, timed one by one, for serials that are
  listed (hits, drawn at random over the whole CRL, so a big CRL's memory is touched
  as in service) and serials that are not (misses), as percentiles;
* check: microseconds per warm ``RevocationChecker.check`` with the CRL cached (the
  per-certificate cost a sign-in pays: reading the certificate, the cache, the look-up).

Results: a table on stdout and JSON in bench/results/pki_revocation-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import psutil
from _harness import REPO, code_version, machine_info, percentile, write_results

sys.path.insert(0, str(REPO))

from pki.crl_index import CrlIndex
from pki.revocation import RevocationChecker
from tests.pki.certs import make_ca, make_leaf
from tests.pki.revocation_certs import many_entries, write_crl

START = 1 << 120  # the first serial; entries are START, START + 7, ...


def _lookups(index: CrlIndex, serials: list[int]) -> list[int]:
    timer = time.perf_counter_ns
    lookup = index.lookup
    costs = []
    for serial in serials:
        started = timer()
        lookup(serial)
        costs.append(timer() - started)
    return costs


def _timer_overhead(count: int = 20000) -> int:
    timer = time.perf_counter_ns
    costs = []
    for _ in range(count):
        started = timer()
        costs.append(timer() - started)
    return int(percentile(costs, 50))


def measure(size: int, *, lookups: int, repeat: int, checks: int) -> dict[str, Any]:
    ca = make_ca("Bench CA")
    der = write_crl(ca, many_entries(size, start=START))
    process = psutil.Process()
    builds = []
    index: CrlIndex | None = None
    grown = 0
    for _ in range(repeat):
        index = None
        before = process.memory_info().rss
        started = time.process_time()
        index = CrlIndex.from_der(der, ca.der)
        builds.append(time.process_time() - started)
        grown = max(grown, process.memory_info().rss - before)
    assert index is not None
    assert index.size == size
    rng = random.Random(size)
    hits = [START + 7 * rng.randrange(size) for _ in range(lookups)]
    misses = [START + 7 * rng.randrange(size) + 1 + rng.randrange(6) for _ in range(lookups)]
    _lookups(index, hits[:1000])  # warm-up
    hit_ns = _lookups(index, hits)
    miss_ns = _lookups(index, misses)
    assert all(index.lookup(s) is not None for s in hits[:100])
    assert all(index.lookup(s) is None for s in misses[:100])

    served = {"/bench.crl": der}

    def fetch(url: str, body: bytes | None, content_type: str | None) -> bytes:
        del body, content_type
        return served[url.removeprefix("http://bench")]

    checker = RevocationChecker(fetch=fetch)
    leaf = make_leaf(ca, "Bench Holder", serial=START + 1)
    url = "http://bench/bench.crl"
    leaf_der, ca_der = leaf.der, ca.der  # bytes as the trust store holds them
    assert checker.check(leaf_der, ca_der, crl_urls=[url]).state == "good"
    started = time.perf_counter()
    for _ in range(checks):
        checker.check(leaf_der, ca_der, crl_urls=[url])
    check_us = (time.perf_counter() - started) / checks * 1e6
    return {
        "entries": size,
        "crl_bytes": len(der),
        "build_cpu_s": round(min(builds), 4),
        "index_bytes": index.memory,
        "rss_growth_bytes": grown,
        "hit_ns": {p: int(percentile(hit_ns, p)) for p in (50, 95, 99)},
        "miss_ns": {p: int(percentile(miss_ns, p)) for p in (50, 95, 99)},
        "warm_check_us": round(check_us, 1),
    }


def _table(rows: list[dict[str, Any]], overhead: int) -> str:
    header = (
        f"{'entries':>9} {'CRL MB':>7} {'build CPU s':>11} {'index MB':>8} {'RSS +MB':>7} "
        f"{'hit p50/p95/p99 ns':>20} {'miss p50/p95/p99 ns':>20} {'check µs':>8}"
    )
    lines = [header]
    for row in rows:
        hit = "/".join(str(row["hit_ns"][p]) for p in (50, 95, 99))
        miss = "/".join(str(row["miss_ns"][p]) for p in (50, 95, 99))
        lines.append(
            f"{row['entries']:>9} {row['crl_bytes'] / 1e6:>7.2f} {row['build_cpu_s']:>11.3f} "
            f"{row['index_bytes'] / 1e6:>8.2f} {row['rss_growth_bytes'] / 1e6:>7.1f} "
            f"{hit:>20} {miss:>20} {row['warm_check_us']:>8.1f}"
        )
    lines.append(f"(look-up times include the timer's own cost, about {overhead} ns)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10,10000,1000000")
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part]
    rows = []
    for size in sizes:
        repeat = 1 if size >= 500_000 else args.repeat
        rows.append(measure(size, lookups=args.lookups, repeat=repeat, checks=args.checks))
        print(f"measured {size} entries", file=sys.stderr)
    overhead = _timer_overhead()
    print(_table(rows, overhead))
    if not args.no_save:
        report = {
            "machine": machine_info(),
            "code": code_version(),
            "timer_overhead_ns": overhead,
            "results": rows,
        }
        path = write_results("pki_revocation", report, None)
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
