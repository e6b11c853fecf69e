"""Stage II's tokenizer, compiled (tagfold.native._tokenize) vs its Python reference
(collapse.tokens_with_separators), on the same job in the same run.

Job: the 58,702 real Last.fm tags plus 20,000 tags of each synthetic generator (seeded; the
phrase model brings long phrases, separators and accented or foreign text).

Every benchmark asserts the native result equals the reference before timing it.
`test_tokenize_speed_table` times both sides with cyclic GC off, as the pipeline runs Stage II,
and prints the ratio; it never asserts on speed.
Run: .venv/bin/python -m pytest benchmarks/bench_tokenize.py --benchmark-only -s
"""

import pytest

from tagfold.native import dispatch
from tagfold.pipeline.tags.collapse import TOKENIZE_EXTENSION, tag_tokens

pytestmark = pytest.mark.skipif(not dispatch.native_available(TOKENIZE_EXTENSION),
                                reason="the tokenizer kernel is not built (make install)")
N_SYNTH = 20_000   # tags of each generator added to the real ones


@pytest.fixture(scope="module")
def tag_job(real_tags):
    from tagfold.pipeline.tags import synth, synth_phrases

    n = len(real_tags) + N_SYNTH
    return (list(real_tags) + synth.grow_tags(real_tags, n, seed=11, progress=False)[len(real_tags):]
            + synth_phrases.grow_phrase_tags(real_tags, n, seed=11, progress=False)[len(real_tags):])


def bench_tokenize_native(benchmark, tag_job):
    native = tag_tokens(tag_job, "native")
    assert native == tag_tokens(tag_job, "ref")
    assert sum(map(len, native)) > 3 * len(tag_job)
    benchmark(tag_tokens, tag_job, "native")


def bench_tokenize_ref(benchmark, tag_job):
    benchmark(tag_tokens, tag_job, "ref")


def test_tokenize_speed_table(tag_job, capsys):
    """The ratio of the compiled tokenizer against the reference (printed, never asserted)."""
    from ratios import best_of, record_ratio

    ours, ref = best_of(3, tag_tokens, tag_job, "native"), best_of(3, tag_tokens, tag_job, "ref")
    what = f"Stage II tokenizer, {len(tag_job):,} real and synthetic tags (native vs Python)"
    record_ratio(what, ours, ref)
    with capsys.disabled():
        print(f"\n{what}: native {ours * 1e3:.0f} ms, Python {ref * 1e3:.0f} ms, {ref / ours:.1f}x")
