/* Fused CPU loops of tlsearch's edge-gated convolution and batch norm + SiLU (float32).
 *
 * Each function walks the rows of one chunk once, on the calling thread, and does what the
 * torch path does in several elementwise, index and reduction passes (see
 * tlsearch/model/edge_gated_kernel.py and bn_silu.py for the equations). Compiled on the
 * machine that runs it (-O3 -march=native) so the inner loops over features vectorize at the
 * CPU's own width; exp is a vectorizable polynomial (Cephes' expf, ~1 ulp), so the loops do not
 * depend on -ffast-math. Sums over rows accumulate in row order (float64 for batch moments);
 * scatter-adds into per-node rows (den, num, gradients) go in edge order, so results do not
 * depend on timing.
 */
#include <stdint.h>
#include <string.h>

#define RESTRICT __restrict__
/* Rows summed in float32 before a sum over rows is added to its float64 total. */
#define BLOCK 16

static inline float exp_f(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float t = x * 1.44269504088896341f;
    float n = (float)(int)(t + (t >= 0.f ? 0.5f : -0.5f));
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_f(float x) { return 1.f / (1.f + exp_f(-x)); }

/* The float32 block sums of d and d^2 added to their float64 totals, and zeroed. */
static inline void add_block_moments(int64_t D, float *RESTRICT blk, float *RESTRICT blk2,
                                     double *RESTRICT col, double *RESTRICT sq) {
    for (int64_t d = 0; d < D; d++) {
        col[d] += (double)blk[d];
        sq[d] += (double)blk2[d];
        blk[d] = blk2[d] = 0.f;
    }
}

/* The rows of tl_gates_forward; has_moments is a constant in each caller, so both variants
 * are branch-free, vectorized loops. */
static inline __attribute__((always_inline)) void gates_forward_rows(
    int64_t n, int64_t D, const int64_t *RESTRICT u, const int64_t *RESTRICT v,
    const float *RESTRICT A, const float *RESTRICT B, const float *RESTRICT C, int64_t ld,
    float *RESTRICT m, float *RESTRICT den, float *RESTRICT num, const float *RESTRICT shift,
    double *RESTRICT col, double *RESTRICT sq, const int has_moments) {
    float blk[D], blk2[D];
    for (int64_t d = 0; d < D; d++) blk[d] = blk2[d] = 0.f;
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {
        int64_t e1 = e0 + BLOCK < n ? e0 + BLOCK : n;
        for (int64_t e = e0; e < e1; e++) {
            const float *RESTRICT a = A + u[e] * ld, *RESTRICT b = B + v[e] * ld;
            const float *RESTRICT c = C + u[e] * ld;
            float *RESTRICT me = m + e * D, *RESTRICT dn = den + v[e] * D;
            float *RESTRICT nm = num + v[e] * D;
            for (int64_t d = 0; d < D; d++) {
                float x = (b[d] + a[d]) + me[d];
                float g = sigmoid_f(x);
                me[d] = x;
                dn[d] += g;
                nm[d] += c[d] * g;
                if (has_moments) {
                    float dx = x - shift[d];
                    blk[d] += dx;
                    blk2[d] += dx * dx;
                }
            }
        }
        if (has_moments) add_block_moments(D, blk, blk2, col, sq);
    }
}

/* Gates of one chunk of n edges (u -> v), D features.
 * On entry m (n, D) holds y W^T; on exit m = A_u + B_v + y W^T. With s = sigmoid(m):
 * den[v] += s, num[v] += C_u * s (den, num: (N, D)); when col is non-NULL, with
 * d = m - shift (shift: (D,), e.g. one row of m, so that d is small next to m's mean):
 * col += column sums of d and sq += of d^2 (float32 within blocks of BLOCK rows, then
 * float64): the batch moments in this pass. A, B, C rows have stride ld (node_proj's row
 * length). The gates are not stored: the backward recomputes them (as fast as reading them
 * back). */
void tl_gates_forward(int64_t n, int64_t D, const int64_t *RESTRICT u, const int64_t *RESTRICT v,
                      const float *RESTRICT A, const float *RESTRICT B, const float *RESTRICT C,
                      int64_t ld, float *RESTRICT m, float *RESTRICT den, float *RESTRICT num,
                      const float *RESTRICT shift, double *RESTRICT col, double *RESTRICT sq) {
    if (col)
        gates_forward_rows(n, D, u, v, A, B, C, ld, m, den, num, shift, col, sq, 1);
    else
        gates_forward_rows(n, D, u, v, A, B, C, ld, m, den, num, 0, 0, 0, 0);
}

/* With d = m - shift (shift: (D,), e.g. one row of m): col += column sums of d and sq += of
 * d^2 (float32 within blocks of BLOCK rows, then float64): the batch moments in one pass. */
void tl_col_moments(int64_t n, int64_t D, const float *RESTRICT m, const float *RESTRICT shift,
                    double *RESTRICT col, double *RESTRICT sq) {
    float blk[D], blk2[D];
    for (int64_t d = 0; d < D; d++) blk[d] = blk2[d] = 0.f;
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {
        int64_t e1 = e0 + BLOCK < n ? e0 + BLOCK : n;
        for (int64_t e = e0; e < e1; e++)
            for (int64_t d = 0; d < D; d++) {
                float x = m[e * D + d] - shift[d];
                blk[d] += x;
                blk2[d] += x * x;
            }
        add_block_moments(D, blk, blk2, col, sq);
    }
}

/* out = silu(m * scale + shift) (+ res when non-NULL); (n, D) rows, res rows stride D. */
void tl_bn_silu(int64_t n, int64_t D, const float *RESTRICT m, const float *RESTRICT scale,
                const float *RESTRICT shift, const float *RESTRICT res, float *RESTRICT out) {
    for (int64_t e = 0; e < n; e++) {
        const float *RESTRICT me = m + e * D;
        float *RESTRICT o = out + e * D;
        if (res) {
            const float *RESTRICT r = res + e * D;
            for (int64_t d = 0; d < D; d++) {
                float z = me[d] * scale[d] + shift[d];
                o[d] = z * sigmoid_f(z) + r[d];
            }
        } else {
            for (int64_t d = 0; d < D; d++) {
                float z = me[d] * scale[d] + shift[d];
                o[d] = z * sigmoid_f(z);
            }
        }
    }
}

/* g_z = g_out * silu'(z), z = m * scale + shift, written to g_z (n, D);
 * g_beta += sum g_z, g_gamma += sum (m - mean) * g_z (float32 within blocks of BLOCK rows,
 * then float64). */
void tl_bn_silu_grad_sums(int64_t n, int64_t D, const float *RESTRICT m,
                          const float *RESTRICT g_out, const float *RESTRICT scale,
                          const float *RESTRICT shift, const float *RESTRICT mean,
                          float *RESTRICT g_z, double *RESTRICT g_gamma,
                          double *RESTRICT g_beta) {
    float bg[D], bb[D];
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {
        int64_t e1 = e0 + BLOCK < n ? e0 + BLOCK : n;
        for (int64_t d = 0; d < D; d++) bg[d] = bb[d] = 0.f;
        for (int64_t e = e0; e < e1; e++) {
            const float *RESTRICT me = m + e * D, *RESTRICT go = g_out + e * D;
            float *RESTRICT gz = g_z + e * D;
            for (int64_t d = 0; d < D; d++) {
                float z = me[d] * scale[d] + shift[d];
                float s = sigmoid_f(z);
                float g = go[d] * (s * (1.f + z * (1.f - s)));
                gz[d] = g;
                bb[d] += g;
                bg[d] += (me[d] - mean[d]) * g;
            }
        }
        for (int64_t d = 0; d < D; d++) {
            g_beta[d] += (double)bb[d];
            g_gamma[d] += (double)bg[d];
        }
    }
}

/* In place g = g * scale (+ m * a + b when a is non-NULL): the batch-norm input gradient;
 * col (non-NULL) += column sums of the new g (blocked as tl_col_moments). */
void tl_bn_input_grad(int64_t n, int64_t D, float *RESTRICT g, const float *RESTRICT m,
                      const float *RESTRICT scale, const float *RESTRICT a,
                      const float *RESTRICT b, double *RESTRICT col) {
    float blk[D];
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {
        int64_t e1 = e0 + BLOCK < n ? e0 + BLOCK : n;
        for (int64_t d = 0; d < D; d++) blk[d] = 0.f;
        for (int64_t e = e0; e < e1; e++) {
            float *RESTRICT ge = g + e * D;
            const float *RESTRICT me = m + e * D;
            if (a) {
                for (int64_t d = 0; d < D; d++) {
                    float x = ge[d] * scale[d] + me[d] * a[d] + b[d];
                    ge[d] = x;
                    blk[d] += x;
                }
            } else {
                for (int64_t d = 0; d < D; d++) {
                    float x = ge[d] * scale[d];
                    ge[d] = x;
                    blk[d] += x;
                }
            }
        }
        if (col)
            for (int64_t d = 0; d < D; d++) col[d] += (double)blk[d];
    }
}

/* One edge row of tl_gates_backward; the flags are constants in each caller, so every variant
 * is its own branch-free, vectorized loop. With has_res, the row of g_z is overwritten by the
 * row of res once read (the residual part of the edge input's gradient, for a beta = 1 matmul
 * into the same memory). */
static inline __attribute__((always_inline)) void gates_backward_row(
    int64_t D, const float *RESTRICT gn, const float *RESTRICT c, const float *RESTRICT hv,
    const float *RESTRICT me, const float *RESTRICT sv, float *RESTRICT gze,
    const float *RESTRICT re, const float *RESTRICT scale, const float *RESTRICT a,
    const float *RESTRICT b, float *RESTRICT gm, float *RESTRICT ga, float *RESTRICT gb,
    float *RESTRICT gc, const int has_s, const int has_gz, const int has_ab, const int has_res) {
    for (int64_t d = 0; d < D; d++) {
        float sg = has_s ? sv[d] : sigmoid_f(me[d]);
        float x = gn[d] * (c[d] - hv[d]) * (sg * (1.f - sg));
        if (has_gz) x += gze[d] * scale[d];
        if (has_ab) x += me[d] * a[d] + b[d];
        if (has_res) gze[d] = re[d];
        gm[d] = x;
        ga[d] += x;
        gb[d] += x;
        gc[d] += gn[d] * sg;
    }
}

#define GATES_BACKWARD_LOOP(HAS_S, HAS_GZ, HAS_AB, HAS_RES)                                 \
    for (int64_t e = 0; e < n; e++)                                                         \
        gates_backward_row(D, g_num + v[e] * D, C + u[e] * ldc, h + v[e] * D, m + e * D,    \
                           HAS_S ? s_saved + e * D : 0, HAS_GZ ? g_z + e * D : 0,           \
                           HAS_RES ? res + e * D : 0, scale, a, b, g_m + e * D,             \
                           gA + u[e] * ldg, gB + v[e] * ldg, gC + u[e] * ldg, HAS_S, HAS_GZ, \
                           HAS_AB, HAS_RES)

#define GATES_BACKWARD_RES(HAS_S, HAS_GZ, HAS_AB)                                           \
    if (has_res) GATES_BACKWARD_LOOP(HAS_S, HAS_GZ, HAS_AB, 1);                             \
    else GATES_BACKWARD_LOOP(HAS_S, HAS_GZ, HAS_AB, 0)

/* Backward of the gates of one chunk of n edges (u -> v), D features:
 *   g_s = g_num_v * (C_u - h_v),  s = sigmoid(m) (or the saved s),
 *   g_m = g_s * s * (1 - s) [+ g_z * scale [+ m * a + b]]   -> written to g_m (n, D)
 *   gA[u] += g_m, gB[v] += g_m, gC[u] += g_num_v * s         (gA, gB, gC: (N, D))
 * g_z (rows stride D) may be NULL (no edge output); a, b NULL in eval mode; res (rows stride
 * D, only with g_z) non-NULL overwrites each row of g_z with its row once read. C rows have
 * stride ldc, gA, gB, gC rows stride ldg (column blocks of one table); g_num, h: (N, D). */
void tl_gates_backward(int64_t n, int64_t D, const int64_t *RESTRICT u,
                       const int64_t *RESTRICT v, const float *RESTRICT g_num,
                       const float *RESTRICT C, int64_t ldc, const float *RESTRICT h,
                       const float *RESTRICT m, const float *RESTRICT s_saved,
                       float *RESTRICT g_z, const float *RESTRICT res,
                       const float *RESTRICT scale, const float *RESTRICT a,
                       const float *RESTRICT b, float *RESTRICT g_m, float *RESTRICT gA,
                       float *RESTRICT gB, float *RESTRICT gC, int64_t ldg) {
    const int has_s = s_saved != 0, has_gz = g_z != 0, has_ab = g_z != 0 && a != 0;
    const int has_res = g_z != 0 && res != 0;
    if (has_s && has_gz && has_ab) { GATES_BACKWARD_RES(1, 1, 1); }
    else if (has_s && has_gz) { GATES_BACKWARD_RES(1, 1, 0); }
    else if (has_s) GATES_BACKWARD_LOOP(1, 0, 0, 0);
    else if (has_gz && has_ab) { GATES_BACKWARD_RES(0, 1, 1); }
    else if (has_gz) { GATES_BACKWARD_RES(0, 1, 0); }
    else GATES_BACKWARD_LOOP(0, 0, 0, 0);
}
