# cython: language_level=3, boundscheck=False, wraparound=False
"""Stage II's inner loops, compiled: word segmentation (TrieSegmenter: unigram Viterbi over a
trie of the words) and phrase matching (PhraseMatcher: every tag's word sequence against the
phrase tables, which come from the rule code's RuleSet as plain data, so a rule table change
needs no kernel change).

Plain references: native/stage2.py's segment_ref for TrieSegmenter, and for PhraseMatcher the
rule code's own _match_words (tagfold.pipeline.tags.collapse, the documented meaning) called
once per distinct reading by native/stage2.py's match_tags_ref; tests hold each pair equal.
"""
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.set cimport PySet_Contains
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_READ
from libc.math cimport INFINITY
from libc.stdint cimport INT32_MAX, int32_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from itertools import accumulate


# ---------------------------------------------------------------------------------------------
# word segmentation

# One edge of the word trie, in an open-addressing hash table keyed by (parent node, character):
# a walk step is one probe, not a new substring hashed and looked up in a dict and a set.
cdef struct Edge:
    uint64_t key     # (parent node << 21 | code point) + 1; 0 marks a free slot
    double cost      # the cost of the word the walk has spelt here; INFINITY when it is none
    int32_t child    # the node the edge leads to

cdef struct Step:   # the dynamic programme's state at one position of the token
    double best
    Py_ssize_t back
    char is_word


cdef inline uint64_t _edge_key(int32_t node, uint32_t c) noexcept:
    return ((<uint64_t> node) << 21 | c) + 1     # code points are at most 0x10FFFF < 2**21


cdef inline Py_ssize_t _slot(uint64_t key, Py_ssize_t mask) noexcept:
    # murmur3's finaliser: neighbouring keys (one parent's children) land far apart
    key ^= key >> 33
    key *= 0xff51afd7ed558ccdULL
    key ^= key >> 33
    return <Py_ssize_t> (key & <uint64_t> mask)


