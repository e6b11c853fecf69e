"""The synthetic full-size job (synth.grow_tags / `tagfold synth-tags`) and the embedded default data."""
import numpy as np
import pytest

from tagfold.pipeline.tags import synth
from tagfold.pipeline.selected import load_selected
from tagfold.pipeline.tags.vocab import normalize_tag


@pytest.fixture(scope="module")
def real(real_tags):
    return real_tags[::20]   # ~2,900 real tags keeps these tests fast


def test_grow_tags_exact_count_unique_real_first(real):
    n = len(real) + 20_000
    tags = synth.grow_tags(real, n, seed=0, progress=False)
    assert len(tags) == n
    assert tags[:len(real)] == real
    variants = tags[len(real):]
    # unique even after ingest's normalisation, so ingest merges no variant away
    keys = [normalize_tag(t) for t in variants]
    assert len(set(keys)) == len(keys) and not set(keys) & {normalize_tag(t) for t in real}
    assert all(t.strip() and "\n" not in t and len(t) <= synth.MAX_LEN for t in variants)


def test_grow_tags_is_deterministic_for_a_seed(real):
    n = len(real) + 5000
    a = synth.grow_tags(real, n, seed=3, progress=False)
    assert a == synth.grow_tags(real, n, seed=3, progress=False)
    b = synth.grow_tags(real, n, seed=4, progress=False)
    assert b[:len(real)] == real and len(set(a) & set(b)) < n - 1000


def test_grow_tags_variants_are_close_to_real_tags(real):
    """Most variants still hold a real tag or differ from one by one edit (they are noise, not random text)."""
    from rapidfuzz.distance import OSA

    tags = synth.grow_tags(real, len(real) + 2000, seed=1, progress=False)
    rng = np.random.default_rng(0)
    sample = [tags[len(real) + i] for i in rng.choice(2000, 200, replace=False)]
    real_set = set(real)
    near = sum(any(r in v for r in real_set if len(r) > 3) or any(OSA.distance(v, r) <= 2 for r in real_set)
               for v in sample)
    assert near >= 150


def test_grow_tags_rejects_bad_real_tags():
    with pytest.raises(ValueError, match="exceed"):
        synth.grow_tags(["rock", "pop", "jazz"], 2, progress=False)
    with pytest.raises(ValueError, match="empty"):
        synth.grow_tags(["rock", " "], 10, progress=False)
    with pytest.raises(ValueError, match="unique"):
        synth.grow_tags(["rock", "rock"], 10, progress=False)


def test_cli_writes_exactly_n_lines(tmp_path, real):
    source = tmp_path / "real.txt"
    source.write_text("\n".join(real) + "\n", encoding="utf-8")
    out = tmp_path / "job" / "tags.txt"
    n = len(real) + 3000
    assert synth.main(["--n", str(n), "--seed", "0", "--out", str(out), "--source", str(source)]) == 0
    lines = out.read_text("utf-8").splitlines()
    assert lines == synth.grow_tags(real, n, seed=0, progress=False)
    assert [p.name for p in out.parent.iterdir()] == ["tags.txt"]   # no temp file left behind


def test_read_source_names_the_empty_line(tmp_path):
    source = tmp_path / "real.txt"
    source.write_text("rock\npop\n\njazz\nrock\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"real.txt:3: empty tag"):
        synth.read_source(source)
    source.write_text("rock\npop\nrock\n", encoding="utf-8")
    assert synth.read_source(source) == ["rock", "pop"]


def test_default_tags_deterministic_and_a_folksonomy():
    tags = synth.default_tags(0)
    assert tags == synth.default_tags(0) and tags != synth.default_tags(1)
    assert len(tags) == len(set(tags)) == 5000 and len(synth.default_tags(0, n=1000)) == 1000
    selected = list(load_selected().tags)
    assert tags[:len(selected)] == selected
    source = set(selected) | set(synth.COMMON_WORDS)
    variants = [t for t in tags if t not in source]
    assert len(variants) > 4000
    # every selected tag shows up in user-typed forms, not only verbatim
    assert sum(any(s in v for v in variants) for s in selected) >= 45


# ---------------------------------------------------------------- the MSD-shaped database

def test_msd_database_shape_counts_and_determinism(tmp_path, real_tags):
    import sqlite3

    from tagfold.pipeline.tags import synth_msd

    tags = synth.grow_tags(real_tags, 60_000, seed=0, progress=False)
    a = synth_msd.write_msd_database(tmp_path / "a.db", tags, n_tracks=3_000, n_links=70_000, seed=5, progress=False)
    con = sqlite3.connect(a)
    assert [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tids", "tags", "tid_tag")] == \
        [3_000, 60_000, 70_000]
    links = con.execute("SELECT tid, tag, val FROM tid_tag ORDER BY rowid").fetchall()
    tids = [r[0] for r in con.execute("SELECT tid FROM tids")]
    con.close()
    assert len(set((t, g) for t, g, _ in links)) == len(links)             # distinct pairs
    assert {g for _, g, _ in links} == set(range(1, 60_001))              # every tag carried
    assert {t for t, _, _ in links} == set(range(1, 3_001))               # every track tagged
    assert [t for t, _, _ in links] == sorted(t for t, _, _ in links)     # ordered by track
    assert all(0 < v <= 100 for _, _, v in links)
    assert len(set(tids)) == 3_000 and all(len(t) == 18 and t.startswith("TR") for t in tids)
    # Zipf-like: the most popular tag is carried far more often than the median tag
    counts = np.bincount([g for _, g, _ in links])[1:]
    assert counts.max() > 50 * np.median(counts)
    b = synth_msd.write_msd_database(tmp_path / "b.db", tags, n_tracks=3_000, n_links=70_000, seed=5, progress=False)
    dump = lambda p: list(sqlite3.connect(p).iterdump())  # noqa: E731
    assert dump(a) == dump(b)


def test_msd_database_refuses_impossible_sizes(tmp_path):
    from tagfold.pipeline.tags import synth_msd

    with pytest.raises(ValueError, match="n_links"):
        synth_msd.write_msd_database(tmp_path / "x.db", ["a", "b", "c"], n_tracks=2, n_links=2, progress=False)
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------- the phrase noise model

def test_phrase_model(real_tags):
    from tagfold.pipeline.tags import synth_phrases

    n = len(real_tags) + 5_000
    tags = synth_phrases.grow_phrase_tags(real_tags, n, seed=2, progress=False)
    assert len(tags) == n and tags[:len(real_tags)] == list(real_tags)
    assert tags == synth_phrases.grow_phrase_tags(real_tags, n, seed=2, progress=False)
    variants = tags[len(real_tags):]
    keys = [normalize_tag(t) for t in variants]
    assert len(set(keys)) == len(keys) and not set(keys) & {normalize_tag(t) for t in real_tags}
    assert all(t.strip() and "\n" not in t and len(t) <= synth_phrases.MAX_LEN for t in variants)
    assert sum(len(t) >= 230 for t in variants) > 50                                   # near the limit
    assert sum(any(j in t for j in synth_phrases.JOINERS) for t in variants) > 1000    # joined phrases
    scripts = {"cyrillic": "\u0400-\u04ff", "cjk": "\u3040-\u30ff\u4e00-\u9fff", "hangul": "\uac00-\ud7af"}
    import re
    for name, chars in scripts.items():
        assert sum(bool(re.search(f"[{chars}]", t)) for t in variants) > 20, name
    assert sum(bool(re.search("[áàäâãéèëêíìïîóòöôõúùüûñç]", t)) for t in variants) > 500
