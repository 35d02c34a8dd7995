"""The README's Python snippets run as written, and what they print is true.

Snippets print their claims ("largest difference ...: 1.2e-07", "identical to
the uninterrupted run: True", "test accuracy ...: 0.91"). Running them is not
enough: each printed claim is read back and checked against the rules below,
and every snippet that prints such a claim must have it hold.
"""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
OPTIONAL = ("torch", "onnxruntime", "onnx", "matplotlib", "PIL", "sklearn", "dask", "starlette")
NUMBER = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"

#: (what a printed line says, the rule its value must obey)
CLAIMS = [
    (re.compile(rf"difference.*?:\s*{NUMBER}\s*$", re.I), lambda v: float(v) <= 1e-4),
    (re.compile(r"identical.*?:\s*(True|False)\s*$", re.I), lambda v: v == "True"),
    (re.compile(rf"accuracy.*?:\s*{NUMBER}\s*%?\s*$", re.I), lambda v: float(v) > 0.5),
]


def test_readme_has_snippets():
    assert len(BLOCKS) >= 4


def _run(code: str) -> str:
    for module in OPTIONAL:
        if re.search(rf"^\s*(import|from) {module}\b", code, flags=re.M):
            pytest.importorskip(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    return out.getvalue()


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_snippet_runs_and_its_printed_claims_hold(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = _run(code)
    for line in printed.splitlines():
        for pattern, holds in CLAIMS:
            match = pattern.search(line)
            if match:
                assert holds(match.group(1)), f"the README's snippet printed {line!r}"


def test_the_claims_checked_are_the_ones_the_readme_makes():
    """The rules above must keep matching the README's prints (a reworded print is not unchecked)."""
    prints = [line for block in BLOCKS for line in block.splitlines() if "print(" in line]
    claims = [p for p in prints if re.search(r"difference|identical|accuracy", p, re.I)]
    assert len([p for p in claims if "difference" in p]) >= 3  # torch both ways, ONNX
    assert any("identical" in p for p in claims)  # the resumed checkpoint
    for line in claims:
        code = line.split("#")[0]
        assert re.search(r"(difference|identical|accuracy)[^\"']*:\s*(\{|[\"'])", code, re.I), (
            f"README print {line.strip()!r} should read 'what: value' so the test can check it"
        )
