"""torch_bench.py — PyTorch's side of bench/run.sh: the same MLP as an nn.Sequential of Linear
and ReLU layers, timed for inference (torch.inference_mode) and for one training step (forward,
cross-entropy loss, backward, SGD step) on 1 and 2 threads.

usage: python3 torch_bench.py --name NAME --layers 784,512,256,10 --batch 1,64,256
                              --threads 1,2 [--time S] [--train]

For every (threads, batch) pair: torch.set_num_threads(threads) and the same count for the BLAS
(Debian's torch calls the pthreads OpenBLAS, whose own thread pool torch.set_num_threads does not
size: without openblas_set_num_threads the "1 thread" GEMMs ran on every core), 3 warm-up runs,
then runs until S seconds have passed (at least 5, at most 10000). One line per pair, as
bench_onyx prints:
    RESULT torch NAME infer|train BATCH THREADS MEDIAN_MS P90_MS ITERS
"""
import argparse
import ctypes
import sys
import time

import torch


def blas_threads_setter():
    """openblas_set_num_threads of the BLAS torch has loaded (dlopen of a loaded soname returns
    that same library), or None with a note when there is none."""
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            fn = ctypes.CDLL(name).openblas_set_num_threads
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        return fn
    print("torch_bench: no OpenBLAS found: the BLAS thread count is not set", file=sys.stderr)
    return None


def ints(s):
    return [int(v) for v in s.split(",")]


def mlp(layers):
    mods = []
    for i in range(len(layers) - 1):
        mods.append(torch.nn.Linear(layers[i], layers[i + 1]))
        if i < len(layers) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def timed(fn, budget):
    for _ in range(3):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < 10000:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1e3)
        if len(times) >= 5 and t1 - start >= budget:
            break
    return times


def report(name, mode, batch, threads, times):
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    p90 = times[min(n - 1, (n * 9) // 10)]
    print(f"RESULT torch {name} {mode} {batch} {threads} {med:.4f} {p90:.4f} {n}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="model")
    p.add_argument("--layers", type=ints, required=True)
    p.add_argument("--batch", type=ints, default=[1, 64, 256])
    p.add_argument("--threads", type=ints, default=[1])
    p.add_argument("--time", type=float, default=1.0)
    p.add_argument("--train", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    model = mlp(a.layers)
    set_blas_threads = blas_threads_setter()
    for batch in a.batch:
        for threads in a.threads:
            torch.set_num_threads(threads)
            if set_blas_threads:
                set_blas_threads(threads)
            x = torch.rand(batch, a.layers[0]) * 2 - 1
            if a.train:
                model.train()
                y = torch.randint(0, a.layers[-1], (batch,))
                opt = torch.optim.SGD(model.parameters(), lr=0.01)
                loss_fn = torch.nn.CrossEntropyLoss()

                def step():
                    opt.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    opt.step()

                report(a.name, "train", batch, threads, timed(step, a.time))
            else:
                model.eval()

                def infer():
                    with torch.inference_mode():
                        model(x)

                report(a.name, "infer", batch, threads, timed(infer, a.time))


if __name__ == "__main__":
    main()
