/* SHA-384 of many 4 KiB pages at once, eight pages per AVX-512 register: the content hashes of an
 * SNP launch digest (igvm/snp/pageinfo.py uses this module when it imports and reports lanes).
 *
 * Why: every NORMAL page of an SNP launch is hashed on its own (SHA-384 over 4 KiB), and the pages are
 * independent of each other. OpenSSL hashes one buffer at a time with 64-bit scalar arithmetic, so a
 * measurement tool is bounded by one SHA-512 compression per 128 bytes per core. AVX-512 holds eight
 * 64-bit lanes: eight pages go through the compression function together (the "multi-buffer" technique
 * of Intel's ISA-L crypto; this is our own code), one vector instruction per scalar step.
 *
 * The algorithm is FIPS 180-4: SHA-512's compression function (section 6.4.2) with SHA-384's initial
 * hash value (section 5.3.4) and the round constants of section 4.2.3 (the first 64 bits of the
 * fractional parts of the cube roots of the first 80 primes; generated, checked against hashlib by the
 * tests). A 4 KiB message is exactly 32 blocks, so its padding block (0x80, zeros, the bit length
 * 32768) is the same for every page: its message schedule is expanded once, at import.
 *
 * Nothing here decides what is measured: the module returns bytes identical to hashlib.sha384 of each
 * page (tests/test_sha384mb.py compares them on random pages), or raises; Python keeps hashlib where
 * the CPU or the build lacks AVX-512.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PAGE 4096
#define BLOCK 128
#define DIGEST 48

static const uint64_t K[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

static const uint64_t IV[8] = {
    0xcbbb9d5dc1059ed8ULL, 0x629a292a367cd507ULL, 0x9159015a3070dd17ULL, 0x152fecd8f70e5939ULL,
    0x67332667ffc00b31ULL, 0x8eb44a8768581511ULL, 0xdb0c2e0d64f98fa7ULL, 0x47b5481dbefa4fa4ULL,
};

/* K[t] + W[t] of the padding block every 4 KiB message ends with */
static uint64_t PAD_KW[80];

static inline uint64_t ror64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static void expand_padding(void)
{
    uint64_t w[80] = {0};
    w[0] = 0x8000000000000000ULL;
    w[15] = (uint64_t)PAGE * 8;
    for (int t = 16; t < 80; t++) {
        uint64_t s0 = ror64(w[t - 15], 1) ^ ror64(w[t - 15], 8) ^ (w[t - 15] >> 7);
        uint64_t s1 = ror64(w[t - 2], 19) ^ ror64(w[t - 2], 61) ^ (w[t - 2] >> 6);
        w[t] = s1 + w[t - 7] + s0 + w[t - 16];
    }
    for (int t = 0; t < 80; t++)
        PAD_KW[t] = K[t] + w[t];
}

static int lanes;  /* pages per pass of the vector kernel; 0: none usable on this CPU */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw")))

/* One SHA-512 round on eight lanes; callers rotate the names of the eight working variables
 * instead of moving them. Ch and Maj are single ternary-logic instructions (truth tables 0xCA, 0xE8);
 * each Sigma is three rotates and one three-way XOR (0x96). */
#define ROUND(a, b, c, d, e, f, g, h, kw)                                                                 \
    do {                                                                                                  \
        __m512i t1 = _mm512_add_epi64(                                                                    \
            _mm512_add_epi64(h, _mm512_ternarylogic_epi64(_mm512_ror_epi64(e, 14), _mm512_ror_epi64(e, 18), \
                                                          _mm512_ror_epi64(e, 41), 0x96)),                \
            _mm512_add_epi64(_mm512_ternarylogic_epi64(e, f, g, 0xCA), kw));                              \
        d = _mm512_add_epi64(d, t1);                                                                      \
        h = _mm512_add_epi64(                                                                             \
            _mm512_add_epi64(t1, _mm512_ternarylogic_epi64(_mm512_ror_epi64(a, 28), _mm512_ror_epi64(a, 34), \
                                                           _mm512_ror_epi64(a, 39), 0x96)),               \
            _mm512_ternarylogic_epi64(a, b, c, 0xE8));                                                    \
    } while (0)

