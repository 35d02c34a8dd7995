"""Training speed of chainrule against the peers a user would otherwise pick.

One run, one machine, the same data for everyone. For an MLP 784-256-128-10
(float32, relu, softmax cross-entropy, plain SGD, He-normal weights, zero
biases) it reports training samples per second (forward, backward and update)
at batch sizes 1, 32, 128 and 512 for

- chainrule through ``Network.fit`` (verbose 0 and 1) and a ``train_step`` loop,
- PyTorch on the CPU, threads set to the machine's cores,
- scikit-learn's ``MLPClassifier`` (sgd solver, one epoch per ``partial_fit``),
- a plain NumPy loop written the obvious way, as in the tutorials;

then microseconds per one-sample step on the tutorials' 3-4-1 relu network,
the machine's float32 matrix-multiply rate and the share of it chainrule
reaches, the peak memory of a training run in a fresh process, and the time
``import chainrule`` and ``import torch`` take.

Every number is a median over repetitions that alternate between the
contenders (A, B, C, A, B, C, ...), so a noisy neighbour hurts them alike.

Usage::

    python benchmarks/bench_training.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench_training.py --quick    # fewer samples and repeats, no file

Needs the ``bench`` extra (scikit-learn) and PyTorch; a missing peer is
skipped and reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (784, 256, 128, 10)
BATCH_SIZES = (1, 32, 128, 512)
LR = 0.01
# Pause between timed runs, so that BLAS / OpenMP worker threads still spinning
# after one contender's run do not steal the cores from the next one.
SETTLE_S = 0.1


def flops_per_sample(sizes: tuple[int, ...] = SIZES) -> int:
    """Multiply-add FLOPs of one training sample: forward, weight gradients, input gradients.

    Each Dense (in, out) costs ``2*in*out`` forward and ``2*in*out`` for its
    weight gradient; every layer but the first also passes ``2*in*out`` back.
    """
    pairs = list(zip(sizes[:-1], sizes[1:]))
    total = sum(4 * i * o for i, o in pairs)
    total += sum(2 * i * o for i, o in pairs[1:])
    return total


# -- data ---------------------------------------------------------------------


def load_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MNIST training digits (float32 in [0, 1], int64 labels); random data if unavailable."""
    try:
        from chainrule.datasets import load_mnist

        (x, y), _ = load_mnist()
        source = "MNIST (bundled with chainrule)"
    except Exception as error:  # noqa: BLE001 - any failure: fall back to synthetic data
        rng = np.random.default_rng(0)
        x = rng.random((n, SIZES[0]), dtype=np.float32)
        y = rng.integers(0, SIZES[-1], n)
        source = f"random ({type(error).__name__} loading MNIST)"
    reps = math.ceil(n / len(x))
    x = np.ascontiguousarray(np.tile(x, (reps, 1))[:n], dtype=np.float32)
    y = np.ascontiguousarray(np.tile(y, reps)[:n], dtype=np.int64)
    load_data.source = source  # type: ignore[attr-defined]
    return x, y


# -- contenders: each builds a model and returns a function "train one epoch" --------


def chainrule_network(seed: int = 0):
    import chainrule as cr

    return cr.Network.from_sizes(
        SIZES, activation="relu", loss="cross_entropy", optimizer=cr.SGD(lr=LR), seed=seed,
        dtype="float32",
    )


def make_chainrule_fit(x, y, batch_size, verbose=0):
    net = chainrule_network()

    def epoch() -> None:
        with contextlib.redirect_stderr(io.StringIO()) if verbose else contextlib.nullcontext():
            net.fit(x, y, epochs=1, batch_size=batch_size, verbose=verbose, seed=0)

    return epoch


def make_chainrule_steps(x, y, batch_size):
    net = chainrule_network()

    def epoch() -> None:
        step = net.train_step
        for start in range(0, len(x), batch_size):
            step(x[start : start + batch_size], y[start : start + batch_size])

    return epoch


