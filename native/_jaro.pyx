# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Bulk Jaro-Winkler (rapidfuzz semantics) of many queries against one vocabulary.

Strings arrive as uint32 buffers of *character ids* plus int64 offsets (see jaro_winkler.py):
ids are ranks in the vocabulary's sorted alphabet, and a query character that never occurs in
the vocabulary gets the sentinel id `n_alpha`. Dense ids make the bit-parallel match table a
flat array per thread, and the loops run without the GIL on every core.

Per pair, cheapest test first; each is a safe upper bound, so no pair that could reach the
cutoff is ever skipped:
1. character-set filter (one popcount, branch-free, over the whole vocabulary): an upper
   bound on the common characters from 64-bit character-set masks, against a per-query table
   of how many common characters each vocabulary length needs to reach the cutoff;
2. the same bound as a score, with the pair's actual common prefix, against the cutoff or
   (best_match) the best score so far;
3. bit-parallel Jaro (64-bit masks) when both strings have <= 64 characters, else the plain
   O(n * window) loop. Scores are computed with rapidfuzz's operation order: bit-identical.
Each query is handled by exactly one thread walking the vocabulary in index order, so the
result cannot depend on thread count or scheduling.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset
from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t, int32_t, int64_t
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from *:
    """
    static inline int tf_popcount64(unsigned long long x) { return __builtin_popcountll(x); }
    static inline int tf_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    """
    int tf_popcount64(unsigned long long x) nogil
    int tf_ctz64(unsigned long long x) nogil

# Slack on the pruning bound: the bound is evaluated with reciprocals, so it may round a few
# ulps away from the exact formula; never skip a pair that might tie at the cutoff.
cdef double BOUND_SLACK = 1e-9
# Vocabulary lengths with their own entry in the per-query need table.
cdef Py_ssize_t MAX_NEED_LEN = 256
# Score-bound buckets for best_match's branch and bound.
DEF N_BUCKETS = 128


cdef inline double jaro_from_counts(Py_ssize_t la, Py_ssize_t lb, Py_ssize_t m, Py_ssize_t t) noexcept nogil:
    # Same operation order as rapidfuzz's jaro_calculate_similarity, so scores are bit-identical.
    cdef double sim = 0.0
    t = t // 2
    sim += <double>m / <double>la
    sim += <double>m / <double>lb
    sim += (<double>m - <double>t) / <double>m
    return sim / 3.0


cdef inline Py_ssize_t jaro_bound(Py_ssize_t la, Py_ssize_t lb) noexcept nogil:
    cdef Py_ssize_t bound = (lb if lb > la else la) // 2 - 1
    return bound if bound > 0 else 0


cdef double jaro_word(const uint64_t* PM, Py_ssize_t la,
                      const uint32_t* b, Py_ssize_t lb, double jaro_cutoff) noexcept nogil:
    """Jaro of the query (match table PM, la <= 64) and b (lb <= 64), bit-parallel."""
    cdef Py_ssize_t bound = jaro_bound(la, lb)
    cdef Py_ssize_t j, m, t = 0, l_text = lb
    cdef uint64_t bound_mask, pm_j, p_flag = 0, t_flag = 0, p_bit
    cdef double sim
    if l_text > la + bound:
        l_text = la + bound  # characters beyond the window of every query position never match
    bound_mask = (<uint64_t> 1 << (bound + 1)) - 1
    for j in range(l_text):
        pm_j = PM[b[j]] & bound_mask & ~p_flag
        p_flag |= pm_j & (~pm_j + 1)
        t_flag |= (<uint64_t> (pm_j != 0)) << j
        if j < bound:
            bound_mask = (bound_mask << 1) | 1
        else:
            bound_mask <<= 1
    m = tf_popcount64(p_flag)
    if m == 0:
        return 0.0
    if jaro_from_counts(la, lb, m, 0) < jaro_cutoff:
        return 0.0
    while t_flag:
        p_bit = p_flag & (~p_flag + 1)
        if not (PM[b[tf_ctz64(t_flag)]] & p_bit):
            t += 1
        t_flag &= t_flag - 1
        p_flag ^= p_bit
    sim = jaro_from_counts(la, lb, m, t)
    return sim if sim >= jaro_cutoff else 0.0