#define EIGHT_ROUNDS(t, KW)                                 \
    do {                                                    \
        ROUND(s0, s1, s2, s3, s4, s5, s6, s7, KW((t) + 0)); \
        ROUND(s7, s0, s1, s2, s3, s4, s5, s6, KW((t) + 1)); \
        ROUND(s6, s7, s0, s1, s2, s3, s4, s5, KW((t) + 2)); \
        ROUND(s5, s6, s7, s0, s1, s2, s3, s4, KW((t) + 3)); \
        ROUND(s4, s5, s6, s7, s0, s1, s2, s3, KW((t) + 4)); \
        ROUND(s3, s4, s5, s6, s7, s0, s1, s2, KW((t) + 5)); \
        ROUND(s2, s3, s4, s5, s6, s7, s0, s1, KW((t) + 6)); \
        ROUND(s1, s2, s3, s4, s5, s6, s7, s0, KW((t) + 7)); \
    } while (0)

AVX512 static inline __m512i sigma0(__m512i x)
{
    return _mm512_ternarylogic_epi64(_mm512_ror_epi64(x, 1), _mm512_ror_epi64(x, 8), _mm512_srli_epi64(x, 7), 0x96);
}

AVX512 static inline __m512i sigma1(__m512i x)
{
    return _mm512_ternarylogic_epi64(_mm512_ror_epi64(x, 19), _mm512_ror_epi64(x, 61), _mm512_srli_epi64(x, 6),
                                     0x96);
}

/* SHA-384 of n (1..8) pages at page + i * PAGE, the digests to out + i * DIGEST. Lanes past n hash the
 * first page again and are not stored. */
