"""Write docs/reference/params.md, the one reference of every params.yaml key, from params.yaml.

Every key's documentation is the comment directly above it in params.yaml; keys that follow
each other without a blank line share the comment above the first when that comment names
them (``two_theta_min``, ``two_theta_max``, ``two_theta_step``). A comment above a nested
section (``train.augment``) introduces the section. A key with no comment of its own that no
comment names is an error, so an undocumented key cannot reach the page.

    python scripts/params_reference.py           # rewrite docs/reference/params.md
    python scripts/params_reference.py --check   # exit 1 if the page is not up to date

``tests/test_params_reference.py`` runs the check, so the page and params.yaml cannot drift.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params.yaml"
PAGE = ROOT / "docs" / "reference" / "params.md"
# Mappings whose keys are names the user chooses (crystal systems, robustness conditions),
# documented as one key: their default is the whole mapping, and the comments inside it are
# listed with it.
FREE_FORM_MAPPINGS = ("download.mp_api.per_system", "evaluate.robustness", "index.per_split")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?:\s|$)")
_COMMENT_LINE = re.compile(r"^ *#(?P<text>.*)$")
# An item of a list inside a comment: "#   cif_table: tables of CIF text ...".
_LIST_ITEM = re.compile(r"^\s+\w+:\s")


@dataclass
class Key:
    """One documented key (or a group of keys that share their comment)."""

    paths: list[str]
    comment: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    """Keys under one path (the top level is ``""``), with the comment that introduces it."""

    path: str
    comment: list[str]
    keys: list[Key] = field(default_factory=list)


class UndocumentedKey(ValueError):
    """A params.yaml key without a comment of its own that no neighbouring comment names."""


def _lookup(values: dict, path: str) -> object:
    for part in path.split("."):
        values = values[part]
    return values


def leaf_keys(values: dict, prefix: str = "") -> list[str]:
    """Every documented key of a params mapping as a dotted path, in file order."""
    keys = []
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and path not in FREE_FORM_MAPPINGS:
            keys += leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def parse(text: str) -> list[Section]:
    """The sections and documented keys of params.yaml's text, in file order; raises
    UndocumentedKey naming every key without documentation."""
    values = yaml.safe_load(text)
    sections = {"": Section("", [])}
    order = [""]
    stack: list[tuple[int, str]] = []  # (indent, path) of the open mappings
    comment: list[str] = []
    previous: Key | None = None  # the key on the line before, if contiguous
    free_form: Key | None = None  # the free-form mapping being read, if any
    undocumented = []
    for line in text.splitlines():
        if not line.strip():
            comment, previous = [], None
            continue
        if match := _COMMENT_LINE.match(line):
            comment.append(match["text"][1:] if match["text"].startswith(" ") else match["text"])
            continue
        match = _KEY_LINE.match(line)
        if match is None:  # the continuation of a multi-line value
            continue
        indent, name = len(match["indent"]), match["key"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        path = f"{parent}.{name}" if parent else name
        if free_form is not None and path.startswith(free_form.paths[0] + "."):
            if comment:
                free_form.notes.append(f"`{name}`: " + " ".join(comment))
            comment = []
            continue
        free_form = None
        value = _lookup(values, path)
        if isinstance(value, dict) and path not in FREE_FORM_MAPPINGS:
            sections[path] = Section(path, comment)
            order.append(path)
            stack.append((indent, path))
            comment, previous = [], None
            continue
        section = sections[parent]
        if comment:
            key = Key([path], comment)
            section.keys.append(key)
        elif previous is not None and re.search(
            rf"\b{re.escape(name)}\b", " ".join(previous.comment)
        ):
            key = previous
            key.paths.append(path)
        else:
            undocumented.append(path)
            key = None
        if path in FREE_FORM_MAPPINGS:
            stack.append((indent, path))
            free_form = key
        previous, comment = key, []
    if undocumented:
        raise UndocumentedKey(
            "params.yaml keys without a comment above them (or named by the comment of the key "
            "just before): " + ", ".join(undocumented)
        )
    return [sections[path] for path in order]


def _value(value: object) -> str:
    """A default as it would be written in params.yaml, on one line."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    shown = yaml.safe_dump(
        value, default_flow_style=True, width=10**6, allow_unicode=True, sort_keys=False
    )
    return shown.strip().removesuffix("...").strip()


def _cell(lines: list[str]) -> str:
    """Comment lines as one table cell: sentences joined; an indented ``name: ...`` line (an
    item of a list in the comment) starts a new line, and so does the first line after such
    a list."""
    parts: list[str] = []
    in_list = False
    for line in lines:
        item = line.startswith(" ") and _LIST_ITEM.match(line)
        if parts and (item or (in_list and not line.startswith(" "))):
            parts.append("<br>")
        elif parts:
            parts.append(" ")
        parts.append(" ".join(line.split()))
        in_list = bool(item) or (in_list and line.startswith(" "))
    return "".join(parts).replace("|", "\\|").replace("*", "\\*")


def render(text: str) -> str:
    """The Markdown page of params.yaml's text."""
    values = yaml.safe_load(text)
    lines = [
        "# Params reference",
        "",
        "<!-- Generated by `python scripts/params_reference.py` from params.yaml's comments; "
        "do not edit by hand. -->",
        "",
        "Every key of `params.yaml`, with its default and what it does: this page is "
        "generated from the comments in `params.yaml` (`python scripts/params_reference.py`), "
        "and a test fails when the two differ. Change a key for one run with "
        "`dvc exp run -S key=value` (see [Sweep parameters](../tutorials/sweep.md)); which "
        "stage reads which keys is in the [pipeline reference](pipeline.md).",
        "",
    ]
    for section in parse(text):
        if not section.keys:
            continue
        if section.path == "":
            lines += [
                "## Shared keys",
                "",
                "Top-level keys, read by several stages; `-S sigma=3` works as written.",
                "",
            ]
        else:
            depth = "##" if "." not in section.path else "###"
            lines += [f"{depth} `{section.path}`", ""]
            if section.comment:
                lines += [_cell(section.comment), ""]
        lines += ["| key | default | what it does |", "|---|---|---|"]
        for key in section.keys:
            names = "<br>".join(f"`{path}`" for path in key.paths)
            defaults = "<br>".join(
                f"`{_value(_lookup(values, path))}`".replace("|", "\\|") for path in key.paths
            )
            about = _cell(key.comment)
            if key.notes:
                about += "<br>" + "<br>".join(note.replace("|", "\\|") for note in key.notes)
            lines.append(f"| {names} | {defaults} | {about} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    try:
        page = render(PARAMS.read_text(encoding="utf-8"))
    except UndocumentedKey as exc:
        print(f"params_reference: error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page:
            print(
                f"params_reference: {PAGE.relative_to(ROOT)} is not what params.yaml gives; "
                "run `python scripts/params_reference.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
