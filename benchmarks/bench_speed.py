"""chainrule against PyTorch, each contender in a process of its own: the goals table of issue 13.

    python benchmarks/bench_speed.py                 # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench_speed.py --quick         # 3 repetitions, fewer samples, prints only
    python benchmarks/bench_speed.py --reps 9 --output /tmp/results.md

Method (the fairness rules of issues 12 and 13):
- Every measurement is a fresh process running one contender only (no other
  thread pool alive in it), so one library's spinning threads cannot starve
  another's. Within a repetition the contenders run one after the other and
  the order rotates from one repetition to the next; at least 7 repetitions
  by default, reported as min / median / max.
- Each contender trains on the same samples (the bundled MNIST digits, in
  order, no shuffling) with the same network, batch size and optimizer; only
  the training loop is timed (after a warm-up of a few steps, which also pays
  numba's compilation, cached on disk, and PyTorch's first-call costs).
- The load rows start N busy processes (pure Python loops, one core each)
  before the repetitions of that row and stop them after; the 1-minute load
  average is recorded.
- GFLOP/s count the FLOPs actually done per sample: forward 2*in*out per
  layer, weight gradient 2*in*out per layer, input gradient 2*in*out for
  every layer but the first (skipped by both libraries). The ceiling is a
  float32 2048x2048 matrix product through NumPy's BLAS, on all threads and
  on one, measured in its own process.

Nothing here is imported by the library or the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLP = (784, 256, 128, 10)
RECIPE = (784, 512, 256, 10)  # DigitRecipe's network (dropout 0.2, Adam, batch 256)

# case: (sizes, batch, optimizer, samples (full), samples (quick))
CASES = {
    "mlp_b128_sgd": (MLP, 128, "sgd", 16384, 2048),
    "mlp_b32_sgd": (MLP, 32, "sgd", 8192, 1024),
    "mlp_b128_adam": (MLP, 128, "adam", 16384, 2048),
    "mlp_b1_sgd": (MLP, 1, "sgd", 1000, 200),
    "tiny_341": ((3, 4, 1), 1, "sgd", 20000, 1000),
}
RECIPE_SAMPLES = (16384, 2048)
#: The CNN recipe (chainrule.recipes_cnn: conv 32 5x5, pool, conv 64 5x5, pool, 128 hidden,
#: dropout 0.3, Adam, batch 128), one epoch over this many digits (full, quick).
CNN_SAMPLES = (2048, 512)
#: Forward FLOPs per 28x28 digit of that CNN: each conv 2*k*k*c_in*c_out per output pixel,
#: each Dense 2*in*out; a training step does about three times the forward's work, less the
#: first conv's input gradient (which neither library computes).
CNN_FORWARD = (2 * 25 * 1 * 32 * 28 * 28, 2 * 25 * 32 * 64 * 14 * 14, 2 * 3136 * 128, 2 * 128 * 10)
#: Default thread counts the workers reported (chainrule: the BLAS's; PyTorch: its own).
THREADS: dict[str, object] = {}


def cnn_flops_per_sample() -> float:
    return 3 * sum(CNN_FORWARD) - CNN_FORWARD[0]


def flops_per_sample(sizes: tuple[int, ...]) -> float:
    pairs = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    return 2 * forward + sum(2 * a * b for a, b in pairs[1:])


# -- workers (run in their own process) -----------------------------------------------


def _data(sizes: tuple[int, ...], n: int):
    import numpy as np

    if sizes[0] == 784:
        from chainrule.datasets import load_mnist

        (x, y), _ = load_mnist()
        reps = -(-n // len(x))
        return np.tile(x, (reps, 1))[:n].astype(np.float32), np.tile(y, reps)[:n]
    rng = np.random.default_rng(0)
    x = rng.random((n, sizes[0]), dtype=np.float32)
    return x, (x.sum(axis=1) > sizes[0] / 2).astype(np.float32)


def worker_chainrule(case: str, samples: int, threads: str) -> dict:
    import numpy as np

    import chainrule as cr
    from chainrule import kernels

    threads_arg: int | str = threads if threads == "auto" else int(threads)
    if case == "cnn":
        from chainrule.datasets import load_mnist
        from chainrule.recipes_cnn import CNNRecipe, build_cnn

        recipe = CNNRecipe()
        net, batch = build_cnn(recipe), recipe.batch_size
        (x, y), _ = load_mnist(flatten=False)
        x, y = x[:samples].astype(np.float32), y[:samples]
    elif case == "recipe":
        from chainrule.recipes import DigitRecipe, build_network

        net = build_network(DigitRecipe())
        sizes, batch = RECIPE, DigitRecipe().batch_size
    else:
        sizes, batch, opt, _, _ = CASES[case]
        tiny = sizes[0] == 3
        optimizer = cr.SGD(lr=0.01) if opt == "sgd" else cr.Adam(lr=1e-3)
        net = cr.Network.from_sizes(
            list(sizes), activation="relu", loss="squared_error" if tiny else "cross_entropy",
            optimizer=optimizer, init="he_normal", seed=0,
        )
    if case != "cnn":
        x, y = _data(sizes, samples)
    warm = min(len(x), 8 * batch)
    net.fit(x[:warm], y[:warm], epochs=1, batch_size=batch, shuffle=False, verbose=0,
            threads=threads_arg)
    start = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=batch, shuffle=False, verbose=0, threads=threads_arg)
    seconds = time.perf_counter() - start
    from chainrule.threads import blas_threads

    return {"seconds": seconds, "samples": len(x), "kernels": kernels.enabled(),
            "threads": blas_threads(), "finite": bool(np.isfinite(net.predict(x[:4])).all())}


def worker_torch(case: str, samples: int, threads: str) -> dict:
    import torch

    if threads != "default":
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    nn = torch.nn
    if case == "cnn":  # chainrule.recipes_cnn.build_cnn(CNNRecipe()), layer for layer
        batch, opt, lr, tiny = 128, "adam", 2e-3, False
        model = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
        )
        from chainrule.datasets import load_mnist

        (x, y), _ = load_mnist(flatten=False)
        x, y = x[:samples].astype("float32"), y[:samples]
    elif case == "recipe":
        sizes, batch, opt = RECIPE, 256, "adam"
        layers = [torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                  torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                  torch.nn.Linear(256, 10)]
        lr = 2e-3
    else:
        sizes, batch, opt, _, _ = CASES[case]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2 or sizes[0] == 3:
                layers.append(torch.nn.ReLU())
        lr = 0.01 if opt == "sgd" else 1e-3
    if case != "cnn":
        model = torch.nn.Sequential(*layers)
        tiny = sizes[0] == 3
        x, y = _data(sizes, samples)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr) if opt == "sgd" else \
        torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss(reduction="sum") if tiny else torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.reshape(-1, 1)) if tiny else torch.from_numpy(y.astype("int64"))

    def run(n: int) -> None:
        model.train()
        for i in range(0, n, batch):
            xb, yb = xt[i : i + batch], yt[i : i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()

    run(min(len(x), 8 * batch))
    start = time.perf_counter()
    run(len(x))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples": len(x), "threads": torch.get_num_threads(),
            "version": torch.__version__}


def worker_compile() -> dict:
    """Seconds a first training step pays for the kernels: numba's import, then compiling
    (empty cache) or loading them (warm cache), for float32 batches, one sample and Adam."""
    import numpy as np

    import chainrule as cr
    from chainrule import kernels

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    kernels.compiled()
    for sizes, loss, optimizer, batch in (
        ((20, 16, 3), "cross_entropy", cr.SGD(lr=0.1, momentum=0.9), 8),
        ((3, 4, 1), "squared_error", cr.SGD(lr=0.1), 1),
        ((20, 16, 3), "cross_entropy", cr.Adam(), 8),
    ):
        net = cr.Network.from_sizes(list(sizes), loss=loss, optimizer=optimizer, seed=0)
        x = rng.random((8, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], 8) if loss == "cross_entropy" else x.sum(axis=1) > 1
        net.fit(x, y.astype(np.float32) if loss != "cross_entropy" else y, batch_size=batch,
                verbose=0, threads=1)
    return {"seconds": time.perf_counter() - start, "kernels": kernels.enabled()}


def worker_sgemm(threads: str) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(None if threads == "all" else int(threads)):
        a @ a
        best = min(_time(lambda: a @ a) for _ in range(5))
    return {"gflops": 2 * 2048**3 / best / 1e9}


def _time(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


# -- the driver ------------------------------------------------------------------------


def run_worker(contender: str, case: str, samples: int | str, threads: str, kernels_mode: str) -> dict:
    env = dict(os.environ, CHAINRULE_KERNELS=kernels_mode, PYTHONHASHSEED="0")
    env.pop("OPENBLAS_NUM_THREADS", None)
    command = [sys.executable, __file__, "--worker", contender, case, str(samples), threads]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{contender} {case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait(timeout=10)


def rounds(contenders: list[tuple], reps: int, case: str, samples: int | str,
           cases: list[str]) -> dict[str, dict[str, list[float]]]:
    """Run every contender ``reps`` times, rotating the order; samples per second each time.

    One process per contender and repetition runs every case in ``cases``
    (``case`` "all") or the one case; the result is ``{case: {label: [rates]}}``.
    """
    results: dict[str, dict[str, list[float]]] = {c: {k[0]: [] for k in contenders} for c in cases}
    for r in range(reps):
        order = contenders[r % len(contenders):] + contenders[: r % len(contenders)]
        for label, contender, threads, kmode in order:
            out = run_worker(contender, case, samples, threads, kmode)
            for c in cases:
                results[c][label].append(out[c]["samples"] / out[c]["seconds"])
                THREADS[contender] = out[c].get("threads", "?")
                if "version" in out[c]:
                    THREADS["torch version"] = out[c]["version"]
        for c in cases:
            print(f"  {c} rep {r + 1}/{reps}: " + ", ".join(
                f"{k} {v[-1]:,.0f}/s" for k, v in results[c].items()), flush=True)
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def ratio(a: list[float], b: list[float]) -> str:
    """Median ratio, with the range of per-repetition ratios (same repetition = same conditions)."""
    r = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fewer samples; prints only")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 7, quick 3)")
    parser.add_argument("--loads", default="0,1,2,4", help="busy processes for the load rows")
    parser.add_argument("--skip-idle", action="store_true", help="only the load rows")
    parser.add_argument("--skip-cnn", action="store_true", help="leave out the CNN row")
    parser.add_argument("--output", default=None, help="where to write the table (default RESULTS.md)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        contender, case, samples, threads = args.worker
        if contender == "sgemm":
            print(json.dumps(worker_sgemm(threads)))
            return 0
        if contender == "compile":
            print(json.dumps(worker_compile()))
            return 0
        work = worker_torch if contender == "torch" else worker_chainrule
        if case == "all":  # every idle case, one after the other, in this one process
            size = 3 if samples == "full" else 4
            result = {c: work(c, spec[size], threads) for c, spec in CASES.items()}
        else:
            result = {case: work(case, int(samples), threads)}
        print(json.dumps(result))
        return 0

    reps = args.reps or (3 if args.quick else 7)
    which = 1 if args.quick else 0
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    lines: list[str] = []

    sgemm_all = run_worker("sgemm", "-", 0, "all", "numpy")["gflops"]
    sgemm_one = run_worker("sgemm", "-", 0, "1", "numpy")["gflops"]
    print(f"SGEMM ceiling: {sgemm_all:.0f} GFLOP/s (all threads), {sgemm_one:.0f} (1 thread)")
    # The kernels' first use: an empty numba cache (compiling), then the same cache again (loading).
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache
        try:
            cold = run_worker("compile", "-", 0, "1", "auto")["seconds"]
            warm = run_worker("compile", "-", 0, "1", "auto")["seconds"]
        finally:
            del os.environ["NUMBA_CACHE_DIR"]
    print(f"kernels' first use: {cold:.1f} s compiling (empty cache), {warm:.2f} s loading (cached)")

    idle: dict[str, dict[str, list[float]]] = {}
    if not args.skip_idle:
        contenders = [
            ("chainrule[fast]", "chainrule", "auto", "auto"),
            ("chainrule numpy", "chainrule", "auto", "numpy"),
            ("PyTorch", "torch", "default", "numpy"),
        ]
        idle = rounds(contenders, reps, "all", "quick" if args.quick else "full", list(CASES))
        if not args.skip_cnn:
            idle.update(rounds(contenders, reps, "cnn", CNN_SAMPLES[which], ["cnn"]))

    loads: dict[int, dict[str, list[float]]] = {}
    load_avgs: dict[int, str] = {}
    load_contenders = [
        ("chainrule auto", "chainrule", "auto", "auto"),
        ("chainrule 1 thread", "chainrule", "1", "auto"),
        (f"chainrule {os.cpu_count()} threads", "chainrule", str(os.cpu_count()), "auto"),
        ("PyTorch", "torch", "default", "numpy"),
    ]
    for n_busy in [int(v) for v in args.loads.split(",") if v.strip()]:
        procs = busy(n_busy)
        try:
            time.sleep(1.0 if n_busy else 0)
            loads[n_busy] = rounds(load_contenders, reps, "recipe", RECIPE_SAMPLES[which],
                                   ["recipe"])["recipe"]
            load_avgs[n_busy] = loadavg()
        finally:
            stop(procs)

    # -- the report ---------------------------------------------------------------------
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip() or "?"
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines.append("# chainrule speed against PyTorch (issue 13's goals)")
    lines.append("")
    lines.append(f"Date: {started:%Y-%m-%d %H:%M} UTC. Commit: {commit}. Command: "
                 f"`python benchmarks/bench_speed.py{' --quick' if args.quick else ''}"
                 f"{f' --reps {args.reps}' if args.reps else ''}`.")
    lines.append("")
    lines.append(f"Machine: {cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; "
                 f"NumPy {np.__version__}; load average (1 min) at the start {load_before}, "
                 f"at the end {loadavg()}. SGEMM ceiling (float32 2048x2048 through NumPy's BLAS): "
                 f"{sgemm_all:.0f} GFLOP/s on all threads, {sgemm_one:.0f} on one. Default "
                 f"threads: NumPy's BLAS {THREADS.get('chainrule', '?')} (what "
                 f"`threads=\"auto\"` chooses among, with 1), PyTorch "
                 f"{THREADS.get('torch', '?')} (PyTorch {THREADS.get('torch version', '?')}).")
    lines.append("")
    lines.append(f"First use of the kernels (numba's import plus compiling every kernel a float32 "
                 f"MLP step with SGD, one-sample steps and Adam need): {cold:.1f} s with an empty "
                 f"cache, once per installation; {warm:.2f} s in later processes, which load the "
                 f"cache.")
    lines.append("")
    lines.append(f"Each figure: samples per second, median (min-max) over {reps} repetitions, each "
                 "contender in a fresh process, order rotating; ratios are per repetition "
                 "(chainrule / PyTorch), median (min-max). chainrule uses its defaults "
                 "(`threads=\"auto\"`; `[fast]` = numba kernels on, `numpy` = "
                 "`CHAINRULE_KERNELS=numpy`); PyTorch its default threads. Each process first "
                 "trains 8 untimed steps (the warm-up, which for `\"auto\"` is also its first "
                 "measurement of 1 against all threads), then the timed steps, during which "
                 "`\"auto\"` re-checks as it would in a long run.")
    lines.append("")
    if idle:
        lines.append("## Training speed, no added load")
        lines.append("")
        lines.append("| case | chainrule[fast] | chainrule numpy | PyTorch | [fast] / PyTorch | "
                     "numpy / PyTorch | GFLOP/s [fast] (% of ceiling) |")
        lines.append("|---|---|---|---|---|---|---|")
        for case, res in idle.items():
            flops = cnn_flops_per_sample() if case == "cnn" else flops_per_sample(CASES[case][0])
            gf = statistics.median(res["chainrule[fast]"]) * flops / 1e9
            lines.append(
                f"| {case} | {spread(res['chainrule[fast]'])} | {spread(res['chainrule numpy'])} | "
                f"{spread(res['PyTorch'])} | {ratio(res['chainrule[fast]'], res['PyTorch'])} | "
                f"{ratio(res['chainrule numpy'], res['PyTorch'])} | {gf:.1f} ({100 * gf / sgemm_all:.0f}%) |"
            )
        lines.append("")
        lines.append(f"Cases: {', '.join(f'{c}: {len(s[0]) - 1}-layer {s[0]}, batch {s[1]}, {s[2]}, {s[3 + which]} samples' for c, s in CASES.items())}. "
                     "The MLP cases use cross-entropy and relu; tiny_341 is the tutorials' 3-4-1 relu "
                     "network with squared error, one sample per step (`fit(batch_size=1)`)."
                     + (f" cnn: the CNN recipe's network (`chainrule.recipes_cnn`: conv 32 5x5, "
                        f"pool, conv 64 5x5, pool, 128 hidden, dropout 0.3), Adam, batch 128, "
                        f"{CNN_SAMPLES[which]} digits; its GFLOP/s count the convolutions' "
                        f"multiply-adds." if "cnn" in idle else ""))
        lines.append("")
    if loads:
        lines.append("## The default recipe under load")
        lines.append("")
        lines.append(f"DigitRecipe's network ({'-'.join(map(str, RECIPE))}, dropout 0.2, Adam, batch 256), "
                     f"one epoch over {RECIPE_SAMPLES[which]} samples, with N busy processes running "
                     "(one pure-Python loop each). Samples per second; the last columns compare "
                     "`threads=\"auto\"` with the best fixed count in the same repetitions.")
        lines.append("")
        labels = [c[0] for c in load_contenders]
        lines.append("| busy processes | load avg | " + " | ".join(labels) + " | auto / best fixed | PyTorch / auto |")
        lines.append("|---|---|" + "---|" * len(labels) + "---|---|")
        for n_busy, res in loads.items():
            fixed = [res[labels[1]], res[labels[2]]]
            best = max(fixed, key=statistics.median)
            lines.append(
                f"| {n_busy} | {load_avgs[n_busy]} | " + " | ".join(spread(res[k]) for k in labels)
                + f" | {ratio(res[labels[0]], best)} | {ratio(res['PyTorch'], res[labels[0]])} |"
            )
        lines.append("")
    text = "\n".join(lines)
    print()
    print(text)
    if not args.quick or args.output:
        path = Path(args.output) if args.output else HERE / "RESULTS.md"
        path.write_text(text + "\n")
        print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
