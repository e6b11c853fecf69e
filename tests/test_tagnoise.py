"""Tag variants (tagnoise), the synthetic full-size job and the embedded default data (synth)."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from tagfold.pipeline.tags import synth, tagnoise


def test_each_kind_is_deterministic_and_documented():
    for kind in tagnoise.KINDS:
        assert f"``{kind}``" in tagnoise.__doc__
        a = [tagnoise.variant(t, np.random.default_rng(3), kind) for t in ("happy", "hip hop", "80s")]
        b = [tagnoise.variant(t, np.random.default_rng(3), kind) for t in ("happy", "hip hop", "80s")]
        assert a == b and all(v.strip() for v in a)
    with pytest.raises(ValueError, match="valid kinds"):
        tagnoise.variant("happy", np.random.default_rng(0), "bogus")


def test_kinds_do_what_they_say():
    rng = np.random.default_rng(0)
    assert tagnoise.variant("hip hop", rng, "join") == "hiphop"
    assert tagnoise.variant("indie rock", rng, "hyphen") == "indie-rock"
    decade = next(k for k in tagnoise.KINDS if k.startswith("decade"))
    decades = {tagnoise.variant("80s", np.random.default_rng(s), decade) for s in range(200)}
    assert {"80's", "eighties", "1980s"} <= decades and "80s" not in decades
    typos = [tagnoise.variant("happy", np.random.default_rng(s), "typo") for s in range(50)]
    # one edit: length changes by at most one and most characters survive
    assert all(abs(len(t) - 5) <= 1 and len(set(t) & set("happy")) >= 2 for t in typos)
    assert sum(t != "happy" for t in typos) >= 40
    assert all("sad" in tagnoise.variant("sad", np.random.default_rng(s), "phrase").split() for s in range(20))


def test_noisy_user_tags_keep_a_form_of_every_latent_tag(monkeypatch):
    """Every latent tag is typed as itself, as a non-junk variant made from that same tag, or as a
    word naming it by meaning; every other raw tag is junk."""
    made = []                                   # (source tag, kind, variant) of every variant drawn
    real_variant = tagnoise.variant

    def recording(tag, rng, kind=None, **kw):
        out = real_variant(tag, rng, kind, **kw)
        made.append((tag, kind, out))
        return out

    monkeypatch.setattr(tagnoise, "variant", recording)
    meaning = tagnoise.meaning_words()
    latent = ["happy", "rock", "80s", "singer-songwriter"]
    seen = {"exact": 0, "variant": 0, "meaning": 0}
    for seed in range(60):
        made.clear()
        raw = tagnoise.noisy_user_tags(latent, np.random.default_rng(seed), p_meaning=0.2)
        assert len(raw) == len(set(raw)) >= len(latent)
        forms = {}
        for tag in latent:
            variants = {out for src, kind, out in made if src == tag and kind != "junk"}
            forms[tag] = ({tag} | variants | set(meaning.get(tag, ()))) & set(raw)
            assert forms[tag], (seed, tag, raw)
            seen["exact"] += tag in raw
            seen["variant"] += bool(variants & set(raw))
            seen["meaning"] += bool(set(meaning.get(tag, ())) & set(raw))
        junk = {out for _, kind, out in made if kind == "junk"}
        assert set(raw) <= set().union(*forms.values()) | junk, (seed, raw)
        made.clear()
        assert raw == tagnoise.noisy_user_tags(latent, np.random.default_rng(seed), p_meaning=0.2)
    assert min(seen.values()) >= 5, seen       # every way of typing a tag was exercised


def test_grow_tags_is_deterministic_unique_and_keeps_every_real_tag(real_tags):
    real = real_tags[::50]
    n = len(dict.fromkeys(real)) + 4000
    a = synth.grow_tags(real, n, seed=1, progress=False)
    assert len(a) == len(set(a)) == n
    assert a[: len(dict.fromkeys(real))] == list(dict.fromkeys(real))
    assert a == synth.grow_tags(real, n, seed=1, progress=False)
    assert a != synth.grow_tags(real, n, seed=2, progress=False)
    with pytest.raises(ValueError, match="exceed"):
        synth.grow_tags(real, 10, progress=False)


def test_full_size_job_cli(tmp_path):
    out = tmp_path / "t.txt"
    assert synth.main(["--n", "60000", "--seed", "0", "--out", str(out)]) == 0
    lines = out.read_text("utf-8").splitlines()
    assert len(lines) == len(set(lines)) == 60000


def test_default_tags_is_a_folksonomy_around_the_selected_tags():
    from tagfold.pipeline.selected import load_selected
    tags = synth.default_tags(0)
    assert tags == synth.default_tags(0) and len(tags) == len(set(tags)) > 3000
    assert set(load_selected().tags) <= set(tags)
    assert {"hiphop", "eighties"} & set(tags)


def test_pipeline_runs_on_embedded_default_data(tmp_path):
    from tagfold.pipeline.io import read_config
    from tagfold.pipeline.tags.run import main
    assert main(["--out", str(tmp_path)]) == 0
    tags = pq.read_table(tmp_path / "tags.parquet")
    from tagfold.pipeline.tags.vocab import normalize_tag
    # ingest merges tags equal after normalisation ('Hip Hop' / 'hip hop'); none is lost
    assert tags.num_rows == len({normalize_tag(t) for t in synth.default_tags(0)})
    s2 = pq.read_table(tmp_path / "stage2.parquet")
    s3 = pq.read_table(tmp_path / "stage3.parquet")
    assert s3.column_names == ["tag_id", "tag", "target", "source", "distance", "cut"]
    assert set(s3.column("source").to_pylist()) == {"stage2", "embedding"}
    assert s2.num_rows > 1000 and s3.num_rows > s2.num_rows
    assert read_config(tmp_path / "stage3.parquet")["embed"]["percentile"] == 0.001


# ---- the documented form of every kind (tagfold.pipeline.tags.tagnoise docstring)

FORM_TAGS = ("rock", "hip hop", "singer-songwriter", "80s", "90s rock", "sad", "british rock", "a", "jazzz")


def test_every_kind_changes_the_tag_into_its_documented_form():
    import re

    from rapidfuzz.distance import OSA

    for seed in range(40):
        for tag in FORM_TAGS:
            out = {k: tagnoise.variant(tag, np.random.default_rng(seed), k) for k in tagnoise.KINDS}
            assert all(v != tag and v.strip() for v in out.values()), (tag, out)
            assert OSA.distance(out["typo"], tag) == 1, (tag, out["typo"])
            if re.search(r"[ -]", tag):
                assert out["join"] == re.sub(r"[ -]", "", tag)
                assert out["hyphen"] in (tag.replace(" ", "-"), tag.replace("-", " "))
            else:
                assert tag in out["join"] and " " not in out["join"]
                assert out["hyphen"].endswith("-" + tag)
            decade = tagnoise._DECADE_RE.search(out["decade_form"])
            assert decade is not None, out["decade_form"]
            if tagnoise._DECADE_RE.search(tag) is None:
                assert out["decade_form"] == decade.group(0) + " " + tag
            for kind in ("phrase", "modifier"):
                assert tag in out[kind] and len(out[kind]) > len(tag)
            assert out["synonym"].split() != tag.split()
    assert tagnoise.variant("sad", np.random.default_rng(0), "synonym") in tagnoise._SYNONYMS["sad"]
    uk = {tagnoise.variant("british rock", np.random.default_rng(s), "synonym") for s in range(30)}
    assert all(v.endswith(" rock") and v.split()[0] in tagnoise._SYNONYMS["british"] for v in uk)
    # 80s stays the eighties in every form
    eighties = {tagnoise.variant("80s", np.random.default_rng(s), "decade_form") for s in range(100)}
    assert all("8" in d or d == "eighties" for d in eighties)
    assert any(re.fullmatch(r"198[0-9]", d) for d in eighties)
    assert {"80er", "'80s", "80's", "1980s", "eighties"} <= eighties


def test_junk_does_not_depend_on_the_tag():
    for seed in range(20):
        a = tagnoise.variant("rock", np.random.default_rng(seed), "junk")
        assert a == tagnoise.variant("jazz", np.random.default_rng(seed), "junk") and "rock" not in a


def test_noisy_user_tags_never_empty_and_validated():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        latent = list(rng.choice(FORM_TAGS, size=int(rng.integers(0, 4)), replace=False))
        raw = tagnoise.noisy_user_tags(latent, rng, n_junk=(0, 0) if seed % 2 else (0, 2))
        assert raw and all(isinstance(t, str) and t.strip() for t in raw)
    assert set(tagnoise.noisy_user_tags(["rock", "sad"], np.random.default_rng(0), p_exact=1.0)) >= {"rock", "sad"}
    with pytest.raises(ValueError, match="p_exact"):
        tagnoise.noisy_user_tags(["rock"], np.random.default_rng(0), p_exact=1.5)
    with pytest.raises(ValueError, match="n_junk"):
        tagnoise.noisy_user_tags(["rock"], np.random.default_rng(0), n_junk=(2, 1))
    with pytest.raises(ValueError, match="empty"):
        tagnoise.variant(" ", np.random.default_rng(0), "typo")
