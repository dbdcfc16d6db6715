"""`make bench`: where the time goes, against the floor (key generation and provider limits).

Measures, on this machine:
  keygen      RSA-2048/4096 and Ed25519 generation (the floor for new keys)
  render      building, chunking and rendering records for many domains
  bind-file   one zone-file rewrite holding many records (named-checkzone included)
  engine      `pulumi up` for N domains on bind-file + a local signer: first run,
              then a no-op run (which must touch no backend)
Results print as a table and go to bench-results/bench.json (git-ignored).
Pass --domains N (default 50) to scale the engine run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from keys import keygen, record, render
from providers.dns.base import TxtRecord
from providers.dns.bindfile import BindFileTarget

OUT = Path(__file__).resolve().parents[2] / "bench-results"


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `fn` in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_keygen() -> dict[str, float]:
    return {
        "rsa-2048 keygen (ms)": 1000 * timed(lambda: keygen.generate(keygen.parse_algorithm("rsa-2048")), 20),
        "rsa-4096 keygen (ms)": 1000 * timed(lambda: keygen.generate(keygen.parse_algorithm("rsa-4096")), 5),
        "ed25519 keygen (ms)": 1000 * timed(lambda: keygen.generate(keygen.parse_algorithm("ed25519")), 200),
    }


def sample_records(count: int) -> list[TxtRecord]:
    key = keygen.generate(keygen.parse_algorithm("rsa-2048"))
    value = record.build(record.DkimRecord(k="rsa", p=keygen.public_p_value(key)))
    return [TxtRecord(f"s{i}._domainkey.bench.test", value, 3600) for i in range(count)]


def bench_render(records: list[TxtRecord]) -> dict[str, float]:
    def run() -> None:
        for item in records:
            render.zone_file(item.name, item.ttl, item.value)
            render.presentation(item.value)

    return {f"render {len(records)} records (ms)": 1000 * timed(run, 5)}


def bench_bindfile(records: list[TxtRecord]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        target = BindFileTarget("bench", tmp, create=True)
        first = timed(lambda: target.apply("bench.test", records, []), 1)
        noop = timed(lambda: target.apply("bench.test", records, []), 5)
    return {f"bind-file write {len(records)} records (ms)": 1000 * first,
            f"bind-file no-op {len(records)} records (ms)": 1000 * noop}


def bench_engine(domains: int) -> dict[str, float]:
    from tests.infra.project import StackProject

    with tempfile.TemporaryDirectory(dir=Path.home() / ".cache") as tmp:
        project = StackProject(Path(tmp) / "bench")
        project.write_config({
            "dkimroll:dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "create": True}},
            "dkimroll:signers": {"mta": {"transport": "local", "root": "signer"}},
            "dkimroll:domains": {f"d{i}.bench.test": {"dns": "lab", "signers": ["mta"], "algorithm": "ed25519"}
                                 for i in range(domains)},
        })
        first = timed(lambda: project.run("up"), 1)
        noop = timed(lambda: project.run("up"), 3)
    return {f"engine up, {domains} domains (s)": first, f"engine no-op up, {domains} domains (s)": noop,
            "engine no-op per domain (ms)": 1000 * noop / domains}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, float] = {}
    results.update(bench_keygen())
    records = sample_records(1000)
    results.update(bench_render(records))
    results.update(bench_bindfile(records))
    results.update(bench_engine(args.domains))
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {value:10.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
