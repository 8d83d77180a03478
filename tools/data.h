/*
 * data.h — training data for `onyx train`: samples read from CSV or .npy files, checked against
 * the model before the first step, and put into batches in a reproducible order.
 *
 * Every check names the file and the line (CSV) or row (.npy) and column of what is wrong, in
 * one line: "train.csv:57: column 65: label 10 is out of range (output \"logits\" has 10
 * classes: 0..9)". Uses only the public onyx.h (and the helpers of cli.h).
 */
#ifndef ONYX_DATA_H
#define ONYX_DATA_H

#include "onyx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What to read and what the model expects of it. */
typedef struct data_spec {
    const char *path;         /* features: CSV (targets in a column unless targets_path is set),
                               * or .npy [n, ...] */
    const char *targets_path; /* targets as .npy [n] or [n, ...]; NULL: a column of the CSV */
    int64_t target_column;    /* CSV column of the target, 0-based, negative from the end (-1) */
    bool classes;             /* targets are class indices (ce, nll); else float values */
    int64_t n_features;       /* features per sample the model takes; -1: whatever the file has */
    const char *input_desc;   /* "input \"input\" [batch,64]", for messages */
} data_spec;

/* A data set in memory. Fill with data_load, free with data_free. */
typedef struct data_set {
    const char *path;         /* borrowed from the spec, for messages */
    const char *targets_path; /* borrowed; NULL when the targets are a CSV column */
    int64_t n;                /* samples */
    int64_t n_features;       /* floats per sample */
    int64_t n_targets;        /* targets per sample: 1 for class indices */
    float *x;                 /* [n, n_features] */
    int64_t *labels;          /* class indices [n], or NULL */
    float *y;                 /* float targets [n, n_targets], or NULL */
    int64_t *line;            /* CSV line number of each sample, or NULL (.npy) */
    int64_t target_column;    /* CSV: 1-based column of the target (0 when from .npy) */
} data_set;

/*
 * Reads and checks spec's files into *d: every value a finite number, rows of equal length, the
 * number of features spec->n_features (when >= 0), class indices whole numbers >= 0, as many
 * targets as samples. On failure writes a one-line message into msg[size], leaves *d empty
 * and returns false.
 */
bool data_load(const data_spec *spec, data_set *d, char *msg, size_t size);

/* Class indices: every label < n_classes. what names the output ("output \"logits\""). */
bool data_check_classes(const data_set *d, int64_t n_classes, const char *what, char *msg,
                        size_t size);
/* Float targets: n_targets per sample; for bce, every target in [0, 1]. */
bool data_check_targets(const data_set *d, int64_t n_targets, bool unit_interval, const char *what,
                        char *msg, size_t size);

/* Frees what data_load allocated; accepts an empty or zeroed set. */
void data_free(data_set *d);

/*
 * The order of the samples in epoch `epoch` (0-based) into order[n]: 0..n-1, or with shuffle a
 * Fisher-Yates permutation from a generator seeded with (seed, epoch) only, so that the order of
 * any epoch can be recomputed on resume.
 */
void data_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int64_t *order);

/* Copies samples idx[0..b) into x [b, n_features] and the targets into labels [b] (classes) or
 * y [b, n_targets] (float targets); the other target pointer may be NULL. */
void data_gather(const data_set *d, const int64_t *idx, int64_t b, float *x, int64_t *labels,
                 float *y);

#endif /* ONYX_DATA_H */
