"""Mutation testing of chainrule's math with mutmut, with and without PyTorch.

A mutant is the library with one small change (``<`` for ``<=``, ``-`` for
``+``, a constant nudged, an argument dropped). The test suite *kills* a
mutant when at least one test fails on it; a mutant that survives is a change
to the math that no test notices. This script:

1. copies the working tree into a scratch directory (the repository is never
   touched) and writes a ``setup.cfg`` telling mutmut which modules to mutate
   and which tests to run;
2. runs ``mutmut run`` there twice: once with PyTorch importable (the
   reference tests run), once with ``torch`` hidden so that
   ``pytest.importorskip("torch")`` skips them, as the README's plain test
   command does on a machine without torch;
3. writes the score of each run, per module, and every surviving mutant's
   diff to ``quality/MUTATION.md``.

Run it from the repository root (it takes tens of minutes on two cores; it
is not part of CI)::

    python quality/mutation.py                   # the math modules, both runs
    python quality/mutation.py --modules optimizers.py --runs torch

Survivors judged equivalent (changes that cannot alter any result, such as a
mutated error-message string) are listed in ``quality/EQUIVALENT.md`` with the
reason; the score is reported with and without them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The math: what the issue asks to hold at 95% killed.
MATH_MODULES = [
    "layers/base.py", "layers/dense.py", "layers/dropout.py", "layers/conv.py",
    "layers/pooling.py", "layers/normalization.py", "layers/reshape.py",
    "activations.py", "losses.py", "optimizers.py", "network.py", "gradcheck.py",
    "kernels/*",
]
#: The tests that exercise the math (running all of them per mutant costs minutes each).
SUITE_TESTS = [
    "test_layers.py", "test_activations.py", "test_losses.py", "test_optimizers.py",
    "test_network.py", "test_gradcheck.py", "test_formulas.py", "test_training.py",
    "test_faults.py", "test_reference_torch.py", "test_review_fixes.py",
    "test_performance_paths.py", "test_conv.py", "test_pooling.py", "test_normalization.py",
    "test_cnn.py", "test_reference_torch_conv.py", "test_kernels.py", "test_checkpoint.py",
    "test_diagnostics.py",
]
#: Tests written to kill mutants (what ``--resume`` refreshes: they test the math only,
#: so they still fit a scratch copy of the library taken earlier).
MUTANT_TESTS = [
    "test_optimizer_rules.py", "test_activation_values.py", "test_loss_values.py",
    "test_layer_contract.py", "test_network_contract.py", "test_gradcheck_sensitivity.py",
    "test_image_layer_contract.py", "test_image_layer_values.py",
]
MATH_TESTS = SUITE_TESTS + MUTANT_TESTS

#: A ``torch`` that cannot be imported: put first on PYTHONPATH to hide the real one.
NO_TORCH = "raise ModuleNotFoundError(\"No module named 'torch' (hidden by quality/mutation.py)\", name='torch')\n"


def scratch_copy(modules: list[str], tests: list[str], hide_torch: bool) -> Path:
    work = Path(tempfile.mkdtemp(prefix="chainrule-mutation-"))
    for name in ("src", "tests", "pyproject.toml", "README.md"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, work / name)
    present = [t for t in tests if (work / "tests" / t).exists()]
    only = [f"src/chainrule/{m}" for m in modules]
    lines = ["[mutmut]", "source_paths = src/", "also_copy = README.md",
             "only_mutate ="] + [f"    {m}" for m in only]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider",
              "pytest_add_cli_args_test_selection ="] + [f"    tests/{t}" for t in present]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")
    if hide_torch:
        stub = work / "_no_torch" / "torch"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(NO_TORCH)
    return work


def refresh_tests(work: Path) -> None:
    """Copy today's ``MUTANT_TESTS`` into a kept scratch directory (for ``--resume``).

    Only those: the rest of the suite may test library changes made since the
    scratch copy was taken. The selection in ``setup.cfg`` stays as it was:
    mutmut resets every cached result when the selection changes, so a test
    file not selected there needs a fresh run.
    """
    for name in MUTANT_TESTS:
        for target in (work / "tests", work / "mutants" / "tests"):
            if (target / name).exists():
                shutil.copy2(ROOT / "tests" / name, target / name)


def run_mutmut(work: Path, hide_torch: bool, max_children: int,
               names: list[str] | None = None) -> tuple[str, float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               CHAINRULE_THREADS="1")
    if hide_torch:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "_no_torch"),
                                                          env.get("PYTHONPATH")]))
    started = time.perf_counter()
    with open(work / "mutmut.log", "wb") as log:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                        str(max_children), *(names or [])], cwd=work, env=env, stdout=log,
                       stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    text = (work / "mutmut.log").read_text(errors="replace")
    # ("Running forced fail test" is a normal phase: mutmut checks that a forced
    # failure is seen; it never reaches "Running mutation testing" when the clean
    # tests or that check fail.)
    if "failed to collect stats" in text or "Running mutation testing" not in text:
        # mutmut first runs the tests unmutated: they must pass for any score to mean anything
        tail = "\n".join(line for line in text.replace("\r", "\n").splitlines()
                         if line.strip() and line.lstrip()[:1] not in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")[-40:]
        raise SystemExit(f"mutmut could not run the unmutated tests in {work}:\n{tail}")
    results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                             cwd=work, env=env, capture_output=True, text=True).stdout
    return results, elapsed


def parse(results: str) -> dict[str, str]:
    """``{mutant name: status}`` from ``mutmut results --all true``."""
    found = {}
    for line in results.splitlines():
        match = re.match(r"\s*(\S+__mutmut_\d+):\s*(.+?)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def diff_of(work: Path, name: str, env: dict[str, str]) -> str:
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=env,
                           capture_output=True, text=True).stdout
    return "\n".join(line for line in shown.splitlines() if line.startswith(("+", "-"))
                     and not line.startswith(("+++", "---")))


def equivalent_names() -> dict[str, str]:
    path = ROOT / "quality" / "EQUIVALENT.md"
    if not path.exists():
        return {}
    names = {}
    for line in path.read_text().splitlines():
        match = re.match(r"[-*]\s*`([^`]+__mutmut_\d+)`\s*[:-]?\s*(.*)", line)
        if match:
            names[match.group(1)] = match.group(2)
    return names


def module_of(name: str) -> str:
    # chainrule.layers.dense.xǁDenseǁforward__mutmut_3 -> chainrule.layers.dense
    parts = name.split(".")
    return ".".join(p for p in parts if not p.startswith("x"))


def report(run: str, statuses: dict[str, str], elapsed: float, survivors: dict[str, str],
           equivalent: dict[str, str]) -> list[str]:
    counted = {n: s for n, s in statuses.items() if s in ("killed", "survived", "timeout",
                                                          "suspicious", "segfault")}
    killed = [n for n, s in counted.items() if s != "survived"]
    survived = [n for n, s in counted.items() if s == "survived"]
    real = [n for n in survived if n not in equivalent]
    lines = [f"## Run: {run}", "",
             f"{len(counted)} mutants tested in {elapsed / 60:.1f} min; "
             f"{len(killed)} killed ({100 * len(killed) / max(len(counted), 1):.1f}%); "
             f"{len(survived)} survived, of which {len(survived) - len(real)} judged equivalent "
             f"(quality/EQUIVALENT.md): score without those "
             f"{100 * len(killed) / max(len(counted) - (len(survived) - len(real)), 1):.1f}%.",
             ""]
    other = {s for s in statuses.values()} - {"killed", "survived", "timeout", "suspicious",
                                               "segfault"}
    if other:
        lines += ["Not counted: " + ", ".join(
            f"{sum(1 for s in statuses.values() if s == o)} {o}" for o in sorted(other)), ""]
    lines += ["| module | mutants | killed | survived |", "|---|---:|---:|---:|"]
    for module in sorted({module_of(n) for n in counted}):
        names = [n for n in counted if module_of(n) == module]
        k = sum(1 for n in names if counted[n] != "survived")
        lines.append(f"| {module} | {len(names)} | {k} | {len(names) - k} |")
    lines += ["", "Survivors not judged equivalent:", ""]
    for name in sorted(real):
        lines += [f"- `{name}`", "```diff", survivors.get(name, "").strip(), "```"]
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=MATH_MODULES,
                        help="paths under src/chainrule to mutate (globs allowed)")
    parser.add_argument("--runs", nargs="+", choices=["torch", "no-torch"],
                        default=["torch", "no-torch"])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=ROOT / "quality" / "MUTATION.md")
    parser.add_argument("--keep", action="store_true",
                        help="keep each scratch directory (to run `mutmut show NAME` there)")
    parser.add_argument("--report-only", action="store_true",
                        help="with --resume: only write the report of what the kept directories "
                             "hold (mutants not yet checked are counted apart)")
    parser.add_argument("--no-refresh", action="store_true",
                        help="with --resume: keep the tests already in the scratch directories")
    parser.add_argument("--full-torch", action="store_true",
                        help="mutate everything again for the torch run (by default the torch "
                             "run re-tests only the no-torch run's survivors, with torch importable)")
    parser.add_argument("--resume", nargs="+", type=Path, metavar="DIR",
                        help="scratch directories kept by --keep: copy today's tests into them "
                             "and re-run the mutants that survived there (or were not checked); "
                             "only the test files selected there count")
    args = parser.parse_args()
    modules = [m for m in args.modules
               if "*" in m or (ROOT / "src" / "chainrule" / m).exists()]
    if args.resume:
        config = (args.resume[0] / "setup.cfg").read_text()
        block = config.split("only_mutate =")[1].split("pytest_add_cli_args")[0]
        modules = [m.strip().removeprefix("src/chainrule/") for m in block.splitlines()
                   if m.strip()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src", "tests"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    lines = ["# Mutation testing of the math", "",
             f"Produced by `python quality/mutation.py` (mutmut) on "
             f"{datetime.date.today().isoformat()}, commit {commit}"
             f"{' with uncommitted changes' if dirty else ''}, "
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
             f"Modules mutated: {', '.join(modules)}.", ""]
    equivalent = equivalent_names()
    env = dict(os.environ)
    plans: list[tuple[str, Path | None]] = [(run, None) for run in args.runs]
    if args.resume:
        plans = [("no-torch" if (work / "_no_torch").exists() else "torch", work)
                 for work in args.resume]
    resumed_no_torch = [p for p in plans if p[0] == "no-torch" and isinstance(p[1], Path)]
    if args.report_only:
        for run, work in plans:
            results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                                     cwd=work, env=env, capture_output=True, text=True).stdout
            statuses = parse(results)
            survivors = {n: diff_of(work, n, env) for n, s in statuses.items()
                         if s == "survived" and n not in equivalent}
            part = report(run, statuses, 0.0, survivors, equivalent)
            part[2] = part[2].replace(" in 0.0 min", "")
            lines += part
            print("\n".join(part[:3]), flush=True)
        args.out.write_text("\n".join(lines))
        print(f"wrote {args.out}")
        return 0
    if not args.full_torch and set(args.runs) == {"torch", "no-torch"} and (
            not args.resume or (len(plans) == 1 and resumed_no_torch)):
        # Torch only adds tests (the reference tests that importorskip it), so a mutant
        # killed without torch is killed with it: the torch run need only re-test the
        # no-torch survivors, in a copy of that run with torch importable.
        plans = [plans[0] if plans[0][0] == "no-torch" else ("no-torch", None),
                 ("torch", "derived")]
    previous: Path | None = None
    scratch: list[Path] = []
    for run, kept in plans:
        hide = run == "no-torch"
        if kept == "derived":
            work = Path(tempfile.mkdtemp(prefix="chainrule-mutation-"))
            shutil.copytree(previous, work, dirs_exist_ok=True, symlinks=True)
            shutil.rmtree(work / "_no_torch", ignore_errors=True)
        else:
            work = kept if kept is not None else scratch_copy(modules, MATH_TESTS, hide)
        if not isinstance(kept, Path):
            scratch.append(work)
        try:
            if kept is None:
                results, elapsed = run_mutmut(work, hide, args.max_children)
            else:
                # A first pass is done: re-run what survived it, with today's tests
                # (and torch importable, for a run derived from the no-torch one).
                # (with anything left unchecked or cut short, e.g. by an interrupted pass)
                survived = [n for n, s in parse(subprocess.run(
                    [sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                    env=env, capture_output=True, text=True).stdout).items()
                    if s not in ("killed", "timeout", "caught by type check")]
                if kept != "derived" and not args.no_refresh:  # derived: no-torch run's tests
                    refresh_tests(work)
                print(f"{run}: re-running {len(survived)} survivors in {work}", flush=True)
                if survived:
                    results, elapsed = run_mutmut(work, hide, args.max_children, survived)
                else:
                    results, elapsed = subprocess.run(
                        [sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                        env=env, capture_output=True, text=True).stdout, 0.0
                how = ("the no-torch run's survivors re-run with torch importable"
                       if kept == "derived" else
                       f"survivors of a first full pass re-run with the tests of commit {commit}")
            statuses = parse(results)
            survivors = {n: diff_of(work, n, env) for n, s in statuses.items()
                         if s == "survived" and n not in equivalent}
            part = report(run, statuses, elapsed, survivors, equivalent)
            if kept is not None:
                part[2:2] = [f"({how}; the time is that of the re-run.)", ""]
            lines += part
            print("\n".join(report(run, statuses, elapsed, {}, equivalent)[:3]), flush=True)
        finally:
            previous = work
    for work in scratch if not args.keep else []:
        shutil.rmtree(work, ignore_errors=True)
    for work in (scratch if args.keep else []) + list(args.resume or []):
        print(f"kept {work}", flush=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