cdef double jaro_plain(const uint32_t* a, Py_ssize_t la, const uint32_t* b, Py_ssize_t lb,
                       double jaro_cutoff, unsigned char* fa, unsigned char* fb) noexcept nogil:
    """Jaro for strings longer than 64 characters; the loop of rapidfuzz's pure-Python Jaro."""
    cdef Py_ssize_t bound = jaro_bound(la, lb)
    cdef Py_ssize_t i, j, lo, hi, k = 0, m = 0, t = 0, l_pat = la, l_text = lb
    cdef double sim
    if l_text > la + bound:
        l_text = la + bound
    if l_pat > lb + bound:
        l_pat = lb + bound
    memset(fa, 0, l_pat)
    memset(fb, 0, l_text)
    for i in range(l_pat):
        lo = i - bound if i > bound else 0
        hi = i + bound + 1
        if hi > l_text:
            hi = l_text
        for j in range(lo, hi):
            if not fb[j] and a[i] == b[j]:
                fa[i] = 1
                fb[j] = 1
                m += 1
                break
    if m == 0:
        return 0.0
    if jaro_from_counts(la, lb, m, 0) < jaro_cutoff:
        return 0.0
    for i in range(l_pat):
        if fa[i]:
            while not fb[k]:
                k += 1
            if a[i] != b[k]:
                t += 1
            k += 1
    sim = jaro_from_counts(la, lb, m, t)
    return sim if sim >= jaro_cutoff else 0.0


cdef inline double jaro_cutoff_for(int prefix, double prefix_weight, double score_cutoff) noexcept nogil:
    # rapidfuzz converts the Jaro-Winkler cutoff into a Jaro cutoff; replicated so that scores
    # that sit exactly on the cutoff are accepted or rejected exactly as rapidfuzz does.
    cdef double prefix_sim, c
    if score_cutoff <= 0.7:
        return score_cutoff
    prefix_sim = prefix * prefix_weight
    if prefix_sim >= 1.0:
        return 0.7
    c = (prefix_sim - score_cutoff) / (prefix_sim - 1.0)
    return c if c > 0.7 else 0.7


cdef double jaro_winkler_pair(const uint32_t* a, Py_ssize_t la, const uint32_t* b, Py_ssize_t lb,
                              const uint64_t* PM, double prefix_weight, double score_cutoff,
                              const double* jaro_cutoffs, unsigned char* fa, unsigned char* fb) noexcept nogil:
    """rapidfuzz JaroWinkler.similarity(a, b, score_cutoff=...); PM is NULL unless la <= 64.

    jaro_cutoffs[p] = jaro_cutoff_for(p, ...) for a common prefix of p characters.
    """
    cdef int prefix = 0
    cdef double sim
    if la == 0 and lb == 0:
        return 1.0
    if la == 0 or lb == 0:
        return 0.0
    while prefix < 4 and prefix < la and prefix < lb and a[prefix] == b[prefix]:
        prefix += 1
    if PM != NULL and lb <= 64:
        sim = jaro_word(PM, la, b, lb, jaro_cutoffs[prefix])
    else:
        sim = jaro_plain(a, la, b, lb, jaro_cutoffs[prefix], fa, fb)
    if sim > 0.7:
        sim += prefix * prefix_weight * (1.0 - sim)
        if sim > 1.0:
            sim = 1.0
    return sim if sim >= score_cutoff else 0.0


cdef inline uint64_t char_bit(uint32_t cid) noexcept nogil:
    # Ids are ranks of the vocabulary's sorted code points, so the few dozen characters of
    # real tags land on distinct bits.
    return (<uint64_t> 1) << (cid & 63)


