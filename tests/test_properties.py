"""Property tests (hypothesis) on the parsers and on the inputs the native kernels accept.

Parsers: for any bytes at all, tag ingest either succeeds with counts that add up or raises
IngestError (never another exception); with skip_bad it never raises and accounts for every
row. Kernels: strings from the whole of Unicode (lone surrogates, NUL, astral code points) and
vectors with infinities or huge values give the same answer from the native kernel and its
reference, or the same clear error. Paths: no manifest path leaves the data root.
"""
from __future__ import annotations

import csv
import io
import math
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tagfold.native import jaro_winkler as jw
from tagfold.native import l2
from tagfold.pipeline.tags.ingest import IngestError, read_tags
from tagfold.pipeline.tags.vocab import normalize_tag

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# lines built from pieces that hit every rule: tabs, NULs, bad bytes, blanks, long runs, digits
_piece = st.sampled_from([b"rock", b"Rock", b" ", b"\t", b"\x00", b"\xff", b"\xc3\xa9", b"e\xcc\x81", b"7",
                          b"-3", b"\r", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"x" * 300, b"\xf0\x9f\x8e\xb8"])
_line = st.lists(_piece, max_size=6).map(b"".join)
_file = st.lists(_line, max_size=25).map(lambda ls: b"\n".join(ls))


def _write(tmp_path_factory, data: bytes, name: str) -> Path:
    p = tmp_path_factory.mktemp("prop") / name
    p.write_bytes(data)
    return p


def _check_report(result, n_rows_max: int) -> None:
    r = result.report
    assert r.read == r.kept + r.merged + r.rejected
    assert r.read <= n_rows_max
    assert result.tags.num_rows == r.kept
    tags = result.tags.column("tag").to_pylist()
    assert len(set(tags)) == len(tags)                        # merged means merged
    for t in tags:
        assert t and "\0" not in t and t == normalize_tag(t) and len(t) <= 255


@FAST
@given(data=st.one_of(_file, st.binary(max_size=400)))
def test_lines_parser_accounts_for_every_line(tmp_path_factory, data):
    path = _write(tmp_path_factory, data, "tags.txt")
    n_lines = data.count(b"\n") + 1
    if not data:
        with pytest.raises(IngestError, match="empty file"):
            read_tags(path, "lines", skip_bad=True)
        return
    result = read_tags(path, "lines", skip_bad=True)
    _check_report(result, n_lines)
    # a tag's count is the number of lines that normalise to it
    assert sum(result.tags.column("count").to_pylist()) == result.report.kept + result.report.merged
    try:
        strict = read_tags(path, "lines")
    except IngestError as e:
        assert str(path) in str(e)
        assert result.report.rejected > 0
    else:
        assert result.report.rejected == 0 and strict.tags.equals(result.tags)


_count = st.one_of(st.integers(0, 10**6).map(lambda n: str(n).encode()), st.sampled_from([b"", b"-1", b"x", b"1.5"]))
_ut_line = st.tuples(_line, st.booleans(), _count).map(lambda t: t[0] + (b"\t" + t[2] if t[1] else b""))


@FAST
@given(lines=st.lists(_ut_line, max_size=25))
def test_unique_tags_parser_sums_counts(tmp_path_factory, lines):
    path = _write(tmp_path_factory, b"\n".join(lines) + b"\n", "unique.txt")
    result = read_tags(path, "unique_tags", skip_bad=True)
    _check_report(result, len(lines) + 1)
    # the kept and merged rows' counts all land in tags.parquet: nothing is lost or invented
    good = 0
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines = [lines[0][3:], *lines[1:]]          # a byte-order mark starts the file, not a tag
    for raw in lines:
        tag, tab, count = raw.rpartition(b"\t")
        try:
            text = tag.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if tab and count.isdigit() and count.isascii() and "\0" not in text and 0 < len(normalize_tag(text)) <= 255:
            good += int(count)
    assert sum(result.tags.column("count").to_pylist()) == good


_track = st.sampled_from(["TRA", "TRB", "TRC", "", " ", "T\x00"])
_tags_field = st.lists(st.sampled_from(["rock", "Rock", "", "  ", "sad", "a\x00b", "x" * 300, "hip hop"]),
                       max_size=4).map(";".join)


@FAST
@given(rows=st.lists(st.tuples(_track, _tags_field), max_size=15))
def test_csv_parser_links_add_up(tmp_path_factory, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["track_id", "tags"])
    w.writerows(rows)
    path = _write(tmp_path_factory, buf.getvalue().encode(), "tracks.csv")
    result = read_tags(path, "csv", skip_bad=True)
    r = result.report
    assert r.read == r.kept + r.merged + r.rejected
    assert r.links_read == r.links_kept + r.links_merged + r.links_rejected
    assert result.track_tags.num_rows == r.links_kept
    # no (track, tag) pair twice, and every link names a kept tag
    pairs = list(zip(result.track_tags.column("track_id").to_pylist(), result.track_tags.column("tag_id").to_pylist()))
    assert len(set(pairs)) == len(pairs)
    assert all(0 <= t < result.tags.num_rows for _, t in pairs)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20))
@example("\u01f0")            # casefolds to j + combining caron, which NFC recomposes
@example("\u1e9e")            # capital sharp s -> 'ss'
@example("\u0130")            # dotted capital I -> i + combining dot
def test_normalize_tag_is_idempotent(text):
    once = normalize_tag(text)
    assert normalize_tag(once) == once
    assert once == once.strip() and "  " not in once


# ----------------------------------------------------------------------------- kernels

