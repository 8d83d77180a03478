/*
 * cmd_train.c — `onyx train`: fine-tune a model on CSV or .npy data with the trainer of onyx.h,
 * showing progress, writing crash-safe checkpoints and resuming from them exactly.
 *
 * Exact resume: the order of epoch e is a function of (data seed, e) only (data_order), and
 * every checkpoint stores the epoch, the position in it and the data seed
 * (onyx_trainer_set_progress), while the trainer stores parameters, optimizer state and its
 * generator. A resumed run recomputes the epoch's order, skips to the position, and from there
 * feeds the same batches to the same state as a run that never stopped.
 */
#include "cli.h"
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cmd_train(int argc, char **argv);

static const char HELP[] =
    "usage: onyx train MODEL --data FILE --loss ce|nll|mse|l1|bce [options]\n"
    "\n"
    "Trains MODEL's float initializers on the data and writes checkpoints and the trained model.\n"
    "The data is a CSV file (an optional header line; the features, then the target in the last\n"
    "column or in --target-column), or a tensor file (.npy) of features [n, ...] with --targets.\n"
    "For ce and nll the targets are class indices 0..C-1 (C the width of the output); for mse,\n"
    "l1 and bce float values (several per sample from a --targets .npy file).\n"
    "Defaults follow PyTorch: SGD momentum 0, Adam betas 0.9/0.999 and eps 1e-8, AdamW weight\n"
    "decay 0.01, losses averaged over the batch, no shuffling unless --shuffle, the last partial\n"
    "batch kept unless --drop-last. The batch size defaults to 32 (PyTorch's DataLoader: 1).\n"
    "\n"
    "data:\n"
    "  --data FILE            training data (.csv, or .npy with --targets)\n"
    "  --targets FILE         targets of --data as .npy [n] or [n, ...]\n"
    "  --val FILE             validation data, evaluated after every epoch (no dropout)\n"
    "  --val-targets FILE     targets of --val as .npy\n"
    "  --target-column K      CSV column of the target, 0-based, negative from the end (-1)\n"
    "  --loss NAME            ce (softmax cross-entropy on logits), nll (on log-probabilities),\n"
    "                         mse, l1, bce (binary cross-entropy on logits)\n"
    "  --output NAME          the model output the loss is attached to (default: the first)\n"
    "optimizer:\n"
    "  --optimizer NAME       sgd (default), adam or adamw\n"
    "  --lr X                 learning rate (default 0.01 for sgd, 0.001 for adam/adamw)\n"
    "  --momentum X           sgd momentum (default 0)    --nesterov  Nesterov momentum\n"
    "  --weight-decay X       (default 0; adamw 0.01)\n"
    "  --schedule NAME        constant (default), step (--step-size N, --gamma X, default 0.1)\n"
    "                         or cosine (over all the steps of --epochs)\n"
    "  --warmup STEPS         linear learning-rate warm-up\n"
    "  --clip-grad-norm X     clip the global gradient norm to X\n"
    "  --threads N            threads for the model's matrix products (default 0: one per CPU;\n"
    "                         results do not depend on it)\n"
    "  --add-dropout P        insert Dropout(P) after each hidden activation (for models\n"
    "                         exported without it); kept in the export, off in inference\n"
    "  --freeze GLOB          do not train initializers whose name matches (repeatable)\n"
    "loop:\n"
    "  --epochs N             epochs to train in all, counting those of a resumed run (10)\n"
    "  --batch-size N         samples per step (32)\n"
    "  --shuffle              a new order each epoch, a function of --seed and the epoch\n"
    "  --drop-last            skip the last batch of an epoch when it is smaller\n"
    "  --seed N               seed of the data order and of Dropout (0)\n"
    "checkpoints and output:\n"
    "  --checkpoint-dir DIR   write DIR/ckpt-<step>.zip at the end of every epoch\n"
    "  --checkpoint-every N   ... and every N steps\n"
    "  --keep N               keep the last N checkpoints (3; 0 keeps all)\n"
    "  --resume CKPT          resume from a checkpoint (.zip, or the latest in a folder); the\n"
    "                         optimizer, its settings, the schedule and the loss come from it\n"
    "  -o, --export OUT.onnx  write the trained inference model at the end\n"
    "  --json                 one JSON object per line on stdout: per logged step {\"step\",\n"
    "                         \"epoch\",\"loss\",\"lr\"}, per epoch "
    "{\"epoch\",\"step\",\"train_loss\"\n"
    "                         [,\"val_loss\",\"val_accuracy\"]}; epochs count from 1, and\n"
    "                         train_loss is the mean over the epoch's steps run by this process\n"
    "  --log-every N          log every N steps (default: 1 with --json, else 10% of an epoch)\n"
    "plugins:\n"
    "  --plugin FILE          load custom operators from the plugin library FILE (repeatable);\n"
    "                         a custom op trains when the plugin gives it a backward\n"
    "  -v, --verbose          print what the library logs (the parameters it leaves frozen...)\n"
    "  -h, --help             show this help\n"
    "\n"
    "On a terminal a progress bar is redrawn per epoch; otherwise plain lines. Ctrl-C finishes\n"
    "the current step, writes a checkpoint (with --checkpoint-dir) and exits with status 130.\n"
    "A step whose loss or gradient is not finite stops training (status 1); the checkpoints\n"
    "written so far are kept.\n";

/* ---- the command line --------------------------------------------------------------------- */

typedef struct train_cfg {
    const char *model;
    const char *data;
    const char *targets;
    const char *val;
    const char *val_targets;
    const char *loss;
    const char *output;
    const char *optimizer;
    const char *ckpt_dir;
    const char *resume;
    const char *export_path;
    int64_t target_column;
    bool has_target_column;
    double lr;
    double momentum;
    bool nesterov;
    double weight_decay; /* -1: the optimizer's default */
    onyx_schedule schedule;
    int64_t step_size;
    double gamma;
    int64_t warmup;
    double clip;
    double add_dropout;
    int64_t threads;
    const char **freeze;
    size_t n_freeze;
    const char **plugins;
    size_t n_plugins;
    bool verbose;
    int64_t epochs;
    int64_t batch;
    bool shuffle;
    bool drop_last;
    uint64_t seed;
    int64_t ckpt_every;
    int64_t keep;
    bool json;
    int64_t log_every; /* 0: the default */
} train_cfg;