def to_ids(const uint32_t[::1] code_points, const uint32_t[::1] alphabet, int threads):
    """Rank of each code point in the sorted alphabet, len(alphabet) when absent; plus one
    trailing padding id so that an all-empty buffer still has an element 0 to point at."""
    cdef Py_ssize_t n = code_points.shape[0], n_alpha = alphabet.shape[0], i, lo, hi, mid
    cdef uint32_t c
    # Dense table for the Basic Multilingual Plane (nearly every tag character); binary search beyond.
    cdef cnp.ndarray[cnp.uint32_t, ndim=1] bmp = np.full(0x10000, n_alpha, dtype=np.uint32)
    cdef uint32_t* table = <uint32_t*> bmp.data
    for i in range(n_alpha):
        if alphabet[i] < 0x10000:
            table[alphabet[i]] = <uint32_t> i
    out = np.empty(n + 1, dtype=np.uint32)
    cdef uint32_t[::1] o = out
    o[n] = <uint32_t> n_alpha
    for i in prange(n, nogil=True, num_threads=threads, schedule="static"):
        c = code_points[i]
        if c < 0x10000:
            o[i] = table[c]
        else:
            lo = 0
            hi = n_alpha
            while lo < hi:
                mid = (lo + hi) // 2
                if alphabet[mid] < c:
                    lo = mid + 1
                else:
                    hi = mid
            o[i] = <uint32_t> lo if lo < n_alpha and alphabet[lo] == c else <uint32_t> n_alpha
    return out


