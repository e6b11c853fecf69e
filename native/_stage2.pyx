# cython: language_level=3, boundscheck=False, wraparound=False
"""Stage II's generic inner loops, compiled: word segmentation (unigram Viterbi) and the
per-tag cached phrase-matching loop. Both only move data between Python containers the rule
code built; what a word costs and what a key matches stays in the Python rules.

Plain references: native/stage2.py (segment_ref, match_tags_ref); tests hold both equal.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.set cimport PySet_Contains
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc


def segment(str token, dict cost, object prefixes, double unknown_char_cost, Py_ssize_t max_word_len):
    """Words of `token` by minimum total cost; the same dynamic programme, the same float
    additions and comparisons in the same order as segment_ref, so ties break alike."""
    cdef Py_ssize_t n = len(token), start, end, stop, k
    cdef double here, w
    cdef double *best = <double *> malloc((n + 1) * sizeof(double))
    cdef Py_ssize_t *back = <Py_ssize_t *> malloc((n + 1) * sizeof(Py_ssize_t))
    cdef char *is_word = <char *> malloc(n + 1)
    cdef PyObject *found
    cdef bint prefix_set = isinstance(prefixes, (set, frozenset))
    if best == NULL or back == NULL or is_word == NULL:
        free(best); free(back); free(is_word)
        raise MemoryError()
    try:
        best[0] = 0.0
        for k in range(n + 1):
            if k:
                best[k] = INFINITY
            back[k] = 0
            is_word[k] = 0
        for start in range(n):
            here = best[start]
            if here == INFINITY:
                continue
            if here + unknown_char_cost < best[start + 1]:
                best[start + 1] = here + unknown_char_cost
                back[start + 1] = start
                is_word[start + 1] = 0
            stop = start + max_word_len
            if stop > n:
                stop = n
            for end in range(start + 1, stop + 1):
                piece = token[start:end]
                if prefix_set:
                    if not PySet_Contains(prefixes, piece):
                        break
                elif piece not in prefixes:
                    break
                found = PyDict_GetItem(cost, piece)
                if found != NULL:
                    w = <double> <object> found
                    if here + w < best[end]:
                        best[end] = here + w
                        back[end] = start
                        is_word[end] = 1
        words = []
        end = n
        while end > 0:
            start = back[end]
            if is_word[end]:
                words.append(token[start:end])
            end = start
        words.reverse()
        return words
    finally:
        free(best)
        free(back)
        free(is_word)


def match_tags(list token_lists, Py_ssize_t start, Py_ssize_t stop, object relevant, dict reduced,
               dict cache, object match_key):
    """(tag ids, codes per tag) for token_lists[start:stop]: a tag none of whose tokens is in
    `relevant` is skipped; the others are read as the concatenation of their tokens' `reduced`
    tuples, and match_key(key) is called once per distinct key (results kept in `cache`)."""
    cdef Py_ssize_t tag_id, i, j, n_toks, size, pos
    cdef list toks
    cdef tuple part, key_tuple
    cdef bint hit
    cdef PyObject *found
    hit_ids = []
    hit_codes = []
    for tag_id in range(start, stop):
        toks = token_lists[tag_id]  # checked: each tag's tokens must be a list
        n_toks = PyList_GET_SIZE(toks)
        hit = False
        for i in range(n_toks):
            if PySet_Contains(relevant, <object> PyList_GET_ITEM(toks, i)):
                hit = True
                break
        if not hit:
            continue
        if n_toks == 1:
            key = reduced[<object> PyList_GET_ITEM(toks, 0)]
        else:
            size = 0
            for i in range(n_toks):
                part = reduced[<object> PyList_GET_ITEM(toks, i)]
                size += PyTuple_GET_SIZE(part)
            key_tuple = PyTuple_New(size)
            pos = 0
            for i in range(n_toks):
                part = <tuple> PyDict_GetItem(reduced, <object> PyList_GET_ITEM(toks, i))
                for j in range(PyTuple_GET_SIZE(part)):
                    item = <object> PyTuple_GET_ITEM(part, j)
                    Py_INCREF(item)
                    PyTuple_SET_ITEM(key_tuple, pos, item)
                    pos += 1
            key = key_tuple
        found = PyDict_GetItem(cache, key)
        if found == NULL:
            matches = match_key(key)
            PyDict_SetItem(cache, key, matches)
        else:
            matches = <object> found
        if matches:
            hit_ids.append(tag_id)
            hit_codes.append(matches)
    return hit_ids, hit_codes
