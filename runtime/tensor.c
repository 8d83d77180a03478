/* tensor.c — element types, checked sizes and element conversion. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t onyx_dtype_size(onyx_dtype dt)
{
    switch (dt) {
    case ONYX_DTYPE_F32: return 4;
    case ONYX_DTYPE_U8: return 1;
    case ONYX_DTYPE_I8: return 1;
    case ONYX_DTYPE_U16: return 2;
    case ONYX_DTYPE_I16: return 2;
    case ONYX_DTYPE_I32: return 4;
    case ONYX_DTYPE_I64: return 8;
    case ONYX_DTYPE_BOOL: return 1;
    case ONYX_DTYPE_F16: return 2;
    case ONYX_DTYPE_F64: return 8;
    case ONYX_DTYPE_U32: return 4;
    case ONYX_DTYPE_U64: return 8;
    case ONYX_DTYPE_BF16: return 2;
    case ONYX_DTYPE_STRING:
    case ONYX_DTYPE_UNDEFINED: return 0;
    }
    return 0;
}

const char *onyx_dtype_name(onyx_dtype dt)
{
    switch (dt) {
    case ONYX_DTYPE_F32: return "float32";
    case ONYX_DTYPE_U8: return "uint8";
    case ONYX_DTYPE_I8: return "int8";
    case ONYX_DTYPE_U16: return "uint16";
    case ONYX_DTYPE_I16: return "int16";
    case ONYX_DTYPE_I32: return "int32";
    case ONYX_DTYPE_I64: return "int64";
    case ONYX_DTYPE_BOOL: return "bool";
    case ONYX_DTYPE_F16: return "float16";
    case ONYX_DTYPE_F64: return "float64";
    case ONYX_DTYPE_U32: return "uint32";
    case ONYX_DTYPE_U64: return "uint64";
    case ONYX_DTYPE_BF16: return "bfloat16";
    case ONYX_DTYPE_STRING: return "string";
    case ONYX_DTYPE_UNDEFINED: return "undefined";
    }
    return "unknown";
}

bool onyx_dtype_is_known(int32_t v)
{
    return (v >= 1 && v <= 13) || v == 16;
}

bool onyx_dtype_is_float(onyx_dtype dt)
{
    return dt == ONYX_DTYPE_F32 || dt == ONYX_DTYPE_F64 || dt == ONYX_DTYPE_F16 ||
           dt == ONYX_DTYPE_BF16;
}

bool onyx_dtype_is_int(onyx_dtype dt)
{
    switch (dt) {
    case ONYX_DTYPE_U8:
    case ONYX_DTYPE_I8:
    case ONYX_DTYPE_U16:
    case ONYX_DTYPE_I16:
    case ONYX_DTYPE_I32:
    case ONYX_DTYPE_I64:
    case ONYX_DTYPE_U32:
    case ONYX_DTYPE_U64: return true;
    default: return false;
    }
}

bool onyx_dtype_is_signed(onyx_dtype dt)
{
    return onyx_dtype_is_float(dt) || dt == ONYX_DTYPE_I8 || dt == ONYX_DTYPE_I16 ||
           dt == ONYX_DTYPE_I32 || dt == ONYX_DTYPE_I64;
}

bool onyx_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool onyx_shape_numel(const int64_t *dims, int rank, size_t elem_size, int64_t *numel)
{
    int64_t limit = ONYX_MAX_TENSOR_BYTES / (int64_t)(elem_size ? elem_size : 1);
    int64_t n = 1;
    bool zero = false;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return false;
        if (dims[i] == 0)
            zero = true;
        else if (!zero) {
            if (dims[i] > limit / n)
                return false;
            n *= dims[i];
        }
    }
    *numel = zero ? 0 : n;
    return true;
}

void *onyx_calloc(size_t n, size_t size)
{
    size_t total;
    if (!onyx_mul_size(n, size, &total))
        return NULL;
    return calloc(total ? n : 1, total ? size : 1);
}

char *onyx_strdup(const char *s)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

char *onyx_shape_str(const onyx_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    if (t->rank < 0) {
        snprintf(buf, size, "[?]");
        return buf;
    }
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (int i = 0; i < t->rank && used < size; i++) {
        if (t->dims[i] < 0)
            used += (size_t)snprintf(buf + used, size - used, "%s?", i ? "," : "");
        else
            used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                     (long long)t->dims[i]);
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

bool onyx_shape_known(const onyx_tensor *t)
{
    if (t->rank < 0)
        return false;
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] < 0)
            return false;
    return true;
}

bool onyx_shape_equal(const onyx_tensor *a, const onyx_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

int64_t onyx_numel(const onyx_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

int64_t onyx_tensor_numel(const onyx_tensor *t)
{
    return onyx_numel(t);
}

size_t onyx_nbytes(const onyx_tensor *t)
{
    return (size_t)onyx_numel(t) * onyx_dtype_size(t->dtype);
}

/* IEEE half precision <-> single, round to nearest even. */
float onyx_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t onyx_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* subnormal half (or zero) */
        float a;
        memcpy(&a, &absx, 4);
        /* a * 2^24 rounded to nearest even gives the subnormal mantissa */
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)lrintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t e = ((absx >> 23) - 127 + 15) << 10;
    uint32_t m = (absx >> 13) & 0x3ffu;
    uint32_t rest = absx & 0x1fffu;
    uint32_t h = e | m;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