_any_char = st.characters(codec=None, exclude_categories=())        # surrogates and controls included
_jw_text = st.one_of(st.text(alphabet=_any_char, max_size=12),
                     st.text(alphabet=st.sampled_from("ab\x00\ud800\U0010ffff\u00e9"), min_size=0, max_size=70))


@FAST
@given(queries=st.lists(_jw_text, max_size=8), vocab=st.lists(_jw_text, max_size=8),
       cutoff=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_jaro_winkler_native_equals_reference_on_any_unicode(queries, vocab, cutoff):
    got = jw.best_match(queries, vocab, cutoff, impl="native", threads=1)
    ref = jw.best_match(queries, vocab, cutoff, impl="ref", threads=1)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-12)
    a = jw.all_matches(queries, vocab, cutoff, impl="native", threads=1)
    b = jw.all_matches(queries, vocab, cutoff, impl="ref", threads=1)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [None, b"bytes", 3, float("nan")])
def test_jaro_winkler_non_strings_are_clear_errors(bad):
    for impl in ("native", "ref"):
        with pytest.raises(TypeError):
            jw.best_match(["rock", bad], ["rock"], 0.5, impl=impl)


@pytest.mark.parametrize("cutoff", [float("nan"), -0.1, 1.5, float("inf")])
def test_jaro_winkler_bad_cutoff_is_a_clear_error(cutoff):
    for impl in ("native", "ref"):
        with pytest.raises(ValueError, match="score_cutoff"):
            jw.best_match(["rock"], ["rock"], cutoff, impl=impl)


_val = st.one_of(st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, -0.0, 1e-30, 1e15, -1e15]))


@FAST
@given(n=st.integers(0, 6), k=st.integers(0, 4), d=st.integers(1, 9), data=st.data())
def test_l2_native_equals_float64_truth(n, k, d, data):
    X = np.array(data.draw(st.lists(_val, min_size=n * d, max_size=n * d)), np.float32).reshape(n, d)
    T = np.array(data.draw(st.lists(_val, min_size=k * d, max_size=k * d)), np.float32).reshape(k, d)
    truth = np.sqrt(((X[:, None, :].astype(np.float64) - T[None].astype(np.float64)) ** 2).sum(-1))
    got = l2.l2_distances(X, T, impl="native")
    assert got.shape == (n, k) and got.dtype == np.float32
    # native accumulates in float64: the correctly rounded float32 distance
    np.testing.assert_array_equal(got, truth.astype(np.float32))
    ref = l2.l2_distances(X, T, impl="ref")
    np.testing.assert_allclose(ref, truth, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(truth).max(initial=0))))


@pytest.mark.parametrize("impl", ["native", "ref"])
def test_l2_nonfinite_vectors_give_nonfinite_distances_not_garbage(impl):
    X = np.array([[0, 0], [np.inf, 0], [np.nan, 1], [1, 1]], np.float32)
    T = np.array([[0, 0], [np.inf, 0]], np.float32)
    with np.errstate(invalid="ignore"):
        D = l2.l2_distances(X, T, impl=impl)
    assert D[0, 0] == 0 and np.isinf(D[0, 1]) and np.isinf(D[1, 0])
    assert np.isnan(D[1, 1])                      # inf - inf is undefined, never a number
    assert np.isnan(D[2]).all()
    # a row with a NaN distance is refused by the nearest-target step, naming the row
    with pytest.raises(ValueError, match="row 1"):
        l2.nearest_under_cut(D, np.array([1.0, 1.0]), impl=impl)


_dist = st.one_of(st.floats(0, 100, width=32), st.just(float("inf")))
_cut = st.one_of(st.floats(-10, 100), st.sampled_from([float("inf"), float("-inf"), float("nan")]))


@FAST
@given(n=st.integers(0, 6), k=st.integers(0, 5), data=st.data())
def test_nearest_under_cut_native_equals_reference(n, k, data):
    D = np.array(data.draw(st.lists(_dist, min_size=n * k, max_size=n * k)), np.float32).reshape(n, k)
    cuts = np.array(data.draw(st.lists(_cut, min_size=k, max_size=k)), np.float64)
    a, b = l2.nearest_under_cut(D, cuts, impl="native"), l2.nearest_under_cut(D, cuts, impl="ref")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a NaN cut never admits a tag: comparisons with NaN are false
    for i, t in enumerate(a[0]):
        assert t == -1 or a[1][i] < cuts[t]


# ----------------------------------------------------------------------------- data root

_segment = st.sampled_from(["..", ".", "audio", "a.wav", "", "x..y", "...", "~", "$HOME", "%2e%2e"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_segment, min_size=1, max_size=6), start=st.sampled_from(["relative", "/", "root"]))
def test_manifest_paths_never_leave_the_root(tmp_path_factory, parts, start):
    """A path is refused exactly when it resolves outside the root: relative, absolute elsewhere,
    or absolute under the root itself (accepted while it stays there)."""
    from tagfold.pipeline.audio.manifest import OutsideRoot, resolve_track_path
    root = tmp_path_factory.getbasetemp() / "root" / "data"
    prefix = {"relative": "", "/": "/", "root": f"{root}/"}[start]
    rel = prefix + "/".join(parts)
    assume(rel)
    try:
        full = resolve_track_path(root, rel, "t")
    except OutsideRoot as e:
        assert "'t'" in str(e) and "outside the data root" in str(e)
        # Path(root) / rel is rel itself when rel is absolute: the same target either way.
        assert not Path(os.path.realpath(Path(root) / rel)).is_relative_to(os.path.realpath(root))
        return
    assert Path(os.path.realpath(full)).is_relative_to(os.path.realpath(root))
    assert str(full) == os.path.realpath(Path(root) / rel)
