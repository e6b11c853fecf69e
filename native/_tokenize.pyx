# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Stage II's tokenizer, compiled: for each tag exactly what
`collapse.tokens_with_separators(tag)` (normalize.tokenize per part) returns.

The Unicode folding of normalize_text (str.lower, NFKD, combining marks dropped) stays with
Python's own str and unicodedata (C code, called only for non-ASCII text); every regex pass
after it is emulated on a buffer of code points with re's semantics for str patterns:
leftmost, non-overlapping matches; `\\s`, `\\d`, `\\w` as str.isspace / isdecimal / isalnum
(+ '_') read each character, `[^\\W_]` as isalnum; `\\b` between a \\w and a non-\\w. Each
pass reads the whole output of the previous one, as re.sub does, so `\\b` looks at the pass's
input, never at text it has already rewritten.

Plain reference: collapse.tokens_with_separators; tests/test_native_tokenize.py holds both equal.
"""
import unicodedata

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport (PyUnicode_1BYTE_DATA, PyUnicode_4BYTE_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH,
                              PyUnicode_KIND, PyUnicode_READ, Py_UNICODE_ISALNUM, Py_UNICODE_ISDECIMAL,
                              Py_UNICODE_ISSPACE)
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdlib cimport calloc, free, realloc
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcpy

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    int PyUnicode_READY(object o) except -1
    object PyUnicode_FromKindAndData(int kind, const void *buffer, Py_ssize_t size)
    object PyUnicode_Substring(object text, Py_ssize_t start, Py_ssize_t end)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void PyObject_GC_UnTrack(object o)

ctypedef uint32_t uchar   # a code point (Py_UCS4 would make Cython treat it as a 1-char str)

cdef enum:
    DASH = 45   # '-', the separator and the only dash the passes know
    SPACE = 32
    MAX_CODE_POINT = 0x110000

cdef uchar AND_TEXT[5]
AND_TEXT[:] = [32, 97, 110, 100, 32]    # " and "
cdef uchar N_TEXT[3]
N_TEXT[:] = [32, 110, 32]               # " n "


cdef inline bint is_space(uchar c) noexcept:
    # \s: str.isspace()
    return (9 <= c <= 13) or (28 <= c <= 32) or (c >= 128 and Py_UNICODE_ISSPACE(c))


cdef inline bint is_digit(uchar c) noexcept:
    # \d: str.isdecimal()
    return (48 <= c <= 57) or (c >= 128 and Py_UNICODE_ISDECIMAL(c))


cdef inline bint is_alnum(uchar c) noexcept:
    # [^\W_]: str.isalnum()
    if c < 128:
        return (48 <= c <= 57) or (97 <= c <= 122) or (65 <= c <= 90)
    return Py_UNICODE_ISALNUM(c)


cdef inline bint is_word(uchar c) noexcept:
    # \w
    return c == 95 or is_alnum(c)


cdef inline bint is_apostrophe(uchar c) noexcept:
    # ['’`´]
    return c == 39 or c == 0x2019 or c == 96 or c == 0xB4


cdef inline bint is_strip_char(uchar c) noexcept:
    # str.strip(" -")
    return c == SPACE or c == DASH


# ---------------------------------------------------------------------------------------------
# scratch buffers

cdef struct Scratch:
    uchar *a      # the text being tokenised (input of the next pass)
    uchar *b      # the output of the next pass
    Py_ssize_t size
    PyObject **slots    # the ASCII tokens made so far (open addressing; see make_token)
    uint64_t *hashes
    Py_ssize_t mask, used


cdef int reserve(Scratch *s, Py_ssize_t n) except -1:
    """Room for the passes over a text of n characters: at most 5 characters come of one.
    '&' -> ' and ' makes 1 character 5, "'n" -> ' n ' makes 2 characters 3, and these never
    compound (' and ' holds no apostrophe, and its 'n' follows a letter); the decade pass
    only shortens."""
    cdef Py_ssize_t need = 5 * n + 16
    cdef uchar *p
    if need <= s.size:
        return 0
    p = <uchar *> realloc(s.a, need * sizeof(uchar))
    if p == NULL:
        raise MemoryError()
    s.a = p
    p = <uchar *> realloc(s.b, need * sizeof(uchar))
    if p == NULL:
        raise MemoryError()
    s.b = p
    s.size = need
    return 0


# unicodedata.combining(chr(c)) != 0, looked up once per code point met: 0 unknown, 1 no, 2 yes.
cdef unsigned char *combining_known = NULL


cdef bint is_combining(uchar c) except -1:
    global combining_known
    if c < 128:
        return False
    if combining_known == NULL:
        combining_known = <unsigned char *> calloc(MAX_CODE_POINT, 1)
        if combining_known == NULL:
            raise MemoryError()
    if combining_known[c] == 0:
        combining_known[c] = 2 if unicodedata.combining(chr(c)) else 1
    return combining_known[c] == 2


cdef Py_ssize_t load_ascii(Scratch *s, const unsigned char *t, Py_ssize_t n) except -1:
    """s.a = the ASCII text t[:n] lower-cased (normalize_text needs nothing else for it)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    reserve(s, n)
    for i in range(n):
        c = t[i]
        s.a[i] = c + 32 if 65 <= c <= 90 else c
    return n