def make_torch(x, y, batch_size, threads=None):
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        linear = torch.nn.Linear(n_in, n_out)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch() -> None:
        for start in range(0, len(xt), batch_size):
            xb, yb = xt[start : start + batch_size], yt[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss.item()  # chainrule's train_step returns the loss as a float too

    return _torch_threads(epoch, threads)


def _torch_threads(run: Callable[[], None], threads: int | None) -> Callable[[], None]:
    """``run`` with PyTorch held at ``threads`` threads (None: as set, the machine's cores)."""
    if threads is None:
        return run
    import torch

    def limited() -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            run()
        finally:
            torch.set_num_threads(saved)

    return limited


def make_sklearn(x, y, batch_size):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=SIZES[1:-1], activation="relu", solver="sgd", alpha=0.0,
        batch_size=batch_size, learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False,
        shuffle=True, random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.partial_fit(x[:batch_size], y[:batch_size], classes=np.arange(SIZES[-1]))

    def epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(x, y)  # one epoch over (x, y) in minibatches of batch_size

    return epoch


def make_numpy(x, y, batch_size):
    """The tutorials' loop: one matrix product per layer, a temporary for every step."""
    rng = np.random.default_rng(0)
    w = [
        (rng.normal(0, np.sqrt(2 / n_in), (n_out, n_in))).astype(np.float32)
        for n_in, n_out in zip(SIZES[:-1], SIZES[1:])
    ]
    b = [np.zeros(n_out, dtype=np.float32) for n_out in SIZES[1:]]
    eye = np.eye(SIZES[-1], dtype=np.float32)

    def epoch() -> None:
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            # forward
            z1 = xb @ w[0].T + b[0]
            h1 = np.maximum(z1, 0)
            z2 = h1 @ w[1].T + b[1]
            h2 = np.maximum(z2, 0)
            z3 = h2 @ w[2].T + b[2]
            e = np.exp(z3 - z3.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            loss = -np.mean(np.log(p[np.arange(len(yb)), yb] + 1e-12))
            # backward
            d3 = (p - eye[yb]) / len(yb)
            d2 = (d3 @ w[2]) * (z2 > 0)
            d1 = (d2 @ w[1]) * (z1 > 0)
            grads = [(d1.T @ xb, d1.sum(0)), (d2.T @ h1, d2.sum(0)), (d3.T @ h2, d3.sum(0))]
            # update
            for i, (gw, gb) in enumerate(grads):
                w[i] -= LR * gw
                b[i] -= LR * gb
            float(loss)

    return epoch


def make_tiny_chainrule(x, y):
    import chainrule as cr

    net = cr.Network.from_sizes(
        [3, 4, 1], activation="relu", loss="squared_error", optimizer=cr.SGD(lr=LR), seed=0
    )

    def run() -> None:
        step = net.train_step
        for xi, yi in zip(x, y):
            step(xi, yi)

    return run


def make_tiny_torch(x, y, threads=None):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    for module in (model[0], model[2]):
        torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        torch.nn.init.zeros_(module.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run() -> None:
        for xi, yi in zip(xt, yt):
            optimizer.zero_grad(set_to_none=True)
            loss = ((model(xi) - yi) ** 2).sum()
            loss.backward()
            optimizer.step()
            loss.item()

    return _torch_threads(run, threads)


def make_tiny_numpy(x, y):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, np.sqrt(2 / 3), (4, 3)).astype(np.float32)
    w2 = rng.normal(0, np.sqrt(2 / 4), (1, 4)).astype(np.float32)
    b1, b2 = np.zeros(4, np.float32), np.zeros(1, np.float32)

    def run() -> None:
        nonlocal w1, w2, b1, b2
        for xi, yi in zip(x, y):
            z1 = w1 @ xi + b1
            h1 = np.maximum(z1, 0)
            out = w2 @ h1 + b2
            d2 = 2 * (out - yi)
            d1 = (w2.T @ d2) * (z1 > 0)
            w2 -= LR * np.outer(d2, h1)
            b2 -= LR * d2
            w1 -= LR * np.outer(d1, xi)
            b1 -= LR * d1

    return run


# -- timing ----------------------------------------------------------------------------


def interleaved(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every function, alternating between them, after one warm-up each."""
    for run in runs.values():
        run()
    return _alternate(runs, repeats)


def interleaved_rates(
    makers: dict[str, Callable[[np.ndarray, np.ndarray], Callable[[], None]]],
    x: np.ndarray, y: np.ndarray, batch_size: int, repeats: int, budget_s: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median samples/s, and CPU microseconds per sample, of every contender.

    Each trains on a prefix of ``(x, y)``.

    A short probe sizes each contender's share of the data so that one
    repetition takes about ``budget_s`` (at most all of ``x``, at least 8
    batches): a slow peer on a busy machine must not stretch the run to hours.
    """
    probe = min(len(x), 8 * batch_size)
    counts = {}
    for name, make in makers.items():
        run = make(x[:probe], y[:probe])
        run()  # first call: imports, allocations
        start = time.perf_counter()
        run()
        rate = probe / (time.perf_counter() - start)
        n = int(min(len(x), max(probe, rate * budget_s)))
        counts[name] = n - n % batch_size or batch_size
    runs = {name: make(x[: counts[name]], y[: counts[name]]) for name, make in makers.items()}
    CPU_SECONDS.clear()
    times = interleaved(runs, repeats)
    rates = {name: counts[name] / statistics.median(t) for name, t in times.items()}
    cpu_us = {name: statistics.median(CPU_SECONDS[name]) / counts[name] * 1e6 for name in runs}
    return rates, cpu_us


def _with_batch(make, batch_size, x, y):
    return make(x, y, batch_size)


def _alternate(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for i in range(repeats):
        # Rotate the order, so no contender always runs right after the same other one.
        for name in names[i % len(names):] + names[: i % len(names)]:
            run = runs[name]
            time.sleep(SETTLE_S)
            start, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            CPU_SECONDS.setdefault(name, []).append(time.process_time() - cpu)
    return times


#: Process CPU seconds of every timed call, by contender (all threads together):
#: less sensitive than wall time to other processes, and it shows spinning threads.
CPU_SECONDS: dict[str, list[float]] = {}


def sgemm_rate(n: int, repeats: int, threads: int | None = None) -> float:
    """GFLOP/s of a float32 n x n matrix product (the BLAS numpy uses)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    limit = _blas_threads(threads)
    with limit:
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def _blas_threads(threads: int | None):
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


# -- fresh-process measurements ------------------------------------------------------------

CHILD_TRAIN = {
    "chainrule": """
import chainrule as cr
net = cr.Network.from_sizes({sizes}, activation="relu", loss="cross_entropy",
                            optimizer=cr.SGD(lr={lr}), seed=0)
net.fit(x, y, epochs=1, batch_size=128, verbose=0, seed=0)
""",
    "torch": """
import torch
torch.set_num_threads({threads})
layers = []
sizes = {sizes}
for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(torch.nn.Linear(n_in, n_out))
    if i < len(sizes) - 2:
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers)
opt = torch.optim.SGD(model.parameters(), lr={lr})
xt, yt = torch.from_numpy(x), torch.from_numpy(y)
perm = torch.randperm(len(xt))
xt, yt = xt[perm], yt[perm]
for s in range(0, len(xt), 128):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(xt[s:s + 128]), yt[s:s + 128])
    loss.backward()
    opt.step()
    loss.item()
""",
    "numpy only": "",
}


def peak_rss_mib(kind: str, data_file: str) -> float:
    """Peak resident memory (MiB) of a fresh process that loads the data and trains one epoch."""
    body = CHILD_TRAIN[kind].format(sizes=list(SIZES), lr=LR, threads=os.cpu_count())
    code = (
        "import numpy as np\n"
        f"data = np.load({data_file!r})\n"
        "x, y = data['x'], data['y']\n"
        f"{body}\n"
        "print(peak_kib())\n"
    )
    out = subprocess.run([sys.executable, "-c", _PEAK_KIB + code], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


# ru_maxrss survives fork + exec on Linux: a child started from this (large)
# process would report at least the parent's size. VmHWM belongs to the new
# address space only, so it is read first, ru_maxrss where there is no /proc.
_PEAK_KIB = """
def peak_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""


def import_seconds(module: str) -> float:
    code = (
        "import time\nstart = time.perf_counter()\n"
        f"import {module}\nprint(time.perf_counter() - start)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


# -- report -------------------------------------------------------------------------------


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    simd = [f for f in ("avx512f", "avx2", "fma") if f" {f}" in flags]
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        blas = ", ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads)" for i in libs
        ) or blas
    except ImportError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "simd": " ".join(simd) or "-",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas (numpy)": blas,
    }
    for module in ("torch", "sklearn", "chainrule"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = "not installed"
    return info


def fmt_rate(value: float) -> str:
    return f"{value / 1000:,.1f}k" if value >= 10_000 else f"{value:,.0f}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats; no file")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 5; 3 quick)")
    parser.add_argument("--samples", type=int, default=None,
                        help="most samples per timed repetition (default 10000; 2048 quick)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the Markdown report (default benchmarks/RESULTS.md; "
                             "--quick writes none unless given)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    samples = args.samples or (2048 if args.quick else 10_000)
    budget_s = 0.25 if args.quick else 1.0
    output = args.output if args.output or args.quick else HERE / "RESULTS.md"

    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        have_torch = True
    except ImportError:
        have_torch = False
    try:
        import sklearn  # noqa: F401

        have_sklearn = True
    except ImportError:
        have_sklearn = False

    command = "python benchmarks/bench_training.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_description()
    load_before = _load_average()
    print("machine:", json.dumps(machine, indent=1))
    x, y = load_data(samples)
    print(f"data: {samples} samples of {load_data.source}; repeats {repeats}\n")  # type: ignore

    # 1. Matrix-multiply rate of the machine, through numpy's BLAS.
    gemm_all = sgemm_rate(2048, repeats)
    gemm_one = sgemm_rate(2048, repeats, threads=1)
    print(f"sgemm 2048^3: {gemm_all:.0f} GFLOP/s all cores, {gemm_one:.0f} GFLOP/s one core\n")

    # 2. Samples per second by batch size.
    contenders = {
        "chainrule fit (verbose=0)": lambda xs, ys, b: make_chainrule_fit(xs, ys, b, 0),
        "chainrule fit (verbose=1)": lambda xs, ys, b: make_chainrule_fit(xs, ys, b, 1),
        "chainrule train_step loop": make_chainrule_steps,
    }
    if have_torch:
        contenders["PyTorch"] = make_torch
        contenders["PyTorch (1 thread)"] = functools.partial(make_torch, threads=1)
    if have_sklearn:
        contenders["scikit-learn MLPClassifier"] = make_sklearn
    contenders["plain NumPy loop"] = make_numpy
    rates: dict[int, dict[str, float]] = {}
    cpu_us: dict[int, dict[str, float]] = {}
    for batch_size in args.batch_sizes:
        makers = {name: functools.partial(_with_batch, make, batch_size)
                  for name, make in contenders.items()}
        rates[batch_size], cpu_us[batch_size] = interleaved_rates(
            makers, x, y, batch_size, repeats, budget_s
        )
        line = ", ".join(f"{k}: {fmt_rate(v)}" for k, v in rates[batch_size].items())
        print(f"batch {batch_size}: {line}", flush=True)

    # 3. The tutorials' 3-4-1 network, one sample per step.
    rng = np.random.default_rng(0)
    n_tiny = 500 if args.quick else 2000
    tx = rng.random((n_tiny, 3), dtype=np.float32)
    ty = (tx.sum(axis=1, keepdims=True) > 1.5).astype(np.float32)
    tiny_runs = {"chainrule": make_tiny_chainrule(tx, ty)}
    if have_torch:
        tiny_runs["PyTorch"] = make_tiny_torch(tx, ty)
        tiny_runs["PyTorch (1 thread)"] = make_tiny_torch(tx, ty, threads=1)
    tiny_runs["plain NumPy loop"] = make_tiny_numpy(tx, ty)
    tiny_times = interleaved(tiny_runs, repeats)
    tiny_us = {k: statistics.median(t) / n_tiny * 1e6 for k, t in tiny_times.items()}
    print("3-4-1 one sample per step (us):", {k: round(v, 1) for k, v in tiny_us.items()})

    # 4. Peak memory and import time, each in fresh processes.
    kinds = ["numpy only", "chainrule"] + (["torch"] if have_torch else [])
    rss: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "data.npz")
        np.savez(data_file, x=x, y=y)
        for _ in range(min(repeats, 3)):
            for kind in kinds:
                rss[kind].append(peak_rss_mib(kind, data_file))
    rss_mib = {k: statistics.median(v) for k, v in rss.items()}
    print("peak RSS (MiB):", {k: round(v, 1) for k, v in rss_mib.items()})
    modules = ["numpy", "chainrule"] + (["torch"] if have_torch else [])
    imports: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(repeats):
        for module in modules:
            imports[module].append(import_seconds(module))
    import_ms = {k: statistics.median(v) * 1000 for k, v in imports.items()}
    print("import time (ms):", {k: round(v) for k, v in import_ms.items()})

    machine["load average (1 min) before / after"] = f"{load_before} / {_load_average()}"
    report = render(
        command=command, machine=machine, samples=samples, repeats=repeats, rates=rates,
        gemm=(gemm_all, gemm_one), tiny_us=tiny_us, n_tiny=n_tiny, rss_mib=rss_mib,
        import_ms=import_ms, budget_s=budget_s, cpu_us=cpu_us,
    )
    print("\n" + report)
    if output is not None:
        output.write_text(report)
        print(f"\nwrote {output}")
    return 0


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def render(*, command, machine, samples, repeats, rates, gemm, tiny_us, n_tiny, rss_mib,
           import_ms, budget_s, cpu_us) -> str:
    gemm_all, gemm_one = gemm
    flops = flops_per_sample()
    steps_name = "chainrule train_step loop"
    fit_name = "chainrule fit (verbose=0)"
    names = list(next(iter(rates.values())))
    batch_sizes = list(rates)
    out = [
        "# chainrule training benchmark",
        "",
        f"Date: {datetime.date.today().isoformat()}. Command: `{command.strip()}`",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items()) + ".",
        "",
        f"MLP {'-'.join(map(str, SIZES))}, float32, relu, softmax cross-entropy, SGD "
        f"(lr={LR}, no momentum), He-normal weights. Data: "
        f"{getattr(load_data, 'source', '?')}; each repetition trains one contender on the "
        f"first samples, up to {samples}, sized by a probe to take about {budget_s:g} s. "
        f"Medians over {repeats} interleaved repetitions (A, B, C, then B, C, A, ...) after "
        "a warm-up. The train_step loop, PyTorch and the NumPy loop walk the data in order; "
        "fit and scikit-learn shuffle it every epoch.",
        "",
        "## Training throughput (samples/s, higher is better)",
        "",
    ]
    rows = [["contender"] + [f"batch {b}" for b in batch_sizes]]
    for name in names:
        rows.append([name] + [fmt_rate(rates[b][name]) for b in batch_sizes])
    out.append(table(rows))
    out += ["", "Ratios, chainrule train_step loop / peer (and fit / peer); above 1 means "
            "chainrule is faster:", ""]
    rows = [["peer"] + [f"batch {b}" for b in batch_sizes]]
    for name in names:
        if name.startswith("chainrule"):
            continue
        rows.append([name] + [
            f"{rates[b][steps_name] / rates[b][name]:.2f}x ({rates[b][fit_name] / rates[b][name]:.2f}x)"
            for b in batch_sizes
        ])
    rows.append(["fit (verbose=0) / train_step loop"] + [
        f"{rates[b][fit_name] / rates[b][steps_name]:.3f}" for b in batch_sizes])
    rows.append(["fit (verbose=1) / train_step loop"] + [
        f"{rates[b]['chainrule fit (verbose=1)'] / rates[b][steps_name]:.3f}"
        for b in batch_sizes])
    out.append(table(rows))
    out += [
        "",
        "Process CPU time per sample in microseconds (all threads together; spinning BLAS or "
        "OpenMP threads count too). Less disturbed than wall time by other processes; the "
        "last rows compare fit's CPU cost with the bare loop's (1.000 = no overhead).",
        "",
    ]
    rows = [["contender"] + [f"batch {b}" for b in batch_sizes]]
    for name in names:
        rows.append([name] + [f"{cpu_us[b][name]:.1f}" for b in batch_sizes])
    for verbose in (0, 1):
        fit = f"chainrule fit (verbose={verbose})"
        rows.append([f"fit (verbose={verbose}) / train_step loop, CPU"] + [
            f"{cpu_us[b][fit] / cpu_us[b][steps_name]:.3f}" for b in batch_sizes])
    out.append(table(rows))
    if 1 in rates:
        out += ["", "One sample per step on this network (batch 1), microseconds per step: " + ", ".join(
            f"{name} {1e6 / rates[1][name]:.0f}" for name in names) + "."]
    out += [
        "",
        "## Share of the machine's matrix-multiply rate",
        "",
        f"float32 2048x2048 matrix product through numpy's BLAS: {gemm_all:.0f} GFLOP/s on all "
        f"cores, {gemm_one:.0f} GFLOP/s on one. One training sample costs {flops / 1e6:.3f} "
        "MFLOP (forward, weight gradients, input gradients of the hidden layers).",
        "",
    ]
    rows = [["contender"] + [f"batch {b}" for b in batch_sizes]]
    for name in names:
        rows.append([name] + [
            f"{rates[b][name] * flops / 1e9:.0f} GFLOP/s ({rates[b][name] * flops / 1e9 / gemm_all:.0%})"
            for b in batch_sizes])
    out.append(table(rows))
    out += [
        "",
        "## The tutorials' 3-4-1 relu network, one sample per step",
        "",
        f"Squared error, SGD, {n_tiny} steps per repetition; microseconds per step (lower is better).",
        "",
    ]
    rows = [["contender", "us/step", "PyTorch / this"]]
    for name, us in tiny_us.items():
        ratio = f"{tiny_us['PyTorch'] / us:.1f}x" if "PyTorch" in tiny_us else "-"
        rows.append([name, f"{us:.1f}", ratio])
    out.append(table(rows))
    out += [
        "",
        "## Peak memory and import time (fresh processes)",
        "",
        "Peak RSS (VmHWM) of a fresh process that loads the same data from an .npz file and "
        "trains one epoch at batch 128 (\"numpy only\" loads the data and stops); import time "
        "of the module in a fresh interpreter.",
        "",
    ]
    rows = [["process", "peak RSS (MiB)"]]
    for kind, mib in rss_mib.items():
        rows.append([kind, f"{mib:.0f}"])
    if "torch" in rss_mib:
        rows.append(["chainrule / torch", f"{rss_mib['chainrule'] / rss_mib['torch']:.2f}"])
    out.append(table(rows))
    out.append("")
    rows = [["import", "ms"]] + [[f"import {k}", f"{v:.0f}"] for k, v in import_ms.items()]
    out.append(table(rows))
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