def char_masks(const uint32_t[::1] ids, const int64_t[::1] off):
    """64-bit character-set mask per string."""
    cdef Py_ssize_t n = off.shape[0] - 1, s, i
    cdef uint64_t mask
    out = np.zeros(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    with nogil:
        for s in range(n):
            mask = 0
            for i in range(off[s], off[s + 1]):
                mask |= char_bit(ids[i])
            o[s] = mask
    return out


cdef struct VocabEntry:
    # What the filter reads per vocabulary word, packed so that one cache line holds four.
    uint64_t mask
    int32_t len
    int32_t extra  # len - popcount(mask): positions beyond one per distinct masked character


cdef struct Job:
    const uint32_t* q_ids
    const int64_t* q_off
    const uint64_t* q_mask
    const uint32_t* v_ids
    const int64_t* v_off
    const int32_t* v_len
    const uint64_t* v_mask
    const double* v_inv_len
    Py_ssize_t nv
    const VocabEntry* v_info
    Py_ssize_t len_cap  # need tables cover vocabulary lengths 0 .. len_cap - 1; longer ones always pass
    double score_cutoff
    double prefix_weight
    double jaro_cutoffs[5]


cdef struct Scratch:
    uint64_t* PM          # bit-parallel match table, indexed by character id
    unsigned char* fa     # match flags of the plain fallback
    unsigned char* fb
    int32_t* need         # per vocabulary length: common characters needed to reach the cutoff
    int32_t* cand         # vocabulary indices that survive the character-set filter
    double* bound         # per candidate: upper bound on its score
    int32_t* bucket       # per candidate: bound bucket (0 = highest), -1 when below the cutoff
    int32_t* order        # candidate positions in bucket order
    int32_t* bucket_start


cdef void fill_need(const Job* job, Py_ssize_t la, int32_t* need) noexcept nogil:
    """Fewest common characters a pair (la, lb) needs to possibly reach the cutoff.

    Upper bound used: Jaro with no transpositions, boosted by the longest possible prefix.
    Rounded down with slack, so it can only let too many pairs through, never too few.
    """
    cdef Py_ssize_t lb, p
    cdef double c = job.score_cutoff, pw, j, x
    for lb in range(job.len_cap):
        need[lb] = 0
        if la == 0 or lb == 0 or c <= 0.0:
            continue
        p = 4
        if la < p:
            p = la
        if lb < p:
            p = lb
        pw = p * job.prefix_weight
        if c <= 0.7:
            j = c
        elif pw >= 1.0:
            j = 0.7
        else:
            j = (c - pw) / (1.0 - pw)
            if j < 0.7:
                j = 0.7
        x = (3.0 * (j - BOUND_SLACK) - 1.0) * <double> la * <double> lb / <double> (la + lb)
        if x > 1e-7:
            need[lb] = <int32_t> ceil(x - 1e-7)
    need[job.len_cap] = 0


cdef Py_ssize_t filter_candidates(const Job* job, Py_ssize_t la, uint64_t qm, Scratch* sc) noexcept nogil:
    """Vocabulary indices (ascending) whose character-set bound can reach the cutoff.

    A set bit of the query's mask that the word's mask lacks stands for at least one query
    position that cannot match (and vice versa), so with c = popcount(qm & vm)
    m <= min(la - popcount(qm) + c, lb - popcount(vm) + c). One popcount, no branch.
    """
    cdef Py_ssize_t vi, n = 0, lb, m, cap = job.len_cap
    cdef Py_ssize_t q_extra = la - tf_popcount64(qm)
    cdef const int32_t* need = sc.need
    cdef int32_t* cand = sc.cand
    cdef const VocabEntry* e
    fill_need(job, la, sc.need)
    for vi in range(job.nv):
        e = &job.v_info[vi]
        m = e.extra if e.extra < q_extra else q_extra
        m += tf_popcount64(qm & e.mask)
        lb = e.len if e.len < cap else cap
        cand[n] = <int32_t> vi
        n += m >= need[lb]
    return n


cdef inline double score_upper_bound(const Job* job, const uint32_t* a, Py_ssize_t la, double inv_la,
                                     uint64_t qm, Py_ssize_t q_extra, Py_ssize_t vi) noexcept nogil:
    """An upper bound on the Jaro-Winkler score of the query against vocabulary entry vi:
    the character-set bound on common characters, no transpositions, the actual prefix."""
    cdef const VocabEntry* e = &job.v_info[vi]
    cdef const uint32_t* b
    cdef Py_ssize_t lb = e.len, m, p = 0
    cdef double ub
    if la == 0 or lb == 0:
        return 1.0  # decided exactly by the pair function
    m = e.extra if e.extra < q_extra else q_extra
    m += tf_popcount64(qm & e.mask)
    if m <= 0:
        return 0.0
    ub = (m * inv_la + m * job.v_inv_len[vi] + 1.0) / 3.0
    if ub > 0.7:
        b = job.v_ids + job.v_off[vi]
        while p < 4 and p < la and p < lb and a[p] == b[p]:
            p += 1
        ub += p * job.prefix_weight * (1.0 - ub)
    return ub + BOUND_SLACK


cdef inline void build_pm(uint64_t* PM, const uint32_t* a, Py_ssize_t la) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(la):
        PM[a[i]] |= (<uint64_t> 1) << i


cdef inline void clear_pm(uint64_t* PM, const uint32_t* a, Py_ssize_t la) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(la):
        PM[a[i]] = 0


cdef void best_for_query(const Job* job, Py_ssize_t qi, Scratch* sc, int32_t* out_i, double* out_s) noexcept nogil:
    """Branch and bound: candidates in descending order of their score bound (bucketed), so a
    high best comes early and every candidate whose bound is below it is never scored."""
    cdef const uint32_t* a = job.q_ids + job.q_off[qi]
    cdef Py_ssize_t la = job.q_off[qi + 1] - job.q_off[qi], vi, k, pos, n_cand, n_kept = 0
    cdef double inv_la = 1.0 / la if la > 0 else 0.0
    cdef uint64_t qm = job.q_mask[qi]
    cdef const uint64_t* pm = sc.PM if la <= 64 else NULL
    cdef Py_ssize_t q_extra = la - tf_popcount64(qm)
    cdef double best = -1.0, s, u
    cdef int32_t best_i = -1, b
    cdef int32_t* bucket_start = sc.bucket_start
    n_cand = filter_candidates(job, la, qm, sc)
    memset(bucket_start, 0, (N_BUCKETS + 1) * sizeof(int32_t))
    for k in range(n_cand):
        u = score_upper_bound(job, a, la, inv_la, qm, q_extra, sc.cand[k])
        if u < job.score_cutoff:
            sc.bucket[k] = -1
            continue
        # Bucket 0 holds the highest bounds; within a bucket, ascending vocabulary index.
        b = N_BUCKETS - 1 - <int32_t> (u * (N_BUCKETS - 1)) if u < 1.0 else 0
        if b < 0:
            b = 0
        sc.bucket[k] = b
        sc.bound[k] = u
        bucket_start[b + 1] += 1
        n_kept += 1
    for b in range(N_BUCKETS):
        bucket_start[b + 1] += bucket_start[b]
    for k in range(n_cand):
        b = sc.bucket[k]
        if b >= 0:
            sc.order[bucket_start[b]] = <int32_t> k
            bucket_start[b] += 1
    if pm != NULL:
        build_pm(sc.PM, a, la)
    for pos in range(n_kept):
        k = sc.order[pos]
        if sc.bound[k] < best:
            # Everything in lower buckets is bounded below this bucket's floor.
            if best_i >= 0 and sc.bucket[k] > 0 and \
                    (N_BUCKETS - sc.bucket[k]) / <double> (N_BUCKETS - 1) + BOUND_SLACK < best:
                break
            continue
        vi = sc.cand[k]
        s = jaro_winkler_pair(a, la, job.v_ids + job.v_off[vi], job.v_len[vi],
                              pm, job.prefix_weight, job.score_cutoff, job.jaro_cutoffs, sc.fa, sc.fb)
        # Candidates arrive out of index order, so a tie goes to the lower index explicitly.
        if s >= job.score_cutoff and (s > best or (s == best and vi < best_i)):
            best = s
            best_i = <int32_t> vi
    if pm != NULL:
        clear_pm(sc.PM, a, la)
    out_i[qi] = best_i
    out_s[qi] = best if best_i >= 0 else 0.0


cdef int all_for_query(const Job* job, Py_ssize_t qi, Scratch* sc, int32_t** hit_idx,
                       double** hit_score, int64_t* hit_count) noexcept nogil:
    """Append every vocabulary index scoring >= cutoff, in index order; -1 when out of memory."""
    cdef const uint32_t* a = job.q_ids + job.q_off[qi]
    cdef Py_ssize_t la = job.q_off[qi + 1] - job.q_off[qi], vi, k, n_cand
    cdef uint64_t qm = job.q_mask[qi]
    cdef const uint64_t* pm = sc.PM if la <= 64 else NULL
    cdef double inv_la = 1.0 / la if la > 0 else 0.0
    cdef Py_ssize_t q_extra = la - tf_popcount64(qm)
    cdef double s
    cdef int64_t n = 0, cap = 0
    cdef int32_t* idx = NULL
    cdef double* scores = NULL
    cdef void* grown
    cdef int status = 0
    n_cand = filter_candidates(job, la, qm, sc)
    if pm != NULL:
        build_pm(sc.PM, a, la)
    for k in range(n_cand):
        vi = sc.cand[k]
        if score_upper_bound(job, a, la, inv_la, qm, q_extra, vi) < job.score_cutoff:
            continue
        s = jaro_winkler_pair(a, la, job.v_ids + job.v_off[vi], job.v_len[vi],
                              pm, job.prefix_weight, job.score_cutoff, job.jaro_cutoffs, sc.fa, sc.fb)
        if s >= job.score_cutoff:
            if n == cap:
                cap = 8 if cap == 0 else 2 * cap
                grown = realloc(idx, cap * sizeof(int32_t))
                if grown == NULL:
                    status = -1
                    break
                idx = <int32_t*> grown
                grown = realloc(scores, cap * sizeof(double))
                if grown == NULL:
                    status = -1
                    break
                scores = <double*> grown
            idx[n] = <int32_t> vi
            scores[n] = s
            n += 1
    if pm != NULL:
        clear_pm(sc.PM, a, la)
    hit_idx[qi] = idx
    hit_score[qi] = scores
    hit_count[qi] = n
    return status


cdef Job make_job(const uint32_t[::1] q_ids, const int64_t[::1] q_off, const uint64_t[::1] q_mask,
                  const uint32_t[::1] v_ids, const int64_t[::1] v_off, const int32_t[::1] v_len,
                  const uint64_t[::1] v_mask, const double[::1] v_inv_len,
                  double score_cutoff, double prefix_weight, VocabEntry* v_info):
    """v_info: caller-owned, len(v_len) + 1 entries; filled here."""
    cdef Job job
    cdef Py_ssize_t i, longest = 0
    cdef int p
    for i in range(v_len.shape[0]):
        v_info[i].mask = v_mask[i]
        v_info[i].len = v_len[i]
        v_info[i].extra = v_len[i] - tf_popcount64(v_mask[i])
    job.v_info = v_info
    for p in range(5):
        job.jaro_cutoffs[p] = jaro_cutoff_for(p, prefix_weight, score_cutoff)
    # The wrapper pads the id buffers by one element, so &ids[0] exists even when all are empty.
    job.q_ids = &q_ids[0]
    job.q_off = &q_off[0]
    job.q_mask = &q_mask[0] if q_mask.shape[0] else NULL
    job.v_ids = &v_ids[0]
    job.v_off = &v_off[0]
    job.v_len = &v_len[0] if v_len.shape[0] else NULL
    job.v_mask = &v_mask[0] if v_mask.shape[0] else NULL
    job.v_inv_len = &v_inv_len[0] if v_inv_len.shape[0] else NULL
    job.nv = v_off.shape[0] - 1
    for i in range(job.nv):
        if v_len[i] > longest:
            longest = v_len[i]
    job.len_cap = longest + 1 if longest < MAX_NEED_LEN else MAX_NEED_LEN
    job.score_cutoff = score_cutoff
    job.prefix_weight = prefix_weight
    return job


cdef Scratch* alloc_scratch(Py_ssize_t n_alpha, Py_ssize_t max_len, const Job* job) noexcept nogil:
    """One thread's scratch (NULL when out of memory); returned by pointer so that the
    assignment inside a parallel block makes it thread-private."""
    cdef Scratch* sc = <Scratch*> calloc(1, sizeof(Scratch))
    if sc == NULL:
        return NULL
    sc.PM = <uint64_t*> calloc(n_alpha + 1, sizeof(uint64_t))
    sc.fa = <unsigned char*> malloc(2 * max_len)
    sc.fb = sc.fa + max_len if sc.fa != NULL else NULL
    sc.need = <int32_t*> malloc((job.len_cap + 1) * sizeof(int32_t))
    sc.cand = <int32_t*> malloc((job.nv + 1) * sizeof(int32_t))
    sc.bound = <double*> malloc((job.nv + 1) * sizeof(double))
    sc.bucket = <int32_t*> malloc((job.nv + 1) * sizeof(int32_t))
    sc.order = <int32_t*> malloc((job.nv + 1) * sizeof(int32_t))
    sc.bucket_start = <int32_t*> malloc((N_BUCKETS + 1) * sizeof(int32_t))
    if (sc.PM == NULL or sc.fa == NULL or sc.need == NULL or sc.cand == NULL or sc.bound == NULL
            or sc.bucket == NULL or sc.order == NULL or sc.bucket_start == NULL):
        free_scratch(sc)
        return NULL
    return sc


cdef void free_scratch(Scratch* sc) noexcept nogil:
    if sc == NULL:
        return
    free(sc.PM)
    free(sc.fa)
    free(sc.need)
    free(sc.cand)
    free(sc.bound)
    free(sc.bucket)
    free(sc.order)
    free(sc.bucket_start)
    free(sc)


def _max_len(const int64_t[::1] off):
    cdef Py_ssize_t i, best = 1
    for i in range(off.shape[0] - 1):
        if off[i + 1] - off[i] > best:
            best = off[i + 1] - off[i]
    return best


def best_match(const uint32_t[::1] q_ids, const int64_t[::1] q_off, const uint64_t[::1] q_mask,
               const uint32_t[::1] v_ids, const int64_t[::1] v_off, const int32_t[::1] v_len,
               const uint64_t[::1] v_mask, const double[::1] v_inv_len, Py_ssize_t n_alpha,
               double score_cutoff, double prefix_weight, int threads):
    """Per query: the lowest vocabulary index with the highest score >= score_cutoff (-1: none)."""
    cdef Py_ssize_t nq = q_off.shape[0] - 1, qi
    cdef Py_ssize_t max_len = max(_max_len(q_off), _max_len(v_off))
    # numpy owns the vocabulary table, so it is freed on every exit path (numpy aligns to >= 16 bytes)
    cdef unsigned char[::1] v_info = np.empty((v_len.shape[0] + 1) * sizeof(VocabEntry), dtype=np.uint8)
    cdef Job job = make_job(q_ids, q_off, q_mask, v_ids, v_off, v_len, v_mask, v_inv_len,
                            score_cutoff, prefix_weight, <VocabEntry*> &v_info[0])
    cdef Scratch* sc
    cdef int failed = 0
    cdef int* failed_p = &failed  # written through a pointer: a plain assignment in a parallel block is thread-private
    best_idx = np.full(nq, -1, dtype=np.int32)
    best_score = np.zeros(nq, dtype=np.float64)
    cdef int32_t[::1] out_i = best_idx
    cdef double[::1] out_s = best_score
    if nq == 0:
        return best_idx, best_score
    with nogil, parallel(num_threads=threads):
        sc = alloc_scratch(n_alpha, max_len, &job)
        if sc == NULL:
            failed_p[0] = 1
        else:
            # dynamic: query lengths vary, and a long query costs far more than a short one
            for qi in prange(nq, schedule="dynamic", chunksize=16):
                best_for_query(&job, qi, sc, &out_i[0], &out_s[0])
        free_scratch(sc)
    if failed:
        raise MemoryError("jaro_winkler.best_match: out of memory for per-thread scratch")
    return best_idx, best_score


def all_matches(const uint32_t[::1] q_ids, const int64_t[::1] q_off, const uint64_t[::1] q_mask,
                const uint32_t[::1] v_ids, const int64_t[::1] v_off, const int32_t[::1] v_len,
                const uint64_t[::1] v_mask, const double[::1] v_inv_len, Py_ssize_t n_alpha,
                double score_cutoff, double prefix_weight, int threads):
    """Every (query, vocabulary) pair scoring >= score_cutoff, sorted by (query, vocabulary)."""
    cdef Py_ssize_t nq = q_off.shape[0] - 1, qi, total = 0
    cdef Py_ssize_t max_len = max(_max_len(q_off), _max_len(v_off))
    # numpy owns the vocabulary table, so it is freed on every exit path (numpy aligns to >= 16 bytes)
    cdef unsigned char[::1] v_info = np.empty((v_len.shape[0] + 1) * sizeof(VocabEntry), dtype=np.uint8)
    cdef Job job = make_job(q_ids, q_off, q_mask, v_ids, v_off, v_len, v_mask, v_inv_len,
                            score_cutoff, prefix_weight, <VocabEntry*> &v_info[0])
    cdef Scratch* sc
    cdef int failed = 0
    cdef int* failed_p = &failed  # written through a pointer: a plain assignment in a parallel block is thread-private
    # One growable hit list per query: each query is owned by one thread, so no locking, and
    # concatenating them in query order gives (query, vocabulary) order for free.
    cdef int32_t** hit_idx = <int32_t**> calloc(nq + 1, sizeof(int32_t*))
    cdef double** hit_score = <double**> calloc(nq + 1, sizeof(double*))
    cdef int64_t* hit_count = <int64_t*> calloc(nq + 1, sizeof(int64_t))
    if hit_idx == NULL or hit_score == NULL or hit_count == NULL:
        free(hit_idx); free(hit_score); free(hit_count)
        raise MemoryError("jaro_winkler.all_matches: out of memory")
    try:
        with nogil, parallel(num_threads=threads):
            sc = alloc_scratch(n_alpha, max_len, &job)
            if sc == NULL:
                failed_p[0] = 1
            else:
                for qi in prange(nq, schedule="dynamic", chunksize=16):
                    if all_for_query(&job, qi, sc, hit_idx, hit_score, hit_count) != 0:
                        failed_p[0] = 1
            free_scratch(sc)
        if failed:
            raise MemoryError("jaro_winkler.all_matches: out of memory collecting matches")
        for qi in range(nq):
            total += hit_count[qi]
        q_out = np.empty(total, dtype=np.int64)
        v_out = np.empty(total, dtype=np.int32)
        s_out = np.empty(total, dtype=np.float64)
        fill(q_out, v_out, s_out, nq, hit_idx, hit_score, hit_count)
        return q_out, v_out, s_out
    finally:
        for qi in range(nq):
            free(hit_idx[qi])
            free(hit_score[qi])
        free(hit_idx); free(hit_score); free(hit_count)


cdef void fill(int64_t[::1] q_out, int32_t[::1] v_out, double[::1] s_out, Py_ssize_t nq,
               int32_t** hit_idx, double** hit_score, int64_t* hit_count):
    cdef Py_ssize_t qi, k, pos = 0
    for qi in range(nq):
        for k in range(hit_count[qi]):
            q_out[pos] = qi
            v_out[pos] = hit_idx[qi][k]
            s_out[pos] = hit_score[qi][k]
            pos += 1