cdef class TrieSegmenter:
    """Split a token into words by minimum total cost: segment_ref (native/stage2.py) with
    prefixes = word_prefixes(cost, max_word_len), built once from `cost` (a mapping of str
    words to costs); each walk step is one hash probe, not a new substring looked up in a set
    and a dict.

    The trie holds the first max_word_len characters of every word of `cost`, so its nodes
    are exactly those prefixes (the walk goes on while it finds an edge) and a word no longer
    than max_word_len puts its cost on its last edge. A piece that is no word costs INFINITY:
    here + INFINITY (INFINITY or NaN) never improves a position, as a missing word never does
    in segment_ref. Calls make the same float additions and comparisons in the same order, so
    ties break alike.
    """
    cdef Edge *edges
    cdef Py_ssize_t mask, n_edges
    cdef double unknown_char_cost
    cdef Py_ssize_t max_word_len

    def __cinit__(self, cost, double unknown_char_cost, Py_ssize_t max_word_len):
        cdef Py_ssize_t size = 1024, i, n, j = 0
        cdef int32_t node
        cdef int kind
        cdef void *data
        cdef str word
        self.unknown_char_cost = unknown_char_cost
        self.max_word_len = max_word_len
        while size < 4 * len(cost):        # ~2.5 prefixes per word in the package's tables
            size *= 2
        self.edges = <Edge *> calloc(size, sizeof(Edge))
        if self.edges == NULL:
            raise MemoryError()
        self.mask = size - 1
        for word, w in cost.items():
            n = PyUnicode_GET_LENGTH(word)
            if n > max_word_len:
                n = max(max_word_len, 0)
            kind, data = PyUnicode_KIND(word), PyUnicode_DATA(word)
            node = 0
            for i in range(n):
                j = self._edge(node, <uint32_t> PyUnicode_READ(kind, data, i))
                node = self.edges[j].child
            if n and n == PyUnicode_GET_LENGTH(word):
                self.edges[j].cost = w

    def __dealloc__(self):
        free(self.edges)

    cdef Py_ssize_t _edge(self, int32_t node, uint32_t c) except -1:
        """The slot of the edge (node, c), added (leading to a new node) when missing."""
        cdef uint64_t key = _edge_key(node, c)
        cdef Py_ssize_t j = _slot(key, self.mask)
        while self.edges[j].key != 0:
            if self.edges[j].key == key:
                return j
            j = (j + 1) & self.mask
        if 2 * (self.n_edges + 1) > self.mask + 1:     # keep the table at most half full
            self._grow()
            return self._edge(node, c)
        if self.n_edges + 1 >= INT32_MAX:
            raise MemoryError("segmentation trie: too many nodes")
        self.n_edges += 1
        self.edges[j].key = key
        self.edges[j].cost = INFINITY
        self.edges[j].child = <int32_t> self.n_edges   # node 0 is the root
        return j

    cdef int _grow(self) except -1:
        cdef Py_ssize_t old_size = self.mask + 1, i, j
        cdef Edge *old = self.edges
        cdef Edge *edges = <Edge *> calloc(2 * old_size, sizeof(Edge))
        if edges == NULL:
            raise MemoryError()
        self.edges, self.mask = edges, 2 * old_size - 1
        for i in range(old_size):
            if old[i].key != 0:
                j = _slot(old[i].key, self.mask)
                while edges[j].key != 0:
                    j = (j + 1) & self.mask
                edges[j] = old[i]
        free(old)
        return 0

    def __call__(self, str token):
        """Words of `token` in order; characters not covered by any word are left out."""
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(token), start, end, stop, j
        cdef int kind = PyUnicode_KIND(token)
        cdef void *data = PyUnicode_DATA(token)
        cdef double here, w
        cdef uint64_t key
        cdef int32_t node
        cdef Edge *edges = self.edges
        cdef Py_ssize_t mask = self.mask
        cdef Step *steps = <Step *> malloc((n + 1) * sizeof(Step))
        if steps == NULL:
            raise MemoryError()
        try:
            for j in range(n + 1):
                steps[j].best = INFINITY
                steps[j].back = 0
                steps[j].is_word = 0
            steps[0].best = 0.0
            for start in range(n):
                here = steps[start].best
                if here == INFINITY:
                    continue
                # one uncovered character
                if here + self.unknown_char_cost < steps[start + 1].best:
                    steps[start + 1].best = here + self.unknown_char_cost
                    steps[start + 1].back = start
                    steps[start + 1].is_word = 0
                stop = start + self.max_word_len
                if stop > n:
                    stop = n
                node = 0
                for end in range(start + 1, stop + 1):
                    key = _edge_key(node, <uint32_t> PyUnicode_READ(kind, data, end - 1))
                    j = _slot(key, mask)
                    while edges[j].key != key and edges[j].key != 0:
                        j = (j + 1) & mask
                    if edges[j].key == 0:
                        break        # no word starts with token[start:end]
                    w = edges[j].cost
                    if here + w < steps[end].best:
                        steps[end].best = here + w
                        steps[end].back = start
                        steps[end].is_word = 1
                    node = edges[j].child
            words = []
            end = n
            while end > 0:
                start = steps[end].back
                if steps[end].is_word:
                    words.append(token[start:end])
                end = start
            words.reverse()
            return words
        finally:
            free(steps)


# ---------------------------------------------------------------------------------------------
# phrase matching

# What matching needs to know of one (word, rule) pair, worked out once per distinct token.
cdef enum:
    IS_SEPARATOR = 1
    IS_NEGATOR = 2
    NOT_DESCRIPTOR = 4   # the word does not describe music
    NAMES_A_WORK = 8     # ... and, read in a gap, makes its part a name (a word, or rule name_gap)
    IS_PRONOUN = 16
    READ_AS_IS = 32      # its rule is exact_word

cdef struct Word:
    int id       # index among the phrase words; -1 for any other word
    int rank     # rank of its rule among word_rules; -1 for any other rule
    int flags

cdef struct Found:
    int target
    int rule


cdef void *_grown(void *p, Py_ssize_t *cap, Py_ssize_t need, size_t item) except NULL:
    """`p` with room for at least `need` items of `item` bytes (the capacity at least doubles)."""
    cdef Py_ssize_t new_cap
    cdef void *q
    if need <= cap[0] and p != NULL:
        return p
    new_cap = max(need, 2 * cap[0], 16)
    q = realloc(p, new_cap * item)
    if q == NULL:
        raise MemoryError()
    cap[0] = new_cap
    return q