cdef Py_ssize_t load_folded(Scratch *s, str text) except -1:
    """s.a = the case and accent folding of normalize_text: lower case, NFKD for non-ASCII
    text, combining marks dropped."""
    cdef Py_ssize_t i, m = 0, n
    cdef int kind
    cdef void *data
    cdef uchar c
    text = text.lower()
    PyUnicode_READY(text)
    if PyUnicode_IS_ASCII(text):
        return load_ascii(s, PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text))
    text = unicodedata.normalize("NFKD", text)
    PyUnicode_READY(text)
    n = PyUnicode_GET_LENGTH(text)
    kind, data = PyUnicode_KIND(text), PyUnicode_DATA(text)
    reserve(s, n)
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if not is_combining(c):
            s.a[m] = c
            m += 1
    return m


# ---------------------------------------------------------------------------------------------
# the regex passes of normalize.normalize_text / tokenize, each from t[:n] into out; each
# returns the length of its output

cdef inline Py_ssize_t emit(uchar *out, Py_ssize_t o, const uchar *text, Py_ssize_t n) noexcept:
    memcpy(out + o, text, n * sizeof(uchar))
    return o + n


cdef Py_ssize_t and_pass(const uchar *t, Py_ssize_t n, uchar *out) noexcept:
    """re.sub(r"\\s*&\\s*|\\s*\\+\\s*", " and ", t)"""
    cdef Py_ssize_t i = 0, j, o = 0
    while i < n:
        j = i
        while j < n and is_space(t[j]):
            j += 1
        if j < n and (t[j] == 38 or t[j] == 43):
            j += 1
            while j < n and is_space(t[j]):
                j += 1
            o = emit(out, o, AND_TEXT, 5)
            i = j
        elif j > i:
            # white space not followed by '&'/'+': no match starts anywhere inside it
            o = emit(out, o, t + i, j - i)
            i = j
        else:
            out[o] = t[i]
            o += 1
            i += 1
    return o


cdef Py_ssize_t n_form_pass(const uchar *t, Py_ssize_t n, uchar *out) noexcept:
    """re.sub(r"['’`´]n['’`´]?|\\bn['’`´]", " n ", t), then re.sub(r"['’`´]", "", ...)."""
    cdef Py_ssize_t i = 0, o = 0
    cdef uchar c
    while i < n:
        c = t[i]
        if is_apostrophe(c) and i + 1 < n and t[i + 1] == 110:   # 'n, 'n'
            i += 2
            if i < n and is_apostrophe(t[i]):
                i += 1
            o = emit(out, o, N_TEXT, 3)
        elif c == 110 and (i == 0 or not is_word(t[i - 1])) and i + 1 < n and is_apostrophe(t[i + 1]):  # n'
            i += 2
            o = emit(out, o, N_TEXT, 3)
        else:
            if not is_apostrophe(c):
                out[o] = c
                o += 1
            i += 1
    return o


