"""The README and docs/ say what the code does: every bash block parses, every
config field and config file they name exists, and the contents' links lead
to headings."""

import glob
import os
import re
import subprocess

import pytest

from cpcjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKDOWN = [README, *DOCS]

FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
# --config.FIELD[=...], FIELD a dotted name, without trailing punctuation.
CONFIG_FIELD = re.compile(r"--config\.([A-Za-z_][\w.]*\w)")
CONFIG_FILE = re.compile(r"(?<![\w/])configs/(\w+)\.py")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _name(path: str) -> str:
    return os.path.relpath(path, ROOT)


def fenced_blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def _outside_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation dropped (hyphens
    and underscores kept), lowercase, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a document's headings, numbered as GitHub numbers
    repeats (`name`, `name-1`, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(_outside_code_blocks(text)):
        base = anchor(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def bash_syntax_errors(block: str, tmp_path) -> str:
    """`bash -n`'s complaint about a block, or "" when it parses."""
    script = tmp_path / "block.sh"
    script.write_text(block)
    proc = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=60
    )
    return proc.stderr.strip() if proc.returncode else ""


def unknown_config_fields(text: str) -> list[str]:
    """The --config.FIELD names of `text` that no shipped config has: a
    method config (IEMOCAP and synthetic corpora) or the demo's own fields."""
    configs = [
        config_lib.load("pre_cpc:iemocap"),
        config_lib.load("pre_cpc:synthetic"),
        config_lib.load("demo"),
    ]
    unknown = []
    for field in sorted(set(CONFIG_FIELD.findall(text))):
        if any(part.isupper() for part in field.split(".")):
            continue  # a placeholder: --config.FIELD=VALUE
        found = False
        for c in configs:
            try:
                config_lib.check_fields(c, [field])
            except config_lib.ConfigError:
                continue
            found = True
            break
        if not found:
            unknown.append(field)
    return unknown


def missing_config_files(text: str) -> list[str]:
    return sorted(
        {
            f"configs/{name}.py"
            for name in CONFIG_FILE.findall(text)
            if not os.path.isfile(os.path.join(ROOT, "configs", f"{name}.py"))
        }
    )


def broken_links(path: str) -> list[str]:
    """Links to a heading (`#x`, `file.md#x`) or a file of the repository
    that lead nowhere."""
    text = _read(path)
    here = os.path.dirname(path)
    broken = []
    for target in LINK.findall(_outside_code_blocks(text)):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        file_part, _, fragment = target.partition("#")
        linked = os.path.normpath(os.path.join(here, file_part)) if file_part else path
        if not os.path.exists(linked) or (
            fragment and fragment not in anchors(_read(linked))
        ):
            broken.append(target)
    return broken


def contents(text: str) -> list[str]:
    """The anchors the README's "Contents" list links to, in order."""
    match = re.search(r"^## Contents\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, 'README.md has no "## Contents" section'
    return re.findall(r"\]\(#([^)]+)\)", match.group(1))


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_every_bash_block_parses(path, tmp_path):
    blocks = fenced_blocks(_read(path), "bash")
    if path == README:
        assert blocks, "README.md has no ```bash block"
    for block in blocks:
        error = bash_syntax_errors(block, tmp_path)
        assert not error, f"{_name(path)}: bash -n fails on\n{block}\n{error}"


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_every_config_field_exists(path):
    unknown = unknown_config_fields(_read(path))
    assert not unknown, (
        f"{_name(path)} names config fields that do not exist: {unknown}"
    )


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_every_config_file_exists(path):
    missing = missing_config_files(_read(path))
    assert not missing, f"{_name(path)} names config files that do not exist: {missing}"


def test_the_contents_list_every_section_and_lead_to_headings():
    text = _read(README)
    listed = contents(text)
    headings = anchors(text)
    assert listed, "README.md's contents list no links"
    assert not [a for a in listed if a not in headings], (
        f"contents links without a heading: {[a for a in listed if a not in headings]}"
    )
    sections = [
        anchor(title)
        for level, title in HEADING.findall(_outside_code_blocks(text))
        if level == "##" and title != "Contents"
    ]
    assert [a for a in listed if a in sections] == sections, (
        "the contents list the sections out of order, or leave some out"
    )


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_links_lead_somewhere(path):
    broken = broken_links(path)
    assert not broken, f"{_name(path)}: links that lead nowhere: {broken}"


def test_the_quickstart_test_command_is_what_ci_runs():
    ci = [line.strip() for line in _read(os.path.join(ROOT, ".ci", "run")).splitlines()]
    quickstart = re.search(r"^## Quickstart\n(.*?)(?=^## )", _read(README), re.M | re.S)
    assert quickstart, 'README.md has no "## Quickstart" section'
    commands = [b.strip() for b in fenced_blocks(quickstart.group(1), "bash")]
    assert len(commands) == 2, "the Quickstart is two commands"
    assert commands[1] in ci, "CI runs the Quickstart's test command, verbatim"


# The checks themselves: each finds what it exists to find.


def test_the_checks_catch_a_bash_syntax_error(tmp_path):
    assert bash_syntax_errors("python -m cpcjax.main --config.folds=(1,)\n", tmp_path)
    assert not bash_syntax_errors("python -m x --config.folds='(1,)'\n", tmp_path)


def test_the_checks_catch_an_unknown_config_field():
    text = (
        "--config.pretrain.num_steps=5 --config.FIELD=VALUE "
        "--config.methods.joint_cpc.finetune.cpc_weight=1 "
        "--config.method_order=x --config.synthetic.seed=1 "
        "--config.pretrain.num_step=5 --config.methods.nope.seeds=1"
    )
    assert unknown_config_fields(text) == ["methods.nope.seeds", "pretrain.num_step"]


def test_the_checks_catch_a_missing_config_file():
    assert missing_config_files("configs/pre_cpc.py and configs/nope.py") == [
        "configs/nope.py"
    ]


def test_the_checks_compute_github_anchors():
    assert anchor("Recipes: the paper's tables") == "recipes-the-papers-tables"
    assert anchor("Side by side with CPC_audio") == "side-by-side-with-cpc_audio"
    assert anchor("`result.json`") == "resultjson"
    text = "# A\n## Python API\n```\n## not a heading\n```\n## Python API\n"
    assert anchors(text) == {"a", "python-api", "python-api-1"}
    assert contents("## Contents\n- [x](#python-api)\n## Next\n") == ["python-api"]


def test_the_checks_catch_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n[ok](#top) [bad](#nope) [file](b.md#x)\n")
    (tmp_path / "b.md").write_text("# Y\n")
    assert broken_links(str(tmp_path / "a.md")) == ["#nope", "b.md#x"]