cdef class PhraseMatcher:
    """One tag's word sequence -> its codes, target * code_stride + rule: the compiled form of
    collapse._match_words, built from RuleSet's tables as plain data (collapse._matcher_tables).

    Read left to right, the longest phrase starting at a word wins; a phrase right after a
    negator gives nothing; the pronoun is a phrase of its own only as the first word, read as
    is (exact_word), of a longer sequence; in a sequence holding the separator, a part holding
    a word that does not describe music (not in `descriptors`; in a gap, a word or a gap of
    rule name_gap) gives nothing. Targets are kept once, at their first appearance, with that
    appearance's rule: the least certain word rule among the phrase's words (`word_rules` lists
    them least certain first), else the phrase's own (exact_rule becomes phrase_rule for
    phrases of several words). Then each compound (c, a, b) whose halves a and b were both
    found replaces them, at the first one's place, with compound_rule.
    """
    # The phrase trie over word ids: node 0 is the root, root_child[id] its child for a word
    # (-1: none); a deeper node's children are child_word/child_node[child_start[node]:
    # child_start[node + 1]]; a phrase ends at a node when is_phrase[node], with node_rule and
    # targets[target_start[node]:target_start[node + 1]].
    cdef int *root_child
    cdef int *child_start
    cdef int *child_word
    cdef int *child_node
    cdef char *is_phrase
    cdef int *node_rule
    cdef int *target_start
    cdef int *targets
    cdef dict word_ids, word_rule_rank
    cdef frozenset negators, descriptors
    cdef str separator, name_gap, pronoun, exact_word
    cdef int *word_rule_code
    cdef int *compounds
    cdef Py_ssize_t n_compounds, n_targets, stride
    cdef int compound_rule
    # one match's buffers, kept between matches
    cdef Found *found
    cdef Py_ssize_t found_cap
    cdef Word *words
    cdef Py_ssize_t words_cap
    cdef char *seen
    cdef int *out_t
    cdef int *out_r

    def __init__(self, dict phrases, negators, descriptors, dict word_rules, compounds, *,
                 Py_ssize_t n_targets, Py_ssize_t code_stride, int exact_rule, int phrase_rule,
                 int compound_rule, str separator, str name_gap, str pronoun, str exact_word):
        """phrases: word tuple -> (target indices, rule code; any int for a blocker, which has
        no targets); word_rules: word rule name -> rule code, least certain first; compounds:
        (compound, a, b) target indices (none when compounds are not merged); targets are
        0..n_targets-1, rule codes 0..code_stride-1."""
        cdef Py_ssize_t k, node, n_nodes, n_words
        if n_targets < 0 or code_stride < 1:
            raise ValueError(f"n_targets {n_targets}, code_stride {code_stride}: expected >= 0 and >= 1")
        self.n_targets, self.stride = n_targets, code_stride
        for code in (exact_rule, phrase_rule, compound_rule, *word_rules.values()):
            self._check_rule(code)
        self.compound_rule = compound_rule
        self.separator, self.name_gap, self.pronoun, self.exact_word = separator, name_gap, pronoun, exact_word
        self.negators, self.descriptors = frozenset(negators), frozenset(descriptors)
        self.word_rule_rank = {name: k for k, name in enumerate(word_rules)}
        self.word_rule_code = self._ints([self._check_rule(c) for c in word_rules.values()])
        self.compounds = self._ints([self._check_target(t) for triple in compounds for t in triple])
        self.n_compounds = len(compounds)
        self.seen = <char *> malloc(max(1, n_targets))
        self.out_t = <int *> malloc(max(1, n_targets) * sizeof(int))
        self.out_r = <int *> malloc(max(1, n_targets) * sizeof(int))
        if self.seen == NULL or self.out_t == NULL or self.out_r == NULL:
            raise MemoryError()
        memset(self.seen, 0, max(1, n_targets))
        # the trie as Python lists first, then flat arrays
        self.word_ids = {}
        children, rules, ends = [{}], [0], [None]
        for key, (found, rule) in phrases.items():
            if not isinstance(key, tuple) or not key or not all(isinstance(w, str) for w in key):
                raise ValueError(f"phrase {key!r}: expected a non-empty tuple of words (str)")
            node = 0
            for word in key:
                wid = self.word_ids.setdefault(word, len(self.word_ids))
                if wid not in children[node]:
                    children[node][wid] = len(children)
                    children.append({})
                    rules.append(0)
                    ends.append(None)
                node = children[node][wid]
            found = [self._check_target(t) for t in found]
            if found:  # a blocker's rule is never reported
                self._check_rule(rule)
            rules[node] = phrase_rule if len(key) > 1 and rule == exact_rule else rule
            ends[node] = found
        n_nodes, n_words = len(children), len(self.word_ids)
        self.root_child = self._ints([children[0].get(w, -1) for w in range(n_words)])
        inner = [sorted(children[node].items()) if node else [] for node in range(n_nodes)]
        self.child_start = self._ints([0] + list(accumulate(map(len, inner))))
        self.child_word = self._ints([w for kids in inner for w, _ in kids])
        self.child_node = self._ints([c for kids in inner for _, c in kids])
        self.is_phrase = <char *> malloc(n_nodes)
        if self.is_phrase == NULL:
            raise MemoryError()
        for node in range(n_nodes):
            self.is_phrase[node] = ends[node] is not None
        self.node_rule = self._ints(rules)
        ends = [e or [] for e in ends]
        self.target_start = self._ints([0] + list(accumulate(map(len, ends))))
        self.targets = self._ints([t for e in ends for t in e])

    cdef int *_ints(self, list values) except NULL:
        cdef int *p = <int *> malloc(max(1, len(values)) * sizeof(int))
        cdef Py_ssize_t k
        if p == NULL:
            raise MemoryError()
        for k in range(len(values)):
            p[k] = values[k]
        return p

    cdef int _check_target(self, Py_ssize_t target) except -1:
        if not 0 <= target < self.n_targets:
            raise ValueError(f"target {target} is outside 0..{self.n_targets - 1}")
        return <int> target

    cdef int _check_rule(self, Py_ssize_t rule) except -1:
        if not 0 <= rule < self.stride:
            raise ValueError(f"rule code {rule} is outside 0..{self.stride - 1}")
        return <int> rule

    def __dealloc__(self):
        free(self.root_child)
        free(self.child_start)
        free(self.child_word)
        free(self.child_node)
        free(self.is_phrase)
        free(self.node_rule)
        free(self.target_start)
        free(self.targets)
        free(self.word_rule_code)
        free(self.compounds)
        free(self.found)
        free(self.words)
        free(self.seen)
        free(self.out_t)
        free(self.out_r)

    cdef int _encode(self, object pair, Word *out) except -1:
        """What matching needs of one (word, rule) pair."""
        cdef PyObject *found
        cdef int flags = 0
        if not isinstance(pair, tuple) or PyTuple_GET_SIZE(pair) != 2:
            raise TypeError(f"a word is a (word, rule) pair of strings, got {pair!r}")
        word, rule = <object> PyTuple_GET_ITEM(pair, 0), <object> PyTuple_GET_ITEM(pair, 1)
        if not isinstance(word, str) or not isinstance(rule, str):
            raise TypeError(f"a word is a (word, rule) pair of strings, got {pair!r}")
        found = PyDict_GetItem(self.word_ids, word)
        out.id = <int> <object> found if found != NULL else -1
        found = PyDict_GetItem(self.word_rule_rank, rule)
        out.rank = <int> <object> found if found != NULL else -1
        if word == self.separator:
            flags |= IS_SEPARATOR
        if PySet_Contains(self.negators, word):
            flags |= IS_NEGATOR
        if not PySet_Contains(self.descriptors, word):
            flags |= NOT_DESCRIPTOR
            if len(<str> word) > 0 or rule == self.name_gap:
                flags |= NAMES_A_WORK
        if word == self.pronoun:
            flags |= IS_PRONOUN
        if rule == self.exact_word:
            flags |= READ_AS_IS
        out.flags = flags
        return 0

    cdef inline int _child(self, int node, int word) noexcept:
        cdef int k
        if word < 0:
            return -1
        if node == 0:
            return self.root_child[word]
        for k in range(self.child_start[node], self.child_start[node + 1]):
            if self.child_word[k] == word:
                return self.child_node[k]
        return -1

    cdef Py_ssize_t _match(self, const Word *w, Py_ssize_t n) except -1:
        """Matches w[0:n]; its (target, rule) pairs are out_t/out_r[0:returned count]."""
        cdef Py_ssize_t i, j, k, m, length, n_found = 0, segment_start = 0, negate_at = -1
        cdef bint separated = False, names_a_work = False
        cdef int node, best, rule, rank, t, a, b, c, flags
        for i in range(n):
            if w[i].flags & IS_SEPARATOR:
                separated = True
                break
        i = 0
        while i < n:
            flags = w[i].flags
            if separated:
                if flags & IS_SEPARATOR:
                    if names_a_work:
                        n_found = segment_start
                    segment_start, names_a_work = n_found, False
                    i += 1
                    continue
                if flags & NAMES_A_WORK:
                    names_a_work = True
            if flags & IS_NEGATOR:
                negate_at = i + 1
                i += 1
                continue
            # the longest phrase starting here (the most specific reading)
            best, length = -1, 0
            node = self._child(0, w[i].id)
            j = i
            while node >= 0:
                j += 1
                if self.is_phrase[node]:
                    best, length = node, j - i
                if j >= n:
                    break
                node = self._child(node, w[j].id)
            if length == 1 and flags & IS_PRONOUN and (i != 0 or n == 1 or not flags & READ_AS_IS):
                best = -1  # 'us' is also the English pronoun
            if best < 0:
                i += 1
                continue
            if i != negate_at:
                rule, rank = self.node_rule[best], -1
                for k in range(i, i + length):
                    if w[k].rank >= 0 and (rank < 0 or w[k].rank < rank):
                        rank = w[k].rank
                if rank >= 0:
                    rule = self.word_rule_code[rank]
                k = self.target_start[best + 1] - self.target_start[best]
                self.found = <Found *> _grown(self.found, &self.found_cap, n_found + k, sizeof(Found))
                for k in range(self.target_start[best], self.target_start[best + 1]):
                    self.found[n_found].target = self.targets[k]
                    self.found[n_found].rule = rule
                    n_found += 1
            if separated:
                for k in range(i + 1, i + length):
                    if w[k].flags & NOT_DESCRIPTOR:
                        names_a_work = True  # 'iggy pop', 'red hot chili peppers'
            i += length
        if separated and names_a_work:
            n_found = segment_start
        # each target once, at its first appearance
        m = 0
        for k in range(n_found):
            t = self.found[k].target
            if not self.seen[t]:
                self.seen[t] = 1
                self.out_t[m] = t
                self.out_r[m] = self.found[k].rule
                m += 1
        # a compound whose two halves were both found replaces them, at the first one's place
        for k in range(self.n_compounds):
            c, a, b = self.compounds[3 * k], self.compounds[3 * k + 1], self.compounds[3 * k + 2]
            if self.seen[a] and self.seen[b] and not self.seen[c]:
                j = 0
                for i in range(m):
                    t = self.out_t[i]
                    if t == a or t == b:
                        if self.seen[c]:
                            continue
                        self.seen[c] = 1
                        t, self.out_r[j] = c, self.compound_rule
                    else:
                        self.out_r[j] = self.out_r[i]
                    self.out_t[j] = t
                    j += 1
                m = j
                self.seen[a] = 0
                self.seen[b] = 0
                self.seen[c] = 1
        for k in range(m):
            self.seen[self.out_t[k]] = 0
        return m

    def __call__(self, tuple key):
        """The codes of one sequence of (word, rule) pairs, in order."""
        cdef Py_ssize_t i, m, n = PyTuple_GET_SIZE(key)
        self.words = <Word *> _grown(self.words, &self.words_cap, n, sizeof(Word))
        for i in range(n):
            self._encode(<object> PyTuple_GET_ITEM(key, i), &self.words[i])
        m = self._match(self.words, n)
        return [self.out_t[i] * self.stride + self.out_r[i] for i in range(m)]

    def match_range(self, list token_lists, Py_ssize_t start, Py_ssize_t stop, dict words, str mark):
        """(tag ids, codes) as int32 bytes, one item per code, for token_lists[start:stop], each
        tag read as the concatenation of its tokens' `words` ((word, rule) pairs; a token ending
        in `mark` has its words under the token without it). Tags with no phrase word are
        skipped. Every token must be in `words`."""
        cdef Py_ssize_t tag_id, i, k, m, n, n_toks, n_hits = 0, n_tokens = 0, n_encoded = 0
        cdef Py_ssize_t tok_cap = 0, enc_cap = 0, tag_cap = 0, hit_cap = 0
        cdef Py_ssize_t mark_len = len(mark)
        cdef list toks
        cdef tuple part
        cdef bint hit
        cdef PyObject *found
        # per distinct token: holds a phrase word?, where its words are in `encoded`
        cdef char *tok_relevant = NULL
        cdef Py_ssize_t *tok_start = NULL
        cdef Py_ssize_t *tok_len = NULL
        cdef Py_ssize_t *tag_toks = NULL
        cdef Word *encoded = NULL
        cdef int *hit_ids = NULL
        cdef int *hit_codes = NULL
        cdef Py_ssize_t cap
        if not 0 <= start <= stop <= len(token_lists):
            raise ValueError(f"tag range {start}..{stop} is outside 0..{len(token_lists)}")
        index = {}
        try:
            for tag_id in range(start, stop):
                toks = token_lists[tag_id]
                n_toks = PyList_GET_SIZE(toks)
                tag_toks = <Py_ssize_t *> _grown(tag_toks, &tag_cap, n_toks, sizeof(Py_ssize_t))
                hit = False
                for i in range(n_toks):
                    tok = <object> PyList_GET_ITEM(toks, i)
                    found = PyDict_GetItem(index, tok)
                    if found != NULL:
                        k = <object> found
                    else:
                        k = n_tokens
                        cap = tok_cap
                        tok_relevant = <char *> _grown(tok_relevant, &cap, k + 1, sizeof(char))
                        cap = tok_cap
                        tok_start = <Py_ssize_t *> _grown(tok_start, &cap, k + 1, sizeof(Py_ssize_t))
                        cap = tok_cap
                        tok_len = <Py_ssize_t *> _grown(tok_len, &cap, k + 1, sizeof(Py_ssize_t))
                        tok_cap = cap
                        if mark_len and isinstance(tok, str) and (<str> tok).endswith(mark):
                            part = words[(<str> tok)[:len(<str> tok) - mark_len]]
                        else:
                            part = words[tok]
                        encoded = <Word *> _grown(encoded, &enc_cap, n_encoded + len(part), sizeof(Word))
                        tok_relevant[k] = False
                        for m in range(len(part)):
                            self._encode(part[m], &encoded[n_encoded + m])
                            tok_relevant[k] = tok_relevant[k] or encoded[n_encoded + m].id >= 0
                        tok_start[k], tok_len[k] = n_encoded, len(part)
                        n_encoded += len(part)
                        index[tok] = k
                        n_tokens += 1
                    tag_toks[i] = k
                    hit = hit or tok_relevant[k]
                if not hit:
                    continue
                n = 0
                for i in range(n_toks):
                    n += tok_len[tag_toks[i]]
                self.words = <Word *> _grown(self.words, &self.words_cap, n, sizeof(Word))
                n = 0
                for i in range(n_toks):
                    k = tag_toks[i]
                    memcpy(&self.words[n], &encoded[tok_start[k]], tok_len[k] * sizeof(Word))
                    n += tok_len[k]
                m = self._match(self.words, n)
                cap = hit_cap
                hit_ids = <int *> _grown(hit_ids, &cap, n_hits + m, sizeof(int))
                cap = hit_cap
                hit_codes = <int *> _grown(hit_codes, &cap, n_hits + m, sizeof(int))
                hit_cap = cap
                for i in range(m):
                    hit_ids[n_hits] = <int> tag_id
                    hit_codes[n_hits] = self.out_t[i] * <int> self.stride + self.out_r[i]
                    n_hits += 1
            if n_hits == 0:
                return b"", b""
            return (<char *> hit_ids)[:n_hits * sizeof(int)], (<char *> hit_codes)[:n_hits * sizeof(int)]
        finally:
            free(tok_relevant)
            free(tok_start)
            free(tok_len)
            free(tag_toks)
            free(encoded)
            free(hit_ids)
            free(hit_codes)
