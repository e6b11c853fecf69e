"""Ingest of a one-tag-per-line file: the bulk reader (Arrow lines, tags cleaned as a column)
vs the per-line reference reader (tagfold.pipeline.tags.ingest._read_lines), same job, same run.

Job: the 58,702 real Last.fm tags plus 20,000 tags of each synthetic generator (seeded; the
phrase model brings long phrases, accented, Cyrillic and CJK text), written as a lines file.

Every benchmark asserts the bulk result equals the reference (tags, aliases, report) before
timing it. `test_ingest_speed_table` times both and records the ratio; it never asserts on speed.
Run: .venv/bin/python -m pytest benchmarks/bench_ingest.py --benchmark-only -s
"""

import pytest

from tagfold.pipeline.tags import ingest as ing

N_SYNTH = 20_000   # tags of each generator added to the real ones


@pytest.fixture(scope="module")
def lines_job(real_tags, tmp_path_factory):
    from tagfold.pipeline.tags import synth, synth_phrases

    n = len(real_tags) + N_SYNTH
    tags = (list(real_tags) + synth.grow_tags(real_tags, n, seed=11, progress=False)[len(real_tags):]
            + synth_phrases.grow_phrase_tags(real_tags, n, seed=11, progress=False)[len(real_tags):])
    path = tmp_path_factory.mktemp("ingest") / "tags.txt"
    path.write_text("\n".join(tags) + "\n", encoding="utf-8")
    return path


def per_line(path):
    """read_tags through the reference reader, a line at a time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ing, "_read_lines_in_bulk", lambda path, col: False)
        return ing.read_tags(path, "lines")


def bench_ingest_bulk(benchmark, lines_job):
    bulk, ref = ing.read_tags(lines_job, "lines"), per_line(lines_job)
    assert bulk.tags.equals(ref.tags) and bulk.aliases.equals(ref.aliases)
    assert bulk.report.to_dict() == ref.report.to_dict() and bulk.report.read == bulk.report.kept + bulk.report.merged
    assert bulk.report.read == lines_job.read_bytes().count(b"\n")
    benchmark(ing.read_tags, lines_job, "lines")


def bench_ingest_per_line(benchmark, lines_job):
    benchmark(per_line, lines_job)


def test_ingest_speed_table(lines_job, capsys):
    """The ratio of the bulk reader against the per-line reference (printed, never asserted)."""
    from ratios import best_of, record_ratio

    ours, ref = best_of(3, ing.read_tags, lines_job, "lines"), best_of(3, per_line, lines_job)
    n_lines = lines_job.read_bytes().count(b"\n")
    what = f"ingest of a lines file, {n_lines:,} real and synthetic tags (bulk vs per line)"
    record_ratio(what, ours, ref)
    with capsys.disabled():
        print(f"\n{what}: bulk {ours * 1e3:.0f} ms, per line {ref * 1e3:.0f} ms, {ref / ours:.1f}x")
