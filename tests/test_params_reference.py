"""The params reference page (docs/reference/params.md) against params.yaml, and the params the
docs name against those that exist."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params.yaml"
PAGE = ROOT / "docs" / "reference" / "params.md"
# `-S key=value` and `-S 'key=value'` in the docs' commands.
SET_PARAM = re.compile(r"-S\s+'?([A-Za-z_][\w.]*)=")


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "params_reference", ROOT / "scripts" / "params_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


reference = _load_script()


def _all_paths(values: dict, prefix: str = "") -> set[str]:
    """Every key of a mapping as a dotted path, sections included."""
    paths = set()
    for name, value in values.items():
        paths.add(prefix + name)
        if isinstance(value, dict):
            paths |= _all_paths(value, f"{prefix}{name}.")
    return paths


def test_the_committed_page_is_what_params_yaml_gives():
    assert PAGE.read_text(encoding="utf-8") == reference.render(PARAMS.read_text(encoding="utf-8"))
    assert reference.main(["--check"]) == 0


def test_the_page_documents_every_key_once_and_no_other():
    text = PARAMS.read_text(encoding="utf-8")
    keys = reference.leaf_keys(yaml.safe_load(text))
    documented = [path for s in reference.parse(text) for key in s.keys for path in key.paths]
    assert sorted(documented) == sorted(keys)
    cells = re.findall(r"^\| (`[^|]*`) \|", PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    on_page = [name.strip("`") for cell in cells for name in cell.split("<br>")]
    assert sorted(on_page) == sorted(keys)
    assert len(on_page) == len(set(on_page))
    # Spot checks: nested, grouped and free-form keys are all there.
    for key in ("seed", "two_theta_step", "train.augment.step_deg", "evaluate.robustness"):
        assert key in on_page


def test_a_key_without_documentation_is_refused():
    with pytest.raises(reference.UndocumentedKey, match=r"stage\.extra"):
        reference.parse("# The seed.\nseed: 1\nstage:\n  # Documented.\n  a: 1\n  extra: 2\n")
    # A key the comment above its neighbour names shares that comment; a blank line ends it.
    sections = reference.parse("# From low to high.\nlow: 1\nhigh: 2\n")
    assert sections[0].keys[0].paths == ["low", "high"]
    with pytest.raises(reference.UndocumentedKey, match="high"):
        reference.parse("# From low to high.\nlow: 1\n\nhigh: 2\n")


def test_the_docs_set_only_params_that_exist():
    """Every `-S key=...` of the README and the docs names a key of params.yaml."""
    existing = _all_paths(yaml.safe_load(PARAMS.read_text(encoding="utf-8")))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    named = {
        (page.relative_to(ROOT).as_posix(), key)
        for page in pages
        for key in SET_PARAM.findall(page.read_text(encoding="utf-8"))
    }
    assert named, "no -S in the docs: the pattern is wrong"
    existing.add("key")  # the placeholder of `-S key=value`
    assert sorted((page, key) for page, key in named if key not in existing) == []