AVX512 static void sha384_x8(const uint8_t *page, int n, uint8_t *out)
{
    int64_t offsets[8];
    for (int l = 0; l < 8; l++)
        offsets[l] = l < n ? (int64_t)l * PAGE : 0;
    const __m512i index = _mm512_loadu_si512(offsets);
    /* byte order: the message words are big-endian */
    const __m512i bswap = _mm512_set_epi64(0x08090a0b0c0d0e0fULL, 0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL,
                                           0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL, 0x0001020304050607ULL,
                                           0x08090a0b0c0d0e0fULL, 0x0001020304050607ULL);
    __m512i s0 = _mm512_set1_epi64((long long)IV[0]), s1 = _mm512_set1_epi64((long long)IV[1]);
    __m512i s2 = _mm512_set1_epi64((long long)IV[2]), s3 = _mm512_set1_epi64((long long)IV[3]);
    __m512i s4 = _mm512_set1_epi64((long long)IV[4]), s5 = _mm512_set1_epi64((long long)IV[5]);
    __m512i s6 = _mm512_set1_epi64((long long)IV[6]), s7 = _mm512_set1_epi64((long long)IV[7]);
    __m512i w[16];

    for (int b = 0; b < PAGE / BLOCK; b++) {
        const uint8_t *block = page + b * BLOCK;
        const __m512i h0 = s0, h1 = s1, h2 = s2, h3 = s3, h4 = s4, h5 = s5, h6 = s6, h7 = s7;
        for (int j = 0; j < 16; j++)
            w[j] = _mm512_shuffle_epi8(_mm512_i64gather_epi64(index, (const void *)(block + 8 * j), 1), bswap);
#define KW_LOAD(t) _mm512_add_epi64(w[(t)], _mm512_set1_epi64((long long)K[(t)]))
        EIGHT_ROUNDS(0, KW_LOAD);
        EIGHT_ROUNDS(8, KW_LOAD);
#undef KW_LOAD
        for (int t = 16; t < 80; t += 16) {
            /* the schedule in place: w[j] becomes W[t + j] */
#define KW_NEXT(u)                                                                                           \
    (w[(u) & 15] = _mm512_add_epi64(_mm512_add_epi64(sigma1(w[((u) - 2) & 15]), w[((u) - 7) & 15]),           \
                                    _mm512_add_epi64(sigma0(w[((u) - 15) & 15]), w[(u) & 15])),               \
     _mm512_add_epi64(w[(u) & 15], _mm512_set1_epi64((long long)K[(u)])))
            EIGHT_ROUNDS(t, KW_NEXT);
            EIGHT_ROUNDS(t + 8, KW_NEXT);
#undef KW_NEXT
        }
        s0 = _mm512_add_epi64(s0, h0), s1 = _mm512_add_epi64(s1, h1), s2 = _mm512_add_epi64(s2, h2);
        s3 = _mm512_add_epi64(s3, h3), s4 = _mm512_add_epi64(s4, h4), s5 = _mm512_add_epi64(s5, h5);
        s6 = _mm512_add_epi64(s6, h6), s7 = _mm512_add_epi64(s7, h7);
    }
    {
        const __m512i h0 = s0, h1 = s1, h2 = s2, h3 = s3, h4 = s4, h5 = s5;
#define KW_PAD(t) _mm512_set1_epi64((long long)PAD_KW[(t)])
        for (int t = 0; t < 80; t += 8)
            EIGHT_ROUNDS(t, KW_PAD);
#undef KW_PAD
        s0 = _mm512_add_epi64(s0, h0), s1 = _mm512_add_epi64(s1, h1), s2 = _mm512_add_epi64(s2, h2);
        s3 = _mm512_add_epi64(s3, h3), s4 = _mm512_add_epi64(s4, h4), s5 = _mm512_add_epi64(s5, h5);
    }
    uint64_t state[6][8];
    _mm512_storeu_si512(state[0], _mm512_shuffle_epi8(s0, bswap));
    _mm512_storeu_si512(state[1], _mm512_shuffle_epi8(s1, bswap));
    _mm512_storeu_si512(state[2], _mm512_shuffle_epi8(s2, bswap));
    _mm512_storeu_si512(state[3], _mm512_shuffle_epi8(s3, bswap));
    _mm512_storeu_si512(state[4], _mm512_shuffle_epi8(s4, bswap));
    _mm512_storeu_si512(state[5], _mm512_shuffle_epi8(s5, bswap));
    for (int l = 0; l < n; l++)
        for (int i = 0; i < 6; i++)
            memcpy(out + l * DIGEST + i * 8, &state[i][l], 8);
}

static void detect(void)
{
    __builtin_cpu_init();
    /* libgcc sets these only when the OS also saves the AVX-512 state (XCR0) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        lanes = 8;
}
#else
static void detect(void) {}
static void sha384_x8(const uint8_t *page, int n, uint8_t *out) { (void)page, (void)n, (void)out; }
#endif

static PyObject *sha384_pages(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!lanes) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no AVX-512 (use hashlib)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len % PAGE) {
        PyErr_Format(PyExc_ValueError, "page data of %zd bytes is not a multiple of 4 KiB", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t pages = view.len / PAGE;
    PyObject *result = PyBytes_FromStringAndSize(NULL, pages * DIGEST);
    if (result) {
        const uint8_t *data = view.buf;
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < pages; i += 8) {
            int n = pages - i < 8 ? (int)(pages - i) : 8;
            sha384_x8(data + i * PAGE, n, out + i * DIGEST);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"sha384_pages", sha384_pages, METH_O,
     "sha384_pages(data) -> bytes\n\nThe SHA-384 digests (48 bytes each, concatenated) of the 4 KiB pages of a "
     "bytes-like object whose length is a multiple of 4096. Releases the GIL while it hashes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sha384mb", "Multi-buffer SHA-384 of 4 KiB pages (AVX-512).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sha384mb(void)
{
    expand_padding();
    detect();
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "LANES", lanes) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
