"""The examples of the README and the docs run as written, from the repository root.

- ```pycon blocks are doctests;
- ```python blocks are executed, the blocks of a page in one namespace;
- ```console blocks hold `$ command` lines, each followed by its exact output (stdout and
  stderr as they interleave); the checkout's own path reads /path/to/xrdsym there.

```bash blocks are shown, not run (they need the network, a GPU or minutes of training).
`mkdocs build --strict` itself runs in scripts/test.sh.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Where the checkout is differs from machine to machine; the docs show this instead.
CHECKOUT = "/path/to/xrdsym"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Seconds one console command may take (an `xrdsym predict` of a few files takes about one).
COMMAND_TIMEOUT_S = 120


def blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """The fenced blocks of ``language`` in ``page``, as (line number, text)."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def console_commands(text: str) -> list[tuple[str, str]]:
    """The (command, expected output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in pairs]


def run_command(command: str) -> str:
    """What ``command`` prints, stdout and stderr interleaved, run by bash in the repository
    root with this Python's environment first on the PATH."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
    }
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    output = done.stdout.replace(str(ROOT), CHECKOUT)
    return "\n".join(line.rstrip() for line in output.rstrip("\n").splitlines())


def _ids(items: list[tuple[Path, int]]) -> list[str]:
    return [f"{page.relative_to(ROOT)}:{line}" for page, line in items]


CONSOLE = [(page, line, text) for page in PAGES for line, text in blocks(page, "console")]
PYCON_PAGES = [page for page in PAGES if blocks(page, "pycon")]
PYTHON_PAGES = [page for page in PAGES if blocks(page, "python")]


def test_the_docs_have_examples_of_every_kind():
    assert CONSOLE and PYCON_PAGES and PYTHON_PAGES
    readme = [text for page, _, text in CONSOLE if page.name == "README.md"]
    assert any("xrdsym predict" in text for text in readme)


@pytest.mark.parametrize(
    ("page", "line", "text"), CONSOLE, ids=_ids([(p, n) for p, n, _ in CONSOLE])
)
def test_console_examples_print_what_the_docs_show(page, line, text):
    commands = console_commands(text)
    assert commands, f"{page.name}:{line}: a console block without a $ command"
    for command, expected in commands:
        assert run_command(command) == expected.rstrip("\n"), f"{page.name}:{line}: $ {command}"


@pytest.mark.parametrize("page", PYCON_PAGES, ids=_ids([(p, 0) for p in PYCON_PAGES]))
def test_pycon_examples_pass_as_doctests(page, monkeypatch):
    """The blocks of a page run in order, in one namespace, as a reader types them."""
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    for line, text in blocks(page, "pycon"):
        name = f"{page.relative_to(ROOT)}:{line}"
        test = doctest.DocTestParser().get_doctest(text, namespace, name, str(page), line)
        runner.run(test, out=lambda report: pytest.fail(report, pytrace=False), clear_globs=False)
        namespace.update(test.globs)  # a DocTest runs in a copy of the namespace
    assert runner.summarize(verbose=False).attempted > 0


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_ids([(p, 0) for p in PYTHON_PAGES]))
def test_python_examples_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    for line, text in blocks(page, "python"):
        code = compile(text, f"{page.relative_to(ROOT)}:{line}", "exec")
        exec(code, namespace)


def test_the_pipeline_reference_lists_the_stages_and_params_of_dvc_yaml():
    """The stage table of docs/reference/pipeline.md names each stage of dvc.yaml, in order,
    with its command and exactly the params keys it declares."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    page = (ROOT / "docs" / "reference" / "pipeline.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| ([^|]*) \|", page, re.MULTILINE)
    assert [stage for stage, _, _ in rows] == list(stages)
    for stage, command, reads in rows:
        assert stages[stage]["cmd"].startswith(command)
        declared = reads.split(" (and ")[0]
        names = [name.removesuffix(".*") for name in re.findall(r"`([^`]+)`", declared)]
        assert names == stages[stage]["params"], stage