cdef Py_ssize_t decade_suffix_end(const uchar *t, Py_ssize_t n, Py_ssize_t k) noexcept:
    """End of (s|er|ies|ties)\\b at k, or -1 (the alternatives begin with different letters)."""
    cdef Py_ssize_t e = -1
    if k < n:
        if t[k] == 115:                                                              # s
            e = k + 1
        elif t[k] == 101 and k + 1 < n and t[k + 1] == 114:                          # er
            e = k + 2
        elif t[k] == 105 and k + 2 < n and t[k + 1] == 101 and t[k + 2] == 115:      # ies
            e = k + 3
        elif (t[k] == 116 and k + 3 < n and t[k + 1] == 105 and t[k + 2] == 101      # ties
              and t[k + 3] == 115):
            e = k + 4
    if e < 0 or (e < n and is_word(t[e])):
        return -1
    return e


cdef Py_ssize_t decade_pass(const uchar *t, Py_ssize_t n, uchar *out) noexcept:
    """re.sub(r"\\b(\\d{2,4})[\\s\\-]+(s|er|ies|ties)\\b", r"\\1\\2", t)"""
    cdef Py_ssize_t i = 0, j, k, e, o = 0
    while i < n:
        if is_digit(t[i]) and (i == 0 or not is_word(t[i - 1])):
            j = i
            while j < n and is_digit(t[j]):
                j += 1
            # Only the whole run of digits can be followed by [\s-]; inside it there is no \b.
            if 2 <= j - i <= 4 and j < n and (is_space(t[j]) or t[j] == DASH):
                k = j
                while k < n and (is_space(t[k]) or t[k] == DASH):
                    k += 1
                e = decade_suffix_end(t, n, k)
                if e >= 0:
                    o = emit(out, o, t + i, j - i)
                    o = emit(out, o, t + k, e - k)
                    i = e
                    continue
            o = emit(out, o, t + i, j - i)
            i = j
        else:
            out[o] = t[i]
            o += 1
            i += 1
    return o


cdef uint64_t ascii_hash(const uchar *text, Py_ssize_t n) noexcept:
    # FNV-1a
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ text[i]) * 1099511628211ULL
    return h


cdef int grow_tokens(Scratch *s) except -1:
    """Twice the slots for the table of tokens made so far (s.slots[i] NULL: free)."""
    cdef Py_ssize_t size = 2 * (s.mask + 1) if s.slots != NULL else 1 << 16
    cdef Py_ssize_t i, j
    cdef PyObject **slots = <PyObject **> calloc(size, sizeof(PyObject *))
    cdef uint64_t *hashes = <uint64_t *> calloc(size, sizeof(uint64_t))
    if slots == NULL or hashes == NULL:
        free(slots)
        free(hashes)
        raise MemoryError()
    if s.slots != NULL:
        for i in range(s.mask + 1):
            if s.slots[i] != NULL:
                j = s.hashes[i] & (size - 1)
                while slots[j] != NULL:
                    j = (j + 1) & (size - 1)
                slots[j], hashes[j] = s.slots[i], s.hashes[i]
        free(s.slots)
        free(s.hashes)
    s.slots, s.hashes, s.mask = slots, hashes, size - 1
    return 0