static bool parse_loss(const char *s, onyx_loss *loss)
{
    static const char *const names[] = {"ce", "nll", "mse", "l1", "bce"};
    for (int k = 0; k < 5; k++)
        if (strcmp(s, names[k]) == 0) {
            *loss = (onyx_loss)k;
            return true;
        }
    return false;
}

static bool parse_optimizer(const char *s, onyx_optimizer *o)
{
    if (strcmp(s, "sgd") == 0)
        *o = ONYX_OPTIMIZER_SGD;
    else if (strcmp(s, "adam") == 0)
        *o = ONYX_OPTIMIZER_ADAM;
    else if (strcmp(s, "adamw") == 0)
        *o = ONYX_OPTIMIZER_ADAMW;
    else
        return false;
    return true;
}

/* Parses the arguments into *c; returns CLI_OK, or CLI_USAGE after printing the problem
 * (-1 for --help, already printed). */
static int parse_args(int argc, char **argv, train_cfg *c)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    const char *cmd = a.cmd;
    memset(c, 0, sizeof(*c));
    c->target_column = -1;
    c->weight_decay = -1.0;
    c->gamma = 0.1;
    c->epochs = 10;
    c->batch = 32;
    c->keep = 3;
    bool momentum_set = false;
    bool step_opts = false;
    c->freeze = calloc((size_t)argc + 1, sizeof(*c->freeze));
    c->plugins = calloc((size_t)argc + 1, sizeof(*c->plugins));
    if (c->freeze == NULL || c->plugins == NULL)
        return cli_fail(cmd, "out of memory");
    while (cli_more(&a)) {
        const char *v;
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            return -1;
        }
        if (cli_option(&a, "--data", NULL, &v)) {
            c->data = v;
        } else if (cli_option(&a, "--targets", NULL, &v)) {
            c->targets = v;
        } else if (cli_option(&a, "--val", NULL, &v)) {
            c->val = v;
        } else if (cli_option(&a, "--val-targets", NULL, &v)) {
            c->val_targets = v;
        } else if (cli_option(&a, "--target-column", NULL, &v)) {
            if (!cli_parse_i64(v, -1000000000, 1000000000, &c->target_column))
                return cli_usage(cmd, "--target-column must be an integer, not '%s'", v);
            c->has_target_column = true;
        } else if (cli_option(&a, "--loss", NULL, &v)) {
            onyx_loss l;
            if (!parse_loss(v, &l))
                return cli_usage(cmd, "--loss must be ce, nll, mse, l1 or bce, not '%s'", v);
            c->loss = v;
        } else if (cli_option(&a, "--output", NULL, &v)) {
            c->output = v;
        } else if (cli_option(&a, "--optimizer", NULL, &v)) {
            onyx_optimizer o;
            if (!parse_optimizer(v, &o))
                return cli_usage(cmd, "--optimizer must be sgd, adam or adamw, not '%s'", v);
            c->optimizer = v;
        } else if (cli_option(&a, "--lr", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 3.4e38, &c->lr) || c->lr <= 0.0)
                return cli_usage(cmd, "--lr must be a positive number, not '%s'", v);
        } else if (cli_option(&a, "--momentum", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 1.0, &c->momentum) || c->momentum >= 1.0)
                return cli_usage(cmd, "--momentum must be a number in [0, 1), not '%s'", v);
            momentum_set = true;
        } else if (cli_flag(&a, "--nesterov", NULL)) {
            c->nesterov = true;
        } else if (cli_option(&a, "--weight-decay", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 3.4e38, &c->weight_decay))
                return cli_usage(cmd, "--weight-decay must be a number >= 0, not '%s'", v);
        } else if (cli_option(&a, "--schedule", NULL, &v)) {
            if (strcmp(v, "constant") == 0)
                c->schedule = ONYX_SCHEDULE_CONSTANT;
            else if (strcmp(v, "step") == 0)
                c->schedule = ONYX_SCHEDULE_STEP;
            else if (strcmp(v, "cosine") == 0)
                c->schedule = ONYX_SCHEDULE_COSINE;
            else
                return cli_usage(cmd, "--schedule must be constant, step or cosine, not '%s'", v);
        } else if (cli_option(&a, "--step-size", NULL, &v)) {
            if (!cli_parse_i64(v, 1, INT64_MAX, &c->step_size))
                return cli_usage(cmd, "--step-size must be a positive integer, not '%s'", v);
            step_opts = true;
        } else if (cli_option(&a, "--gamma", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 3.4e38, &c->gamma) || c->gamma <= 0.0)
                return cli_usage(cmd, "--gamma must be a positive number, not '%s'", v);
            step_opts = true;
        } else if (cli_option(&a, "--warmup", NULL, &v)) {
            if (!cli_parse_i64(v, 0, INT64_MAX, &c->warmup))
                return cli_usage(cmd, "--warmup must be a number of steps >= 0, not '%s'", v);
        } else if (cli_option(&a, "--clip-grad-norm", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 3.4e38, &c->clip) || c->clip <= 0.0)
                return cli_usage(cmd, "--clip-grad-norm must be a positive number, not '%s'", v);
        } else if (cli_option(&a, "--threads", NULL, &v)) {
            if (!cli_parse_i64(v, 0, 1024, &c->threads))
                return cli_usage(cmd, "--threads must be an integer from 0 to 1024, not '%s'", v);
        } else if (cli_option(&a, "--add-dropout", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 0.999, &c->add_dropout) || c->add_dropout <= 0.0)
                return cli_usage(cmd, "--add-dropout must be a ratio in (0, 1), not '%s'", v);
        } else if (cli_option(&a, "--freeze", NULL, &v)) {
            c->freeze[c->n_freeze++] = v;
        } else if (cli_option(&a, "--plugin", NULL, &v)) {
            c->plugins[c->n_plugins++] = v;
        } else if (cli_flag(&a, "--verbose", "-v")) {
            c->verbose = true;
        } else if (cli_option(&a, "--epochs", NULL, &v)) {
            if (!cli_parse_i64(v, 1, INT64_MAX / 2, &c->epochs))
                return cli_usage(cmd, "--epochs must be a positive integer, not '%s'", v);
        } else if (cli_option(&a, "--batch-size", NULL, &v)) {
            if (!cli_parse_i64(v, 1, (int64_t)1 << 40, &c->batch))
                return cli_usage(cmd, "--batch-size must be a positive integer, not '%s'", v);
        } else if (cli_flag(&a, "--shuffle", NULL)) {
            c->shuffle = true;
        } else if (cli_flag(&a, "--drop-last", NULL)) {
            c->drop_last = true;
        } else if (cli_option(&a, "--seed", NULL, &v)) {
            if (!cli_parse_u64(v, &c->seed))
                return cli_usage(cmd, "--seed must be an integer in 0..2^64-1, not '%s'", v);
        } else if (cli_option(&a, "--checkpoint-dir", NULL, &v)) {
            c->ckpt_dir = v;
        } else if (cli_option(&a, "--checkpoint-every", NULL, &v)) {
            if (!cli_parse_i64(v, 1, INT64_MAX, &c->ckpt_every))
                return cli_usage(cmd,
                                 "--checkpoint-every must be a positive number of steps, "
                                 "not '%s'",
                                 v);
        } else if (cli_option(&a, "--keep", NULL, &v)) {
            if (!cli_parse_i64(v, 0, INT64_MAX, &c->keep))
                return cli_usage(cmd, "--keep must be an integer >= 0, not '%s'", v);
        } else if (cli_option(&a, "--resume", NULL, &v)) {
            c->resume = v;
        } else if (cli_option(&a, "--export", "-o", &v)) {
            c->export_path = v;
        } else if (cli_flag(&a, "--json", NULL)) {
            c->json = true;
        } else if (cli_option(&a, "--log-every", NULL, &v)) {
            if (!cli_parse_i64(v, 1, INT64_MAX, &c->log_every))
                return cli_usage(cmd, "--log-every must be a positive number of steps, not '%s'",
                                 v);
        } else {
            const char *op = cli_operand(&a);
            if (op == NULL)
                break;
            if (c->model != NULL)
                return cli_usage(cmd, "one model at a time (got '%s' and '%s')", c->model, op);
            c->model = op;
        }
    }
    if (a.failed)
        return CLI_USAGE;
    if (c->model == NULL)
        return cli_usage(cmd, "missing MODEL");
    if (c->data == NULL)
        return cli_usage(cmd, "missing --data FILE");
    if (c->loss == NULL && c->resume == NULL)
        return cli_usage(cmd, "missing --loss (ce, nll, mse, l1 or bce)");
    if (c->has_target_column && c->targets != NULL)
        return cli_usage(cmd, "--target-column is for a CSV holding its targets, not with "
                              "--targets");
    if (c->val_targets != NULL && c->val == NULL)
        return cli_usage(cmd, "--val-targets without --val");
    if ((momentum_set || c->nesterov) && c->optimizer != NULL && strcmp(c->optimizer, "sgd") != 0)
        return cli_usage(cmd, "--momentum and --nesterov are for --optimizer sgd");
    if (c->nesterov && !(c->momentum > 0.0))
        return cli_usage(cmd, "--nesterov needs --momentum > 0");
    if (c->schedule == ONYX_SCHEDULE_STEP && c->step_size == 0)
        return cli_usage(cmd, "--schedule step needs --step-size N");
    if (step_opts && c->schedule != ONYX_SCHEDULE_STEP)
        return cli_usage(cmd, "--step-size and --gamma are for --schedule step");
    if (c->ckpt_dir == NULL && c->ckpt_every > 0)
        return cli_usage(cmd, "--checkpoint-every needs --checkpoint-dir DIR");
    return CLI_OK;
}