float onyx_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t onyx_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)((x + rounding) >> 16);
}

double onyx_load_f64(onyx_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case ONYX_DTYPE_F32: return ((const float *)p)[i];
    case ONYX_DTYPE_F64: return ((const double *)p)[i];
    case ONYX_DTYPE_F16: return onyx_f16_to_f32(((const uint16_t *)p)[i]);
    case ONYX_DTYPE_BF16: return onyx_bf16_to_f32(((const uint16_t *)p)[i]);
    case ONYX_DTYPE_U8: return ((const uint8_t *)p)[i];
    case ONYX_DTYPE_I8: return ((const int8_t *)p)[i];
    case ONYX_DTYPE_U16: return ((const uint16_t *)p)[i];
    case ONYX_DTYPE_I16: return ((const int16_t *)p)[i];
    case ONYX_DTYPE_I32: return ((const int32_t *)p)[i];
    case ONYX_DTYPE_I64: return (double)((const int64_t *)p)[i];
    case ONYX_DTYPE_U32: return ((const uint32_t *)p)[i];
    case ONYX_DTYPE_U64: return (double)((const uint64_t *)p)[i];
    case ONYX_DTYPE_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return 0.0;
    }
}

int64_t onyx_load_i64(onyx_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case ONYX_DTYPE_U8: return ((const uint8_t *)p)[i];
    case ONYX_DTYPE_I8: return ((const int8_t *)p)[i];
    case ONYX_DTYPE_U16: return ((const uint16_t *)p)[i];
    case ONYX_DTYPE_I16: return ((const int16_t *)p)[i];
    case ONYX_DTYPE_I32: return ((const int32_t *)p)[i];
    case ONYX_DTYPE_I64: return ((const int64_t *)p)[i];
    case ONYX_DTYPE_U32: return ((const uint32_t *)p)[i];
    case ONYX_DTYPE_U64: return (int64_t)((const uint64_t *)p)[i];
    case ONYX_DTYPE_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: {
        double v = onyx_load_f64(dt, p, i);
        if (!(v == v) || v >= 9.2233720368547758e18 || v < -9.2233720368547758e18)
            return INT64_MIN; /* what x86 gives for out-of-range conversion */
        return (int64_t)v;
    }
    }
}

void onyx_store_i64(onyx_dtype dt, void *p, int64_t i, int64_t v)
{
    switch (dt) {
    case ONYX_DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case ONYX_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)v; break;
    case ONYX_DTYPE_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    case ONYX_DTYPE_I16: ((int16_t *)p)[i] = (int16_t)(uint16_t)v; break;
    case ONYX_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)v; break;
    case ONYX_DTYPE_I64: ((int64_t *)p)[i] = v; break;
    case ONYX_DTYPE_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case ONYX_DTYPE_U64: ((uint64_t *)p)[i] = (uint64_t)v; break;
    case ONYX_DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: onyx_store_f64(dt, p, i, (double)v); break;
    }
}

void onyx_store_f64(onyx_dtype dt, void *p, int64_t i, double v)
{
    switch (dt) {
    case ONYX_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case ONYX_DTYPE_F64: ((double *)p)[i] = v; break;
    case ONYX_DTYPE_F16: ((uint16_t *)p)[i] = onyx_f32_to_f16((float)v); break;
    case ONYX_DTYPE_BF16: ((uint16_t *)p)[i] = onyx_f32_to_bf16((float)v); break;
    case ONYX_DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0.0; break;
    default: {
        /* float -> integer: truncate toward zero, then wrap (numpy's astype on x86) */
        int64_t iv;
        if (!(v == v) || v >= 9.2233720368547758e18 || v < -9.2233720368547758e18)
            iv = INT64_MIN;
        else
            iv = (int64_t)v;
        onyx_store_i64(dt, p, i, iv);
        break;
    }
    }
}

bool onyx_options_copy(void *dst, size_t dst_size, const void *src)
{
    size_t given;
    memcpy(&given, src, sizeof given);
    if (given < sizeof(size_t) || given > dst_size)
        return false;
    memcpy(dst, src, given);
    memcpy(dst, &dst_size, sizeof dst_size); /* now a complete current struct */
    return true;
}