cdef object make_token(Scratch *s, const uchar *text, Py_ssize_t n):
    """text[:n] as a str. An ASCII token (nearly every one) made before in this call is
    returned again, not made anew: a full job repeats its ~200k distinct tokens ~20 times,
    and one object per token spares the memory and the later hashing of every copy."""
    cdef Py_ssize_t i, j
    cdef uchar bits = 0
    cdef uint64_t h
    cdef unsigned char *data
    cdef PyObject *found
    for i in range(n):
        bits |= text[i]
    if bits >= 128:
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, text, n)
    if 2 * (s.used + 1) > s.mask + 1:
        grow_tokens(s)
    h = ascii_hash(text, n)
    j = h & s.mask
    while s.slots[j] != NULL:
        found = s.slots[j]
        if s.hashes[j] == h and PyUnicode_GET_LENGTH(<object> found) == n:
            data = PyUnicode_1BYTE_DATA(<object> found)
            i = 0
            while i < n and data[i] == text[i]:
                i += 1
            if i == n:
                return <object> found
        j = (j + 1) & s.mask
    token = PyUnicode_New(n, 127)
    data = PyUnicode_1BYTE_DATA(token)
    for i in range(n):
        data[i] = <unsigned char> text[i]
    Py_INCREF(token)   # the table's reference, given back in release_tokens
    s.slots[j], s.hashes[j] = <PyObject *> token, h
    s.used += 1
    return token


cdef void release_tokens(Scratch *s) noexcept:
    cdef Py_ssize_t i
    if s.slots != NULL:
        for i in range(s.mask + 1):
            Py_XDECREF(s.slots[i])
    free(s.slots)
    free(s.hashes)
    s.slots, s.hashes, s.mask, s.used = NULL, NULL, 0, 0


cdef int tokenize_loaded(Scratch *s, Py_ssize_t n, list tokens) except -1:
    """The rest of normalize.tokenize on the folded text s.a[:n]: the '&'/'+', "'n'" and
    apostrophe, and detached-decade passes, then the runs of [^\\W_], appended to tokens.
    A pass is skipped only where it could not match (as normalize's checks do)."""
    cdef Py_ssize_t i, start
    cdef uchar c
    cdef bint has_and = False, has_apostrophe = False, has_digit = False
    cdef uchar *swap
    for i in range(n):
        c = s.a[i]
        if c == 38 or c == 43:
            has_and = True
        elif is_apostrophe(c):
            has_apostrophe = True
        elif is_digit(c):
            has_digit = True
    if has_and:
        n = and_pass(s.a, n, s.b)
        s.a, s.b = s.b, s.a
    if has_apostrophe:
        n = n_form_pass(s.a, n, s.b)
        s.a, s.b = s.b, s.a
    if has_digit:
        n = decade_pass(s.a, n, s.b)
        s.a, s.b = s.b, s.a
    i = 0
    while i < n:
        if is_alnum(s.a[i]):
            start = i
            while i < n and is_alnum(s.a[i]):
                i += 1
            tokens.append(make_token(s, s.a + start, i - start))
        else:
            i += 1
    return 0


cdef int tokenize_into(Scratch *s, str tag, Py_ssize_t start, Py_ssize_t stop, list tokens) except -1:
    """normalize.tokenize(tag[start:stop]), appended to tokens."""
    cdef Py_ssize_t n
    if PyUnicode_IS_ASCII(tag):
        n = load_ascii(s, PyUnicode_1BYTE_DATA(tag) + start, stop - start)
    else:
        n = load_folded(s, tag if start == 0 and stop == PyUnicode_GET_LENGTH(tag)
                        else PyUnicode_Substring(tag, start, stop))
    return tokenize_loaded(s, n, tokens)


# ---------------------------------------------------------------------------------------------
# separated tags

cdef Py_ssize_t separator_end(int kind, void *t, Py_ssize_t hi, Py_ssize_t i) noexcept:
    """End of a match of r"\\s+-+\\s*|\\s*-+\\s+" at i (-1 for none): white space, dashes,
    white space, with white space on at least one side (greedy runs, nothing to backtrack
    into: each run ends where the next kind of character begins)."""
    cdef Py_ssize_t j = i, k, e
    while j < hi and is_space(PyUnicode_READ(kind, t, j)):
        j += 1
    if j >= hi or PyUnicode_READ(kind, t, j) != DASH:
        return -1
    k = j
    while k < hi and PyUnicode_READ(kind, t, k) == DASH:
        k += 1
    e = k
    while e < hi and is_space(PyUnicode_READ(kind, t, e)):
        e += 1
    if j > i or e > k:
        return e
    return -1


