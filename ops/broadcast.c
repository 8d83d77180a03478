/* broadcast.c — numpy broadcasting: the output shape, per-input strides, a strided copy, and the
 * row-by-row walk that elementwise kernels use (see internal.h). */
#include "internal.h"

#include <string.h>

onyx_status onyx_broadcast_shape(const onyx_node *n, const onyx_tensor *a, const onyx_tensor *b,
                                 onyx_tensor *out, onyx_error *err)
{
    if (a->rank < 0 || b->rank < 0) {
        out->rank = -1;
        return ONYX_OK;
    }
    int rank = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank);
        int ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1;
        int64_t db = ib >= 0 ? b->dims[ib] : 1;
        int64_t d;
        if (da == db)
            d = da;
        else if (da == 1)
            d = db;
        else if (db == 1)
            d = da;
        else if (da < 0)
            d = db; /* unknown vs known > 1: must be that (or fail at run time) */
        else if (db < 0)
            d = da;
        else {
            char sa[96];
            char sb[96];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "shapes %s and %s cannot be broadcast (dimension %d: %lld vs %lld)",
                                 onyx_shape_str(a, sa, sizeof sa), onyx_shape_str(b, sb, sizeof sb),
                                 i, (long long)da, (long long)db);
        }
        out->dims[i] = d;
    }
    out->rank = rank;
    return ONYX_OK;
}

void onyx_broadcast_strides(const onyx_tensor *src, const onyx_tensor *out,
                            int64_t strides[ONYX_MAX_RANK])
{
    int off = out->rank - src->rank;
    int64_t s = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int is = i - off;
        if (is < 0 || src->dims[is] == 1) {
            strides[i] = 0;
        } else {
            strides[i] = s;
        }
        if (is >= 0)
            s *= src->dims[is];
    }
}

void onyx_broadcast_copy(const onyx_tensor *src, onyx_tensor *dst)
{
    size_t es = onyx_dtype_size(dst->dtype);
    int64_t total = onyx_numel(dst);
    if (total == 0)
        return;
    if (onyx_numel(src) == total) {
        memcpy(dst->data, src->data, (size_t)total * es);
        return;
    }
    int64_t st[ONYX_MAX_RANK];
    onyx_broadcast_strides(src, dst, st);
    int rank = dst->rank;
    /* Copy contiguous runs of the innermost dimension; an odometer walks the outer ones. */
    int64_t inner = rank > 0 ? dst->dims[rank - 1] : 1;
    int64_t inner_stride = rank > 0 ? st[rank - 1] : 0;
    int64_t idx[ONYX_MAX_RANK] = {0};
    const unsigned char *s = src->data;
    unsigned char *d = dst->data;
    int64_t off = 0;
    for (int64_t done = 0; done < total; done += inner) {
        if (inner_stride == 1) {
            memcpy(d, s + (size_t)off * es, (size_t)inner * es);
        } else {
            for (int64_t j = 0; j < inner; j++)
                memcpy(d + (size_t)j * es, s + (size_t)off * es, es);
        }
        d += (size_t)inner * es;
        for (int k = rank - 2; k >= 0; k--) {
            idx[k]++;
            off += st[k];
            if (idx[k] < dst->dims[k])
                break;
            off -= st[k] * idx[k];
            idx[k] = 0;
        }
    }
}

bool onyx_broadcast_fits(const onyx_tensor *src, const onyx_tensor *dst)
{
    if (src->rank > dst->rank)
        return false;
    for (int i = 0; i < src->rank; i++) {
        int64_t ds = src->dims[i];
        int64_t dd = dst->dims[dst->rank - src->rank + i];
        if (ds >= 0 && dd >= 0 && ds != 1 && ds != dd)
            return false;
    }
    return true;
}

void onyx_broadcast_walk_init(onyx_broadcast_walk *w, const onyx_tensor *out, const onyx_tensor *a,
                              const onyx_tensor *b)
{
    const onyx_tensor *src[2] = {a, b};
    int64_t st[2][ONYX_MAX_RANK];
    for (int s = 0; s < 2; s++) {
        if (src[s] != NULL)
            onyx_broadcast_strides(src[s], out, st[s]);
        else
            memset(st[s], 0, sizeof(st[s]));
    }
    w->rank = 0;
    for (int i = 0; i < out->rank; i++) {
        int64_t d = out->dims[i];
        if (d == 1)
            continue; /* visits nothing: its stride never matters */
        int r = w->rank;
        /* dims r-1 and i merge when every source steps over them as over one dimension */
        if (r > 0 && w->st[0][r - 1] == st[0][i] * d && w->st[1][r - 1] == st[1][i] * d) {
            w->dims[r - 1] *= d;
            w->st[0][r - 1] = st[0][i];
            w->st[1][r - 1] = st[1][i];
            continue;
        }
        w->dims[r] = d;
        w->st[0][r] = st[0][i];
        w->st[1][r] = st[1][i];
        w->rank++;
    }
    if (w->rank == 0) { /* a single element */
        w->rank = 1;
        w->dims[0] = 1;
        w->st[0][0] = 0;
        w->st[1][0] = 0;
    }
}

void onyx_broadcast_walk_next(const onyx_broadcast_walk *w, int64_t idx[ONYX_MAX_RANK],
                              int64_t off[2])
{
    for (int k = w->rank - 2; k >= 0; k--) {
        off[0] += w->st[0][k];
        off[1] += w->st[1][k];
        if (++idx[k] < w->dims[k])
            return;
        off[0] -= w->st[0][k] * w->dims[k];
        off[1] -= w->st[1][k] * w->dims[k];
        idx[k] = 0;
    }
}

/* Raw loops dx += alpha dy over one row: dx (n) stepping with dy, or dx (1) taking the row's sum
 * (in double, in order). */
static void reduce_row_f32_v(int64_t n, float alpha, const float *restrict dy, float *restrict dx)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] += alpha * dy[i];
}

static void reduce_row_f32_s(int64_t n, float alpha, const float *restrict dy, float *restrict dx)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += dy[i];
    dx[0] += alpha * (float)s;
}

/*
 * y: any shape (dims known); dy: y's shape; x: broadcastable to y (onyx_broadcast_strides);
 * dx: x's shape. dx += alpha * sum of dy over the dims along which x is broadcast: the
 * gradient of y = x broadcast (times alpha), the backward of every broadcasting op. Rows are
 * visited in order, so the sums do not depend on anything but the shapes.
 */
void onyx_broadcast_reduce_f32(const onyx_tensor *y, const float *dy, const onyx_tensor *x,
                               float *dx, float alpha)
{
    int64_t numel = onyx_numel(y);
    if (numel == 0)
        return;
    if (onyx_numel(x) == numel) { /* same elements in the same order: nothing is broadcast */
        reduce_row_f32_v(numel, alpha, dy, dx);
        return;
    }
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, y, x, NULL);
    int64_t n = w.dims[w.rank - 1];
    bool vector = w.st[0][w.rank - 1] != 0;
    int64_t rows = numel / n;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t i = 0; i < rows; i++) {
        if (vector)
            reduce_row_f32_v(n, alpha, dy + i * n, dx + off[0]);
        else
            reduce_row_f32_s(n, alpha, dy + i * n, dx + off[0]);
        onyx_broadcast_walk_next(&w, idx, off);
    }
}
