/* check.h — the whole test framework: CHECK macros that print file:line and count failures.
 * A test file's main() ends with `return check_report();`, which prints the plain closing line
 * "N passed, M failed" and returns non-zero when anything failed. */
#ifndef ONYX_CHECK_H
#define ONYX_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed_;
static int check_failed_;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (cond) {                                                                            \
            check_passed_++;                                                                   \
        } else {                                                                               \
            check_failed_++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                                      \
    } while (0)

/* |a - b| <= atol + rtol * |b|; NaN never passes. */
#define CHECK_NEAR_TOL(a, b, atol, rtol)                                                       \
    do {                                                                                       \
        double check_a_ = (double)(a);                                                         \
        double check_b_ = (double)(b);                                                         \
        if (fabs(check_a_ - check_b_) <= (atol) + (rtol) * fabs(check_b_)) {                   \
            check_passed_++;                                                                   \
        } else {                                                                               \
            check_failed_++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, expected %s = %.9g\n",       \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);                           \
        }                                                                                      \
    } while (0)

#define CHECK_NEAR(a, b) CHECK_NEAR_TOL(a, b, 1e-6, 1e-5)

/* Status is ONYX_OK; otherwise print the message. */
#define CHECK_OK(st, msg)                                                                      \
    do {                                                                                       \
        int check_st_ = (int)(st);                                                             \
        if (check_st_ == 0) {                                                                  \
            check_passed_++;                                                                   \
        } else {                                                                               \
            check_failed_++;                                                                   \
            fprintf(stderr, "%s:%d: expected OK, got status %d: %s\n", __FILE__, __LINE__,     \
                    check_st_, (msg));                                                         \
        }                                                                                      \
    } while (0)

/* The message contains the substring. */
#define CHECK_MSG(msg, sub)                                                                    \
    do {                                                                                       \
        const char *check_m_ = (msg);                                                          \
        if (check_m_ != NULL && strstr(check_m_, (sub)) != NULL) {                             \
            check_passed_++;                                                                   \
        } else {                                                                               \
            check_failed_++;                                                                   \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,        \
                    check_m_ ? check_m_ : "(null)", (sub));                                    \
        }                                                                                      \
    } while (0)

static int check_report(void)
{
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    return check_failed_ != 0;
}

#endif
