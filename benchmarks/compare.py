"""Fail when a benchmark got slower than its saved baseline on the same machine.

    python benchmarks/compare.py CURRENT.json --storage .benchmarks/<host> [--tolerance 20]
    python benchmarks/compare.py CURRENT.json --baseline BASELINE.json

Both files are pytest-benchmark JSON (--benchmark-json / --benchmark-autosave). The baseline is
the newest saved run under --storage unless --baseline names one. A benchmark regresses when its
statistic (median by default; mean, or both) grew by more than --tolerance percent. Timings from
another machine are no baseline: a different host name is an error unless --allow-other-machine.

Exit status: 0 no regression, 1 at least one regression, 2 no usable baseline or bad input.
Standard library only, so it runs anywhere the JSON files are.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

STATS = ("median", "mean")


class CompareError(Exception):
    """No usable baseline or a malformed results file; the message says which file and why."""


@dataclass(frozen=True)
class Row:
    name: str
    stat: str
    baseline_s: float | None
    current_s: float | None

    @property
    def change_pct(self) -> float | None:
        if self.baseline_s is None or self.current_s is None:
            return None
        return 100.0 * (self.current_s / self.baseline_s - 1.0)

    def status(self, tolerance_pct: float) -> str:
        if self.baseline_s is None:
            return "new"
        if self.current_s is None:
            return "missing"
        return "REGRESSED" if self.change_pct > tolerance_pct else "ok"


def load_run(path: Path) -> tuple[str, dict[str, dict[str, float]]]:
    """(host name, {benchmark fullname: stats}) from a pytest-benchmark JSON file."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise CompareError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise CompareError(f"{path}: not a pytest-benchmark result (no 'benchmarks' list)")
    host = str(data.get("machine_info", {}).get("node", ""))
    runs = {}
    for i, bench in enumerate(data["benchmarks"]):
        try:
            name = bench.get("fullname") or bench["name"]
            runs[name] = {stat: float(bench["stats"][stat]) for stat in STATS}
        except (KeyError, TypeError, ValueError) as err:
            raise CompareError(f"{path}: benchmark #{i} lacks name or stats ({err!r})") from None
    return host, runs


def newest_saved_run(storage: Path, exclude: Path | None = None) -> Path:
    """The newest autosaved JSON under `storage` (pytest-benchmark adds a machine-id subfolder)."""
    if not storage.is_dir():
        raise CompareError(f"no baseline: {storage} does not exist; run `make bench` on this machine first")
    found = [p for p in storage.rglob("*.json") if exclude is None or p.resolve() != exclude.resolve()]
    if not found:
        raise CompareError(f"no baseline: no saved benchmark JSON under {storage}; run `make bench` on this machine first")
    # Autosave names start with a zero-padded counter (0001_...), so the name orders runs.
    return max(found, key=lambda p: (p.name, p.stat().st_mtime))


def compare(baseline: dict, current: dict, stats: tuple[str, ...]) -> list[Row]:
    rows = []
    for name in sorted(set(baseline) | set(current)):
        for stat in stats:
            rows.append(Row(
                name, stat,
                baseline[name][stat] if name in baseline else None,
                current[name][stat] if name in current else None,
            ))
    return rows


def format_table(rows: list[Row], tolerance_pct: float) -> str:
    def fmt(seconds):
        return "-" if seconds is None else f"{seconds * 1e3:.3f}"

    header = f"{'benchmark':<60} {'stat':<6} {'baseline ms':>12} {'current ms':>12} {'change':>8}  status"
    lines = [header, "-" * len(header)]
    for row in rows:
        change = "-" if row.change_pct is None else f"{row.change_pct:+.1f}%"
        lines.append(f"{row.name[-60:]:<60} {row.stat:<6} {fmt(row.baseline_s):>12} "
                     f"{fmt(row.current_s):>12} {change:>8}  {row.status(tolerance_pct)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("current", type=Path, help="pytest-benchmark JSON of the run to check")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--baseline", type=Path, help="baseline JSON file")
    source.add_argument("--storage", type=Path, help="folder of saved runs; the newest is the baseline")
    parser.add_argument("--tolerance", type=float, default=20.0,
                        help="allowed slow-down in percent before failing (default 20)")
    parser.add_argument("--stat", choices=[*STATS, "both"], default="median",
                        help="statistic compared (default median: robust to a few slow rounds)")
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="compare even if the baseline was recorded on another host")
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error(f"--tolerance must be >= 0 percent, got {args.tolerance}")
    stats = STATS if args.stat == "both" else (args.stat,)
    try:
        baseline_path = args.baseline or newest_saved_run(args.storage, exclude=args.current)
        base_host, baseline = load_run(baseline_path)
        host, current = load_run(args.current)
        if base_host != host and not args.allow_other_machine:
            raise CompareError(f"baseline {baseline_path} is from host {base_host!r}, this run from {host!r}: "
                               "timings are only comparable on one machine (--allow-other-machine to override)")
        if not set(baseline) & set(current):
            raise CompareError(f"no benchmark in {args.current} appears in the baseline {baseline_path}")
    except CompareError as err:
        print(f"bench-compare: {err}", file=sys.stderr)
        return 2
    rows = compare(baseline, current, stats)
    print(f"baseline: {baseline_path}\ncurrent:  {args.current}\ntolerance: +{args.tolerance:g}% on {'/'.join(stats)}\n")
    print(format_table(rows, args.tolerance))
    regressed = [row for row in rows if row.status(args.tolerance) == "REGRESSED"]
    if regressed:
        print(f"\nbench-compare: {len(regressed)} regression(s) beyond +{args.tolerance:g}%: "
              + ", ".join(sorted({row.name for row in regressed})), file=sys.stderr)
        return 1
    print(f"\nbench-compare: no regression beyond +{args.tolerance:g}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