/* ---- checkpoint folder -------------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The step of a checkpoint file name "ckpt-<digits>.zip", or -1. */
static int64_t ckpt_step(const char *name)
{
    if (strncmp(name, "ckpt-", 5) != 0)
        return -1;
    const char *p = name + 5;
    int64_t step = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (step > (INT64_MAX - 9) / 10)
            return -1;
        step = step * 10 + (*p - '0');
    }
    return strcmp(p, ".zip") == 0 ? step : -1;
}

static int cmp_desc(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa;
    int64_t b = *(const int64_t *)pb;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* The steps of the checkpoints in dir, newest first (malloc'd; *n of them). */
static bool list_ckpts(const char *dir, int64_t **steps, size_t *n)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    size_t cap = 0;
    struct dirent *e;
    bool ok = true;
    while ((e = readdir(d)) != NULL) {
        int64_t s = ckpt_step(e->d_name);
        if (s < 0)
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            int64_t *p = realloc(*steps, nc * sizeof(*p));
            if (p == NULL) {
                ok = false;
                break;
            }
            *steps = p;
            cap = nc;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (ok && *n > 1)
        qsort(*steps, *n, sizeof(**steps), cmp_desc);
    return ok;
}

static void ckpt_name(const char *dir, int64_t step, char *buf, size_t size)
{
    snprintf(buf, size, "%s/ckpt-%06lld.zip", dir, (long long)step);
}

/* The pid in a temporary file name that a checkpoint write left behind when its process died
 * ("ckpt-<step>.zip.tmp.<pid>.<seq>[...]", see onyx_trainer_save), or 0. */
static long temp_pid(const char *name)
{
    const char *tmp = strstr(name, ".zip.tmp.");
    if (strncmp(name, "ckpt-", 5) != 0 || tmp == NULL)
        return 0;
    char *end;
    long pid = strtol(tmp + 9, &end, 10);
    return end != tmp + 9 && *end == '.' && pid > 0 ? pid : 0;
}

/* Removes the temporary files of checkpoint writes whose process no longer runs (a kill -9
 * during a write); the library only clears those of the name it is writing. */
static void remove_dead_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = temp_pid(e->d_name);
        if (pid == 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
}

/* Deletes the checkpoints of dir older than the `keep` newest up to `step`. Checkpoints past
 * `step` (left by a run that went further before this one resumed from an earlier point) are
 * not touched: this run rewrites them when it gets there. */
static void rotate_ckpts(const char *dir, int64_t step, int64_t keep)
{
    int64_t *steps;
    size_t n;
    if (keep <= 0 || !list_ckpts(dir, &steps, &n))
        return;
    int64_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (steps[i] > step)
            continue;
        if (kept++ < keep)
            continue;
        char path[4096];
        ckpt_name(dir, steps[i], path, sizeof(path));
        remove(path);
    }
    free(steps);
}

/* mkdir -p. */
static bool make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        struct stat st;
        if (stat(buf, &st) != 0 && mkdir(buf, 0777) != 0 && errno != EEXIST)
            return false;
        buf[i] = c;
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* --resume DIR means the newest checkpoint in it. */
static int resolve_resume(const char *cmd, const char *arg, char *path, size_t size)
{
    struct stat st;
    if (stat(arg, &st) != 0)
        return cli_fail(cmd, "--resume %s: %s", arg, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        snprintf(path, size, "%s", arg);
        return CLI_OK;
    }
    int64_t *steps;
    size_t n;
    if (!list_ckpts(arg, &steps, &n))
        return cli_fail(cmd, "--resume %s: cannot list the folder: %s", arg, strerror(errno));
    if (n == 0) {
        free(steps);
        return cli_fail(cmd, "--resume %s: no checkpoint (ckpt-<step>.zip) in the folder", arg);
    }
    ckpt_name(arg, steps[0], path, size);
    free(steps);
    return CLI_OK;
}

/* ---- Ctrl-C ------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

/* Asks the loop to stop after the current step. SA_RESETHAND: a second Ctrl-C kills at once. */
static void on_signal(int sig)
{
    g_stop = sig;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- the run ------------------------------------------------------------------------------ */

/* Everything the training loop works with. */
typedef struct run {
    const char *cmd;
    const train_cfg *c;
    onyx_loss loss;
    bool classes;
    onyx_trainer *t;
    data_set train;
    data_set val;
    /* batch shapes: x [b, sample dims], y [b] (classes) or [b, target dims] */
    int x_rank;
    int64_t x_dims[ONYX_MAX_RANK];
    int y_rank;
    int64_t y_dims[ONYX_MAX_RANK];
    float *xb;
    int64_t *lb;
    float *yb;
    int64_t *order; /* the epoch's order of the training samples */
    int64_t *vidx;  /* indices of a validation batch */
    int64_t steps_per_epoch;
    uint64_t data_seed;
    /* output */
    bool tty;
    bool bar_open; /* a progress bar is drawn and its line not ended */
    int64_t log_every;
    char last_ckpt[4096];
} run;

static void end_bar(run *r)
{
    if (r->bar_open) {
        fputc('\n', stdout);
        fflush(stdout);
        r->bar_open = false;
    }
}

/* A float as JSON: null when not finite, else with enough digits to read back the float. */
static void json_float(double v)
{
    if (isfinite(v))
        printf("%.9g", v);
    else
        printf("null");
}

static void fmt_time(double s, char *buf, size_t size)
{
    if (!(s >= 0) || s > 359999)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/* The progress bar of an epoch: epoch 3/20 [=====>    ] 120/450 loss 0.3141 1234 samples/s ETA 0:12
 */
static void draw_bar(run *r, int64_t epoch, int64_t k, double loss, double rate, double eta)
{
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int64_t total = r->steps_per_epoch;
    int fill = total > 0 ? (int)(WIDTH * k / total) : WIDTH;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '=' : ' ';
    if (fill > 0 && fill < WIDTH)
        bar[fill - 1] = '>';
    bar[WIDTH] = '\0';
    char etas[32];
    fmt_time(eta, etas, sizeof(etas));
    printf("\repoch %lld/%lld [%s] %lld/%lld loss %.4f %.0f samples/s ETA %s\033[K",
           (long long)epoch + 1, (long long)r->c->epochs, bar, (long long)k, (long long)total, loss,
           rate, etas);
    fflush(stdout);
    r->bar_open = true;
}

/* Writes a checkpoint at the current progress; on failure prints the error and returns false. */
static bool save_ckpt(run *r, int64_t epoch, int64_t position)
{
    onyx_train_progress p;
    onyx_trainer_progress(r->t, &p);
    onyx_trainer_set_progress(r->t, epoch, position, r->data_seed);
    char path[4096];
    ckpt_name(r->c->ckpt_dir, p.step, path, sizeof(path));
    if (onyx_trainer_save(r->t, path) != ONYX_OK) {
        end_bar(r);
        cli_fail(r->cmd, "writing checkpoint %s: %s", path, onyx_trainer_errmsg(r->t));
        return false;
    }
    snprintf(r->last_ckpt, sizeof(r->last_ckpt), "%s", path);
    rotate_ckpts(r->c->ckpt_dir, p.step, r->c->keep);
    return true;
}

/* Loss (and, for classes, accuracy) on the validation set, in batches, parameters unchanged. */
static bool validate(run *r, double *loss, double *accuracy)
{
    const data_set *v = &r->val;
    double sum = 0.0;
    int64_t correct = 0;
    for (int64_t pos = 0; pos < v->n; pos += r->c->batch) {
        int64_t b = v->n - pos < r->c->batch ? v->n - pos : r->c->batch;
        for (int64_t i = 0; i < b; i++)
            r->vidx[i] = pos + i;
        data_gather(v, r->vidx, b, r->xb, r->lb, r->yb);
        onyx_tensor x = {ONYX_DTYPE_F32, r->x_rank, {0}, r->xb};
        onyx_tensor y = {r->classes ? ONYX_DTYPE_I64 : ONYX_DTYPE_F32,
                         r->y_rank,
                         {0},
                         r->classes ? (void *)r->lb : (void *)r->yb};
        memcpy(x.dims, r->x_dims, sizeof(x.dims));
        memcpy(y.dims, r->y_dims, sizeof(y.dims));
        x.dims[0] = b;
        y.dims[0] = b;
        float l = 0.0f;
        int64_t ok = 0;
        if (onyx_trainer_eval(r->t, &x, &y, &l, r->classes ? &ok : NULL) != ONYX_OK) {
            end_bar(r);
            cli_fail(r->cmd, "validation on %s: %s", v->path, onyx_trainer_errmsg(r->t));
            return false;
        }
        sum += (double)l * (double)b;
        correct += ok;
    }
    *loss = sum / (double)v->n;
    *accuracy = (double)correct / (double)v->n;
    return true;
}

/* Prints the line (or JSON object) that ends an epoch. */
static void report_epoch(run *r, int64_t epoch, double train_loss, bool has_val, double val_loss,
                         double val_acc, double seconds)
{
    onyx_train_progress p;
    onyx_trainer_progress(r->t, &p);
    if (r->c->json) {
        printf("{\"epoch\":%lld,\"step\":%lld,\"train_loss\":", (long long)epoch + 1,
               (long long)p.step);
        json_float(train_loss);
        if (has_val) {
            printf(",\"val_loss\":");
            json_float(val_loss);
            if (r->classes) {
                printf(",\"val_accuracy\":");
                json_float(val_acc);
            }
        }
        printf("}\n");
        fflush(stdout);
        return;
    }
    end_bar(r);
    printf("epoch %lld/%lld: loss %.4f", (long long)epoch + 1, (long long)r->c->epochs, train_loss);
    if (has_val) {
        printf(", val_loss %.4f", val_loss);
        if (r->classes)
            printf(", val_accuracy %.2f%%", 100.0 * val_acc);
    }
    printf(" (%.2f s)\n", seconds);
    fflush(stdout);
}

/*
 * Trains from (epoch, position) to the end of the last epoch. Returns CLI_OK, CLI_FAIL (a step
 * or a checkpoint failed; the message is printed) or 130 (interrupted; checkpoint written).
 */
static int train_loop(run *r, int64_t epoch, int64_t position)
{
    const train_cfg *c = r->c;
    const data_set *d = &r->train;
    for (; epoch < c->epochs; epoch++, position = 0) {
        data_order(d->n, c->shuffle, r->data_seed, epoch, r->order);
        double t0 = now();
        double last_draw = 0.0;
        double epoch_sum = 0.0;
        int64_t epoch_steps = 0;
        int64_t samples = 0;
        double log_sum = 0.0;
        int64_t log_n = 0;
        int64_t k = position / c->batch; /* steps of this epoch already done */
        for (;;) {
            int64_t left = d->n - position;
            if (left <= 0 || (c->drop_last && left < c->batch))
                break;
            int64_t b = left < c->batch ? left : c->batch;
            data_gather(d, r->order + position, b, r->xb, r->lb, r->yb);
            onyx_tensor x = {ONYX_DTYPE_F32, r->x_rank, {0}, r->xb};
            onyx_tensor y = {r->classes ? ONYX_DTYPE_I64 : ONYX_DTYPE_F32,
                             r->y_rank,
                             {0},
                             r->classes ? (void *)r->lb : (void *)r->yb};
            memcpy(x.dims, r->x_dims, sizeof(x.dims));
            memcpy(y.dims, r->y_dims, sizeof(y.dims));
            x.dims[0] = b;
            y.dims[0] = b;
            float lr = onyx_trainer_lr(r->t);
            float loss = 0.0f;
            if (onyx_trainer_step(r->t, &x, &y, &loss) != ONYX_OK) {
                end_bar(r);
                if (r->last_ckpt[0] != '\0')
                    cli_fail(r->cmd, "%s; the last checkpoint is %s", onyx_trainer_errmsg(r->t),
                             r->last_ckpt);
                else
                    cli_fail(r->cmd, "%s", onyx_trainer_errmsg(r->t));
                return CLI_FAIL;
            }
            position += b;
            k++;
            samples += b;
            epoch_sum += loss;
            epoch_steps++;
            log_sum += loss;
            log_n++;
            onyx_train_progress p;
            onyx_trainer_progress(r->t, &p);
            bool epoch_done = position >= d->n || (c->drop_last && d->n - position < c->batch);
            double t = now();
            double rate = t > t0 ? (double)samples / (t - t0) : 0.0;
            double eta = epoch_steps > 0
                             ? (t - t0) / (double)epoch_steps * (double)(r->steps_per_epoch - k)
                             : 0.0;
            if (c->json) {
                if (p.step % r->log_every == 0) {
                    printf("{\"step\":%lld,\"epoch\":%lld,\"loss\":", (long long)p.step,
                           (long long)epoch + 1);
                    json_float(loss);
                    printf(",\"lr\":%.6g", (double)lr);
                    printf("}\n");
                    fflush(stdout);
                }
            } else if (r->tty) {
                if (epoch_done || t - last_draw >= 0.1) {
                    draw_bar(r, epoch, k, epoch_sum / (double)epoch_steps, rate, eta);
                    last_draw = t;
                }
            } else if (p.step % r->log_every == 0) {
                printf("epoch %lld/%lld step %lld/%lld (global %lld): loss %.4f lr %.3g "
                       "%.0f samples/s\n",
                       (long long)epoch + 1, (long long)c->epochs, (long long)k,
                       (long long)r->steps_per_epoch, (long long)p.step, log_sum / (double)log_n,
                       (double)lr, rate);
                fflush(stdout);
                log_sum = 0.0;
                log_n = 0;
            }
            if (epoch_done)
                break;
            if (g_stop) {
                end_bar(r);
                if (c->ckpt_dir == NULL) {
                    fprintf(stderr,
                            "onyx train: interrupted after step %lld (epoch %lld, "
                            "sample %lld of %lld); no checkpoint written (no --checkpoint-dir)\n",
                            (long long)p.step, (long long)epoch + 1, (long long)position,
                            (long long)d->n);
                    return 130;
                }
                if (!save_ckpt(r, epoch, position))
                    return CLI_FAIL;
                fprintf(stderr,
                        "onyx train: interrupted after step %lld (epoch %lld, sample "
                        "%lld of %lld): checkpoint %s (continue with --resume %s)\n",
                        (long long)p.step, (long long)epoch + 1, (long long)position,
                        (long long)d->n, r->last_ckpt, r->last_ckpt);
                return 130;
            }
            if (c->ckpt_dir != NULL && c->ckpt_every > 0 && p.step % c->ckpt_every == 0 &&
                !save_ckpt(r, epoch, position))
                return CLI_FAIL;
        }
        double val_loss = 0.0;
        double val_acc = 0.0;
        bool has_val = c->val != NULL;
        if (has_val && !validate(r, &val_loss, &val_acc))
            return CLI_FAIL;
        report_epoch(r, epoch, epoch_steps ? epoch_sum / (double)epoch_steps : NAN, has_val,
                     val_loss, val_acc, now() - t0);
        if (c->ckpt_dir != NULL && !save_ckpt(r, epoch + 1, 0))
            return CLI_FAIL;
        if (g_stop && epoch + 1 < c->epochs) { /* after the last epoch: just finish */
            onyx_train_progress p;
            onyx_trainer_progress(r->t, &p);
            if (c->ckpt_dir != NULL)
                fprintf(stderr,
                        "onyx train: interrupted after step %lld (end of epoch %lld): "
                        "checkpoint %s (continue with --resume %s)\n",
                        (long long)p.step, (long long)epoch + 1, r->last_ckpt, r->last_ckpt);
            else
                fprintf(stderr,
                        "onyx train: interrupted after step %lld (end of epoch %lld); "
                        "no checkpoint written (no --checkpoint-dir)\n",
                        (long long)p.step, (long long)epoch + 1);
            return 130;
        }
    }
    return CLI_OK;
}

/* ---- setting up --------------------------------------------------------------------------- */

static int64_t product(const int64_t *dims, int rank)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

static bool all_known(const int64_t *dims, int rank)
{
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0)
            return false;
    return true;
}

/* The graph output called name (NULL: the first); false when it is not a graph output. */
static bool find_output(const onyx_model *m, const char *name, onyx_value_info *info)
{
    for (size_t i = 0; i < onyx_model_output_count(m); i++)
        if (onyx_model_output(m, i, info) == ONYX_OK &&
            (name == NULL || strcmp(info->name, name) == 0))
            return true;
    return false;
}

/*
 * Shapes of the batches from the model, and the targets checked against its output: the width
 * of the output comes from the model when it declares it, else from a prediction on one sample.
 */
static int setup_shapes(run *r, const onyx_model *m)
{
    onyx_value_info in;
    if (onyx_model_input(m, 0, &in) != ONYX_OK)
        return cli_fail(r->cmd, "%s: the model has no input to feed", r->c->model);
    if (in.rank >= 2 && all_known(in.dims + 1, in.rank - 1)) {
        r->x_rank = in.rank;
        memcpy(r->x_dims, in.dims, sizeof(r->x_dims));
    } else if (in.rank == 1) {
        r->x_rank = 1; /* [batch]: one feature per sample */
    } else {
        r->x_rank = 2;
        r->x_dims[1] = r->train.n_features;
    }

    onyx_value_info out;
    bool known = find_output(m, r->c->output, &out) && out.rank >= 1 &&
                 all_known(out.dims + 1, out.rank - 1);
    int out_rank = known ? out.rank : 0;
    int64_t out_dims[ONYX_MAX_RANK] = {0};
    if (known)
        memcpy(out_dims, out.dims, sizeof(out_dims));
    const char *out_name = r->c->output;
    if (out_name == NULL)
        out_name = onyx_model_output_count(m) > 0 && onyx_model_output(m, 0, &out) == ONYX_OK
                       ? out.name
                       : "?";
    if (!known) {
        /* learn the output's shape from one prediction */
        int64_t first = 0;
        data_gather(&r->train, &first, 1, r->xb, NULL, NULL);
        onyx_tensor x = {ONYX_DTYPE_F32, r->x_rank, {0}, r->xb};
        memcpy(x.dims, r->x_dims, sizeof(x.dims));
        x.dims[0] = 1;
        onyx_tensor y = {0};
        if (onyx_trainer_predict(r->t, &x, &y) != ONYX_OK)
            return cli_fail(r->cmd, "%s", onyx_trainer_errmsg(r->t));
        out_rank = y.rank;
        memcpy(out_dims, y.dims, sizeof(out_dims));
    }
    char what[300];
    snprintf(what, sizeof(what), "output \"%s\"", out_name);
    char msg[1024];
    if (r->classes) {
        if (out_rank != 2)
            return cli_fail(r->cmd,
                            "%s has rank %d: the %s loss on class indices needs "
                            "[batch, classes]",
                            what, out_rank, r->c->loss);
        if (!data_check_classes(&r->train, out_dims[1], what, msg, sizeof(msg)) ||
            (r->c->val != NULL &&
             !data_check_classes(&r->val, out_dims[1], what, msg, sizeof(msg))))
            return cli_fail(r->cmd, "%s", msg);
        r->y_rank = 1;
    } else {
        if (out_rank < 1)
            return cli_fail(r->cmd, "%s is a scalar: expected [batch, ...]", what);
        int64_t per = product(out_dims + 1, out_rank - 1);
        bool unit = r->loss == ONYX_LOSS_BCE;
        if (!data_check_targets(&r->train, per, unit, what, msg, sizeof(msg)) ||
            (r->c->val != NULL && !data_check_targets(&r->val, per, unit, what, msg, sizeof(msg))))
            return cli_fail(r->cmd, "%s", msg);
        r->y_rank = out_rank;
        memcpy(r->y_dims, out_dims, sizeof(r->y_dims));
    }
    return CLI_OK;
}

/* Loads the model's description and the data sets into r. */
static int load_data(run *r, const onyx_model *m)
{
    const train_cfg *c = r->c;
    onyx_value_info in;
    if (onyx_model_input_count(m) < 1 || onyx_model_input(m, 0, &in) != ONYX_OK)
        return cli_fail(r->cmd, "%s: the model has no input to feed", c->model);
    if (in.dtype != ONYX_DTYPE_F32)
        return cli_fail(r->cmd, "%s: input \"%s\" is %s; onyx train feeds float32 features",
                        c->model, in.name, onyx_dtype_name(in.dtype));
    char shape[256];
    cli_value_shape(&in, shape, sizeof(shape));
    char desc[512];
    snprintf(desc, sizeof(desc), "input \"%s\" %s", in.name, shape);
    data_spec spec = {c->data, c->targets, c->target_column, r->classes, -1, desc};
    if (in.rank == 1)
        spec.n_features = 1;
    else if (in.rank >= 2 && all_known(in.dims + 1, in.rank - 1))
        spec.n_features = product(in.dims + 1, in.rank - 1);
    char msg[1024];
    if (!data_load(&spec, &r->train, msg, sizeof(msg)))
        return cli_fail(r->cmd, "%s", msg);
    if (c->val != NULL) {
        if (spec.n_features < 0)
            spec.n_features = r->train.n_features;
        spec.path = c->val;
        spec.targets_path = c->val_targets;
        if (!data_load(&spec, &r->val, msg, sizeof(msg)))
            return cli_fail(r->cmd, "%s", msg);
    }
    return CLI_OK;
}

static int alloc_batches(run *r)
{
    size_t b = (size_t)r->c->batch;
    size_t n_order = (size_t)(r->train.n > r->c->batch ? r->train.n : r->c->batch);
    r->order = malloc(n_order * sizeof(*r->order));
    r->vidx = malloc(b * sizeof(*r->vidx));
    r->xb = malloc(b * (size_t)r->train.n_features * sizeof(float) + 1);
    if (r->classes)
        r->lb = malloc(b * sizeof(int64_t));
    else
        r->yb = malloc(b * (size_t)r->train.n_targets * sizeof(float) + 1);
    if (r->order == NULL || r->vidx == NULL || r->xb == NULL || (r->lb == NULL && r->yb == NULL))
        return cli_fail(r->cmd, "out of memory for batches of %lld samples",
                        (long long)r->c->batch);
    return CLI_OK;
}

/* Prints what is about to happen (text mode only). */
static void print_plan(const run *r, const onyx_train_options *opt, int64_t epoch, int64_t position,
                       const char *resumed)
{
    size_t n_params = onyx_trainer_param_count(r->t);
    int64_t floats = 0;
    for (size_t i = 0; i < n_params; i++) {
        int64_t n = 0;
        onyx_trainer_param_name(r->t, i, &n);
        floats += n;
    }
    printf("training %s on %s: %lld samples of %lld features; %s loss; batch %lld, %lld steps "
           "per epoch%s; %lld parameters in %zu tensors\n",
           r->c->model, r->c->data, (long long)r->train.n, (long long)r->train.n_features,
           r->c->loss, (long long)r->c->batch, (long long)r->steps_per_epoch,
           r->c->shuffle ? ", shuffled" : "", (long long)floats, n_params);
    if (resumed != NULL) {
        onyx_train_progress p;
        onyx_trainer_progress(r->t, &p);
        printf("resumed from %s: step %lld, epoch %lld, sample %lld; lr %g\n", resumed,
               (long long)p.step, (long long)epoch + 1, (long long)position,
               (double)onyx_trainer_lr(r->t));
    } else {
        printf("optimizer %s, lr %g\n",
               opt->optimizer == ONYX_OPTIMIZER_SGD    ? "sgd"
               : opt->optimizer == ONYX_OPTIMIZER_ADAM ? "adam"
                                                       : "adamw",
               (double)onyx_trainer_lr(r->t));
    }
    fflush(stdout);
}

int cmd_train(int argc, char **argv)
{
    const char *cmd = argv[0];
    train_cfg c;
    int rc = parse_args(argc, argv, &c);
    if (rc != CLI_OK) {
        free(c.freeze);
        free(c.plugins);
        return rc < 0 ? CLI_OK : rc;
    }

    run r;
    memset(&r, 0, sizeof(r));
    r.cmd = cmd;
    r.c = &c;
    onyx_model *m = NULL;
    onyx_registry *reg = NULL;
    onyx_error err = {ONYX_OK, ""};
    char resume_path[4096] = "";
    onyx_checkpoint_info ck;
    memset(&ck, 0, sizeof(ck));

    /* The checkpoint first: it fixes the loss, and a bad one should fail before any work. */
    if (c.resume != NULL) {
        rc = resolve_resume(cmd, c.resume, resume_path, sizeof(resume_path));
        if (rc != CLI_OK)
            goto done;
        if (onyx_checkpoint_info_read(resume_path, &ck, &err) != ONYX_OK) {
            rc = cli_fail(cmd, "--resume: %s", err.msg);
            goto done;
        }
        if (c.loss != NULL && strcmp(c.loss, ck.loss) != 0) {
            rc = cli_fail(cmd, "--loss %s, but %s was trained with the %s loss", c.loss,
                          resume_path, ck.loss);
            goto done;
        }
        if (c.optimizer != NULL && strcmp(c.optimizer, ck.optimizer) != 0) {
            rc = cli_fail(cmd,
                          "--optimizer %s, but %s was trained with %s (a resumed run keeps "
                          "the checkpoint's optimizer)",
                          c.optimizer, resume_path, ck.optimizer);
            goto done;
        }
        if (c.loss == NULL)
            c.loss = ck.loss;
    }
    if (!parse_loss(c.loss, &r.loss)) {
        rc = cli_fail(cmd, "%s: unknown loss '%s'", resume_path, c.loss);
        goto done;
    }
    r.classes = r.loss == ONYX_LOSS_CE || r.loss == ONYX_LOSS_NLL;

    rc = cli_load_plugins(cmd, c.plugins, c.n_plugins, c.verbose, &reg);
    if (rc != CLI_OK)
        goto done;
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = reg;
    if (onyx_model_load_ex(c.model, &lo, &m, &err) != ONYX_OK) {
        rc = cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    rc = load_data(&r, m);
    if (rc != CLI_OK)
        goto done;
    r.steps_per_epoch = c.drop_last ? r.train.n / c.batch : (r.train.n + c.batch - 1) / c.batch;
    if (r.steps_per_epoch == 0) {
        rc = cli_fail(cmd, "%s: %lld samples make no batch of %lld with --drop-last", c.data,
                      (long long)r.train.n, (long long)c.batch);
        goto done;
    }

    onyx_train_options opt;
    onyx_train_options_init(&opt);
    opt.loss = r.loss;
    opt.output = c.output;
    if (c.optimizer != NULL)
        parse_optimizer(c.optimizer, &opt.optimizer);
    else if (c.resume != NULL)
        parse_optimizer(ck.optimizer, &opt.optimizer);
    opt.lr = (float)c.lr;
    opt.momentum = (float)c.momentum;
    opt.nesterov = c.nesterov;
    if (c.weight_decay >= 0.0)
        opt.weight_decay = (float)c.weight_decay;
    opt.schedule = c.schedule;
    opt.step_size = c.step_size;
    opt.gamma = (float)c.gamma;
    opt.total_steps =
        c.epochs > INT64_MAX / r.steps_per_epoch ? INT64_MAX : c.epochs * r.steps_per_epoch;
    opt.warmup = c.warmup;
    opt.clip_grad_norm = (float)c.clip;
    opt.add_dropout = (float)c.add_dropout;
    opt.threads = (int)c.threads;
    opt.freeze = c.freeze;
    opt.n_freeze = c.n_freeze;
    opt.seed = c.seed;
    opt.registry = reg;
    if (c.verbose) {
        opt.log = cli_log;
        opt.log_user = (void *)cmd;
    }
    if (onyx_trainer_create(c.model, &opt, &r.t, &err) != ONYX_OK) {
        rc = cli_fail(cmd, "%s", err.msg);
        goto done;
    }
    rc = alloc_batches(&r);
    if (rc == CLI_OK)
        rc = setup_shapes(&r, m);
    if (rc != CLI_OK)
        goto done;

    int64_t epoch = 0;
    int64_t position = 0;
    r.data_seed = c.seed;
    if (c.resume != NULL) {
        if (onyx_trainer_load(r.t, resume_path) != ONYX_OK) {
            rc = cli_fail(cmd, "--resume: %s", onyx_trainer_errmsg(r.t));
            goto done;
        }
        onyx_train_progress p;
        onyx_trainer_progress(r.t, &p);
        epoch = p.epoch;
        position = p.position;
        r.data_seed = p.data_seed;
        if (position < 0 || position > r.train.n || epoch < 0) {
            rc = cli_fail(cmd,
                          "--resume: %s stopped at sample %lld of epoch %lld, but %s has "
                          "%lld samples: resume with the data it was trained on",
                          resume_path, (long long)position, (long long)epoch + 1, c.data,
                          (long long)r.train.n);
            goto done;
        }
        snprintf(r.last_ckpt, sizeof(r.last_ckpt), "%s", resume_path);
    }

    r.tty = !c.json && isatty(STDOUT_FILENO);
    r.log_every = c.log_every > 0 ? c.log_every : c.json ? 1 : (r.steps_per_epoch + 9) / 10;
    if (c.ckpt_dir != NULL && !make_dirs(c.ckpt_dir)) {
        rc = cli_fail(cmd, "--checkpoint-dir %s: cannot create the folder: %s", c.ckpt_dir,
                      strerror(errno));
        goto done;
    }
    if (c.ckpt_dir != NULL)
        remove_dead_temps(c.ckpt_dir);
    if (!c.json)
        print_plan(&r, &opt, epoch, position, c.resume != NULL ? resume_path : NULL);
    if (epoch >= c.epochs && !c.json)
        printf("%s already holds %lld epoch(s): nothing to train (raise --epochs)\n", resume_path,
               (long long)epoch);

    g_stop = 0;
    catch_signals();
    rc = train_loop(&r, epoch, position);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (rc != CLI_OK)
        goto done;

    if (c.export_path != NULL && onyx_trainer_export(r.t, c.export_path) != ONYX_OK) {
        rc = cli_fail(cmd, "-o %s: %s", c.export_path, onyx_trainer_errmsg(r.t));
        goto done;
    }
    if (!c.json) {
        onyx_train_progress p;
        onyx_trainer_progress(r.t, &p);
        printf("done: %lld steps, last loss %.4f", (long long)p.step, (double)p.last_loss);
        if (r.last_ckpt[0] != '\0' && c.ckpt_dir != NULL)
            printf("; checkpoint %s", r.last_ckpt);
        if (c.export_path != NULL)
            printf("; model written to %s", c.export_path);
        printf("\n");
    }

done:
    end_bar(&r);
    free(r.order);
    free(r.vidx);
    free(r.xb);
    free(r.lb);
    free(r.yb);
    data_free(&r.train);
    data_free(&r.val);
    onyx_trainer_destroy(r.t);
    onyx_model_destroy(m);
    onyx_registry_destroy(reg); /* after the model and trainer, which run its code */
    free(c.freeze);
    free(c.plugins);
    return rc;
}