cdef bint blank_part(int kind, void *t, Py_ssize_t start, Py_ssize_t stop) noexcept:
    """part.strip(" -") == ''"""
    cdef Py_ssize_t p
    for p in range(start, stop):
        if not is_strip_char(PyUnicode_READ(kind, t, p)):
            return False
    return True


cdef list tokens_with_separators(Scratch *s, str tag):
    """collapse.tokens_with_separators(tag) for a tag holding a '-': the tag stripped of ' '
    and '-' is split at separators and parts that strip to nothing are dropped; with fewer
    than two parts left the whole tag is tokenised, else each part, with a SEPARATOR token
    between parts that have tokens."""
    cdef int kind = PyUnicode_KIND(tag)
    cdef void *t = PyUnicode_DATA(tag)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(tag), lo = 0, hi = n, i, e, start, before
    cdef list parts = []   # (start, stop) of each part kept
    cdef list tokens = []
    while lo < hi and is_strip_char(PyUnicode_READ(kind, t, lo)):
        lo += 1
    while hi > lo and is_strip_char(PyUnicode_READ(kind, t, hi - 1)):
        hi -= 1
    start = i = lo
    while i < hi:
        e = separator_end(kind, t, hi, i)
        if e >= 0:
            if not blank_part(kind, t, start, i):
                parts.append((start, i))
            start = i = e
        elif is_space(PyUnicode_READ(kind, t, i)):
            # No match starts inside white space not followed by a dash ...
            while i < hi and is_space(PyUnicode_READ(kind, t, i)):
                i += 1
        elif PyUnicode_READ(kind, t, i) == DASH:
            # ... nor inside dashes with white space on neither side.
            while i < hi and PyUnicode_READ(kind, t, i) == DASH:
                i += 1
        else:
            i += 1
    if not blank_part(kind, t, start, hi):
        parts.append((start, hi))
    if len(parts) < 2:
        tokenize_into(s, tag, 0, n, tokens)
        return tokens
    for start, e in parts:
        before = len(tokens)
        if before:
            tokens.append("-")
        tokenize_into(s, tag, start, e, tokens)
        if before and len(tokens) == before + 1:
            del tokens[before]   # a part without tokens adds no SEPARATOR
    return tokens


def tag_tokens(list tags, object fallback):
    """[tokens of each tag] (a new list each), as collapse.tokens_with_separators reads it;
    `fallback(tag)` (that reference) answers for anything that is not a str. The lists made
    here are not tracked by the cyclic GC (they hold only str), so that collections, where
    GC is on, do not walk 522k of them again and again."""
    cdef Py_ssize_t k, count = PyList_GET_SIZE(tags)
    cdef bint dashed
    cdef list out = [None] * count
    cdef list tokens
    cdef object tag
    cdef Scratch s
    s.a = s.b = NULL
    s.size = 0
    s.slots, s.hashes, s.mask, s.used = NULL, NULL, 0, 0
    try:
        for k in range(count):
            tag = <object> PyList_GET_ITEM(tags, k)
            if type(tag) is not str:
                out[k] = fallback(tag)
                continue
            PyUnicode_READY(tag)
            if PyUnicode_IS_ASCII(tag):
                dashed = memchr(PyUnicode_1BYTE_DATA(tag), DASH, PyUnicode_GET_LENGTH(tag)) != NULL
            else:
                dashed = "-" in tag
            if dashed:
                tokens = tokens_with_separators(&s, tag)
            else:
                tokens = []
                tokenize_into(&s, tag, 0, PyUnicode_GET_LENGTH(tag), tokens)
            # A list of str can be in no reference cycle: the cyclic GC need never walk it.
            PyObject_GC_UnTrack(tokens)
            out[k] = tokens
        return out
    finally:
        free(s.a)
        free(s.b)
        release_tokens(&s)
