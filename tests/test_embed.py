"""Stage III on the real tags: vectors, normal-fit cuts, folding rules, the gold floor."""
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


@pytest.fixture(scope="module")
def stage3(real_unique, kv):
    stage2 = collapse(real_unique)
    return stage2, embed_collapse(real_unique, stage2, kv=kv)


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


def test_stage2_plus_3_meets_the_gold_floor(stage3):
    score = score_mapping(mapping_from_table(stage3[1].table), load_gold())
    assert score.precision >= 0.93 and score.recall >= 0.88, score


def test_partial_vectors_fold_more_tags_when_allowed(stage3, real_unique, kv):
    strict = stage3[1].report.folded_by_embedding
    loose = embed_collapse(real_unique, stage3[0], kv=kv, config=EmbedConfig(require_all_known=False))
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
