# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Stage II's tokenizer, compiled for ASCII tags: for each tag exactly what
`normalize.tokenize(tag)` / `collapse.tokens_with_separators(tag)` return.

Each regex pass of the reference (tagfold.pipeline.tags.normalize / collapse) is emulated on
a byte buffer with the same semantics: leftmost, non-overlapping matches, `\\s` as Python's
str patterns read it in ASCII (\\t\\n\\v\\f\\r, \\x1c-\\x1f and space), `\\w` and `\\b` counting
'_' as a word character, `[^\\W_]` not. Each pass reads the whole output of the previous one,
as re.sub does, so `\\b` looks at the pass's input, never at text it has already rewritten.
A tag holding any non-ASCII character (accents, NFKD, Unicode white space) goes to the
Python reference given as `fallback`. tests/test_native_tokenize.py holds both equal.
"""
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_GET_LENGTH
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    int PyUnicode_READY(object o) except -1
    object PyUnicode_FromStringAndSize(const char *u, Py_ssize_t size)

ctypedef unsigned char uchar

cdef enum:
    SEPARATOR_CHAR = 45  # '-'


cdef inline bint is_space(uchar c) nogil:
    # Python's \s (str pattern) and str.isspace() in ASCII
    return (9 <= c <= 13) or (28 <= c <= 32)


cdef inline bint is_digit(uchar c) nogil:
    return 48 <= c <= 57


cdef inline bint is_alnum(uchar c) nogil:
    # [^\W_] in ASCII
    return is_digit(c) or (97 <= c <= 122) or (65 <= c <= 90)


cdef inline bint is_word(uchar c) nogil:
    # \w in ASCII
    return is_alnum(c) or c == 95


cdef inline bint is_apostrophe(uchar c) nogil:
    # the ASCII members of ['’`´]
    return c == 39 or c == 96


cdef struct Scratch:
    uchar *a
    uchar *b
    Py_ssize_t size


cdef int reserve(Scratch *s, Py_ssize_t n) except -1:
    """Room for a pass's output: '&' -> ' and ' at most quintuples a text, and the other
    passes never make it longer than 1.5 times."""
    cdef Py_ssize_t need = 5 * n + 16
    cdef uchar *a
    cdef uchar *b
    if need <= s.size:
        return 0
    a = <uchar *> realloc(s.a, need)
    if a == NULL:
        raise MemoryError()
    s.a = a
    b = <uchar *> realloc(s.b, need)
    if b == NULL:
        raise MemoryError()
    s.b = b
    s.size = need
    return 0


cdef inline Py_ssize_t emit(uchar *out, Py_ssize_t o, const char *text, Py_ssize_t n) nogil:
    memcpy(out + o, text, n)
    return o + n


cdef Py_ssize_t and_pass(const uchar *t, Py_ssize_t n, uchar *out) nogil:
    """re.sub(r"\\s*&\\s*|\\s*\\+\\s*", " and ", t): white space, '&' or '+', white space."""
    cdef Py_ssize_t i = 0, j, o = 0
    while i < n:
        j = i
        while j < n and is_space(t[j]):
            j += 1
        if j < n and (t[j] == 38 or t[j] == 43):
            j += 1
            while j < n and is_space(t[j]):
                j += 1
            o = emit(out, o, " and ", 5)
            i = j
        elif j > i:
            # a run of white space not followed by '&'/'+': no match starts inside it
            o = emit(out, o, <const char *> t + i, j - i)
            i = j
        else:
            out[o] = t[i]
            o += 1
            i += 1
    return o


cdef Py_ssize_t n_form_pass(const uchar *t, Py_ssize_t n, uchar *out) nogil:
    """re.sub(r"['’`´]n['’`´]?|\\bn['’`´]", " n ", t), then every apostrophe removed."""
    cdef Py_ssize_t i = 0, o = 0
    cdef uchar c
    while i < n:
        c = t[i]
        if is_apostrophe(c) and i + 1 < n and t[i + 1] == 110:   # 'n
            i += 2
            if i < n and is_apostrophe(t[i]):
                i += 1
            o = emit(out, o, " n ", 3)
        elif c == 110 and (i == 0 or not is_word(t[i - 1])) and i + 1 < n and is_apostrophe(t[i + 1]):
            i += 2
            o = emit(out, o, " n ", 3)
        else:
            if not is_apostrophe(c):
                out[o] = c
                o += 1
            i += 1
    return o


cdef Py_ssize_t decade_suffix_end(const uchar *t, Py_ssize_t n, Py_ssize_t k) nogil:
    """End of (s|er|ies|ties)\\b at k, or -1."""
    cdef Py_ssize_t e = -1
    if k < n:
        if t[k] == 115:                                                  # s
            e = k + 1
        elif t[k] == 101 and k + 1 < n and t[k + 1] == 114:              # er
            e = k + 2
        elif t[k] == 105 and k + 2 < n and t[k + 1] == 101 and t[k + 2] == 115:   # ies
            e = k + 3
        elif (t[k] == 116 and k + 3 < n and t[k + 1] == 105 and t[k + 2] == 101  # ties
              and t[k + 3] == 115):
            e = k + 4
    if e < 0 or (e < n and is_word(t[e])):
        return -1
    return e


cdef Py_ssize_t decade_pass(const uchar *t, Py_ssize_t n, uchar *out) nogil:
    """re.sub(r"\\b(\\d{2,4})[\\s\\-]+(s|er|ies|ties)\\b", r"\\1\\2", t)."""
    cdef Py_ssize_t i = 0, j, k, e, o = 0
    while i < n:
        if is_digit(t[i]) and (i == 0 or not is_word(t[i - 1])):
            j = i
            while j < n and is_digit(t[j]):
                j += 1
            # Only the whole run of digits can be followed by [\s-]; inside it there is no \b.
            if 2 <= j - i <= 4 and j < n and (is_space(t[j]) or t[j] == SEPARATOR_CHAR):
                k = j
                while k < n and (is_space(t[k]) or t[k] == SEPARATOR_CHAR):
                    k += 1
                e = decade_suffix_end(t, n, k)
                if e >= 0:
                    o = emit(out, o, <const char *> t + i, j - i)
                    o = emit(out, o, <const char *> t + k, e - k)
                    i = e
                    continue
            o = emit(out, o, <const char *> t + i, j - i)
            i = j
        else:
            out[o] = t[i]
            o += 1
            i += 1
    return o


cdef int tokenize_into(const uchar *src, Py_ssize_t n, Scratch *s, list tokens) except -1:
    """normalize.tokenize on the ASCII text src[:n], appending its tokens to `tokens`."""
    cdef Py_ssize_t i, start, m = n
    cdef uchar c
    cdef bint has_and = False, has_apostrophe = False, has_digit = False
    cdef uchar *cur
    cdef uchar *other
    cdef uchar *swap
    reserve(s, n)
    cur, other = s.a, s.b
    for i in range(n):
        c = src[i]
        if 65 <= c <= 90:
            c += 32   # str.lower() of ASCII
        elif c == 38 or c == 43:
            has_and = True
        elif is_apostrophe(c):
            has_apostrophe = True
        elif is_digit(c):
            has_digit = True
        cur[i] = c
    # Skipping a pass only where it could not match anything (as normalize does).
    if has_and:
        m = and_pass(cur, m, other)
        cur, other = other, cur
    if has_apostrophe:
        m = n_form_pass(cur, m, other)
        cur, other = other, cur
    if has_digit:
        m = decade_pass(cur, m, other)
        cur, other = other, cur
    i = 0
    while i < m:
        if is_alnum(cur[i]):
            start = i
            while i < m and is_alnum(cur[i]):
                i += 1
            tokens.append(PyUnicode_FromStringAndSize(<const char *> cur + start, i - start))
        else:
            i += 1
    return 0


cdef inline bint is_strip_char(uchar c) nogil:
    # tag.strip(" -")
    return c == 32 or c == SEPARATOR_CHAR


cdef Py_ssize_t separator_end(const uchar *t, Py_ssize_t hi, Py_ssize_t i) nogil:
    """End of a match of r"\\s+-+\\s*|\\s*-+\\s+" at i (-1 for none): white space, dashes,
    white space, with white space on at least one side (greedy runs; nothing to backtrack
    into, as each run ends where the next kind of character begins)."""
    cdef Py_ssize_t j = i, k, e
    while j < hi and is_space(t[j]):
        j += 1
    if j >= hi or t[j] != SEPARATOR_CHAR:
        return -1
    k = j
    while k < hi and t[k] == SEPARATOR_CHAR:
        k += 1
    e = k
    while e < hi and is_space(t[e]):
        e += 1
    if j > i or e > k:
        return e
    return -1


cdef inline bint blank_part(const uchar *t, Py_ssize_t start, Py_ssize_t stop) nogil:
    """part.strip(" -") == ''"""
    cdef Py_ssize_t p
    for p in range(start, stop):
        if not is_strip_char(t[p]):
            return False
    return True


cdef list tokens_with_separators(const uchar *t, Py_ssize_t n, Scratch *s):
    """collapse.tokens_with_separators on the ASCII tag t[:n] (which holds a '-'): the tag
    stripped of ' ' and '-' is split at separators; parts that strip to nothing are dropped;
    with fewer than two parts left the whole tag is tokenised, else each part, with a
    SEPARATOR token between parts that have tokens."""
    cdef Py_ssize_t lo = 0, hi = n, i, e, start, p, before
    cdef list bounds = []   # start, stop of each part kept
    cdef list tokens = []
    while lo < hi and is_strip_char(t[lo]):
        lo += 1
    while hi > lo and is_strip_char(t[hi - 1]):
        hi -= 1
    start = i = lo
    while i < hi:
        e = separator_end(t, hi, i)
        if e >= 0:
            if not blank_part(t, start, i):
                bounds.append((start, i))
            start = i = e
        elif is_space(t[i]):
            # No match starts inside a run of white space not followed by a dash ...
            while i < hi and is_space(t[i]):
                i += 1
        elif t[i] == SEPARATOR_CHAR:
            # ... nor inside a run of dashes with no white space on either side.
            while i < hi and t[i] == SEPARATOR_CHAR:
                i += 1
        else:
            i += 1
    if not blank_part(t, start, hi):
        bounds.append((start, hi))
    if len(bounds) < 2:
        tokenize_into(t, n, s, tokens)
        return tokens
    for start, e in bounds:
        before = len(tokens)
        if before:
            tokens.append("-")
        tokenize_into(t + start, e - start, s, tokens)
        if before and len(tokens) == before + 1:
            del tokens[before]   # a part without tokens adds no SEPARATOR
    return tokens


def tag_tokens(list tags, object fallback):
    """[tokens of each tag]: computed here for ASCII tags (str), by `fallback(tag)` (the
    Python reference, collapse.tokens_with_separators) for any other."""
    cdef Py_ssize_t k, n, j, count = PyList_GET_SIZE(tags)
    cdef const uchar *t
    cdef bint dashed
    cdef list out = [None] * count
    cdef list tokens
    cdef object tag
    cdef Scratch s
    s.a = s.b = NULL
    s.size = 0
    try:
        for k in range(count):
            tag = <object> PyList_GET_ITEM(tags, k)
            if type(tag) is not str or (PyUnicode_READY(tag) == 0 and not PyUnicode_IS_ASCII(tag)):
                out[k] = fallback(tag)
                continue
            t = PyUnicode_1BYTE_DATA(tag)
            n = PyUnicode_GET_LENGTH(tag)
            dashed = False
            for j in range(n):
                if t[j] == SEPARATOR_CHAR:
                    dashed = True
                    break
            if dashed:
                out[k] = tokens_with_separators(t, n, &s)
            else:
                tokens = []
                tokenize_into(t, n, &s, tokens)
                out[k] = tokens
        return out
    finally:
        free(s.a)
        free(s.b)
