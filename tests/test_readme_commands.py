"""Every command the README and docs/*.md show exists and parses: `srgan-tf <cmd> ...` and
`python experiments/<x>.py ...` lines of code blocks and inline code, and every `--flag`
mentioned inline. Parsers only: no TensorFlow is imported.
"""
import argparse
import contextlib
import importlib.util
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The README and every page under docs/ (the user's documentation).
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _prose(text: str) -> str:
    """The text without its code blocks."""
    return re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)


def _segments():
    """(where, command text) of every srgan-tf / experiments command the pages show; `where`
    names the page and says code block or inline code."""
    found = []
    for page in PAGES:
        text, name = page.read_text(), _page_name(page)
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                found += [(f"{name}, code block", part) for part in line.split("&&")]
        found += [(f"{name}, inline code", span)
                  for span in re.findall(r"`([^`\n]+)`", _prose(text))]
    commands = []
    for where, part in found:
        part = re.sub(r"\s#.*$", "", part).strip()  # shell comment
        match = re.match(r"(?:python\s+)?(srgan-tf\s.*|experiments/\w+\.py\b.*)$", part)
        if match:
            commands.append((where, match.group(1)))
    return commands


def _argv_variants(command: str):
    """The command as argv lists: placeholders filled, optional [..] parts kept, and each
    `a|b` alternative used at least once."""
    command = command.replace("\\|", "|")
    command = re.sub(r"<[^<>]*>", "1", command)  # <run>, <dicom series dir | .nii.gz>
    command = re.sub(r"\$\{?[A-Za-z_]\w*\}?", "1", command)  # "$SLURM_CPUS_PER_TASK" in a job script
    command = command.replace("[", " ").replace("]", " ").replace("...", " ")
    # DIR, N, EXPORT, PATH: a value that parses as a path, an integer and a number alike.
    tokens = ["1" if re.fullmatch(r"[A-Z][A-Z_]*", token) else token
              for token in shlex.split(command)]
    options = [token.split("|") if "|" in token and not token.startswith("-") else [token]
               for token in tokens]
    count = max(len(choice) for choice in options)
    return [[choice[min(i, len(choice) - 1)] for choice in options] for i in range(count)]


def _script_parser(name: str) -> argparse.ArgumentParser:
    path = ROOT / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"readme_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _cli_parser():
    from srgan_tf.cli import build_parser

    return build_parser()


def _parse(parser, argv, shown):
    """`shown`: where and what the page shows, e.g. "README.md, code block shows `...`"."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as error:
            if error.code:
                pytest.fail(f"{shown}, which does not parse "
                            f"({argv}): {stderr.getvalue().strip().splitlines()[-1]}")


COMMANDS = _segments()


def test_the_pages_show_commands():
    texts = " ".join(command for _, command in COMMANDS)
    assert "srgan-tf infer" in texts and "experiments/exp2_aniso.py" in texts


def _check_flags(parser, argv, shown):
    """A fragment (inline code such as `srgan-tf infer --precision float32`): every flag exists
    and a name given to a flag with fixed choices is one of them."""
    actions = {flag: action for action in parser._actions for flag in action.option_strings}
    for index, token in enumerate(argv):
        if not token.startswith("--"):
            continue
        if token not in actions:
            pytest.fail(f"{shown}, but {parser.prog} has no {token} flag")
        value = argv[index + 1] if index + 1 < len(argv) else None
        choices = actions[token].choices
        if choices and value is not None and not value.startswith("-"):
            if value not in map(str, choices):
                pytest.fail(f"{shown}, but {token} takes "
                            f"{', '.join(map(str, choices))}, not {value!r}")


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_shown_command_exists_and_parses(where, command):
    """Code blocks must parse as shown; inline fragments must name existing flags."""
    block = where.endswith("code block")
    check = _parse if block else _check_flags
    shown = f"{where} shows `{command}`"
    for argv in _argv_variants(command):
        if argv[0] == "srgan-tf":
            registered = _subcommands(_cli_parser())
            name = argv[1] if len(argv) > 1 else None
            if name not in registered:
                pytest.fail(f"{where} shows `srgan-tf {name}`, but srgan_tf/cli.py "
                            f"registers no {name!r} subcommand (registered: "
                            f"{', '.join(sorted(registered))})")
            if block:
                _parse(_cli_parser(), argv[1:], shown)
            else:
                _check_flags(registered[name], argv[2:], shown)
        else:
            name = Path(argv[0]).stem
            if not (ROOT / "experiments" / f"{name}.py").is_file():
                pytest.fail(f"{where} shows `{argv[0]}`, which does not exist")
            check(_script_parser(name), argv[1:], shown)


def _known_flags() -> set:
    """Flags of srgan-tf's subcommands, the experiment scripts and the benchmark scripts."""
    flags = set()
    parsers = list(_subcommands(_cli_parser()).values())
    parsers += [_script_parser(path.stem) for path in (ROOT / "experiments").glob("*.py")
                if "def build_parser" in path.read_text()]
    for parser in parsers:
        flags |= {flag for action in parser._actions for flag in action.option_strings}
    for path in (ROOT / "benchmarks").glob("*.py"):  # their parsers may import TensorFlow
        flags |= set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", path.read_text()))
    return flags


# Programs other than srgan-tf whose commands the pages show inline (e.g. `git rev-parse --short`).
OTHER_TOOLS = {"git", "lscpu", "pip", "nvidia-smi", "tensorboard", "sbatch", "#SBATCH",
               "perturb.py",  # the realmr kit's script
               "run-eclare"}  # ECLARE's command (the peer the docs compare with)


@pytest.mark.parametrize("page", PAGES, ids=_page_name)
def test_every_flag_a_page_mentions_exists(page):
    mentioned = set()
    for span in re.findall(r"`([^`\n]+)`", _prose(page.read_text())):
        if span.split()[0] in OTHER_TOOLS:  # their flags, not ours
            continue
        mentioned |= set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", span))
    missing = sorted(mentioned - _known_flags())
    assert not missing, f"{_page_name(page)} mentions flags that no parser defines: {missing}"


def test_shown_tools_are_installed_by_the_package():
    """`tensorboard --logdir runs/` needs tensorboard in the requirements (TF no longer
    depends on it); `pip install -e ".[gpu]"` needs the extra."""
    text = "\n".join(page.read_text() for page in PAGES)
    requirements = (ROOT / "requirements.txt").read_text()
    if "tensorboard --logdir" in text:
        assert re.search(r"^tensorboard\b", requirements, flags=re.M)
    setup = (ROOT / "setup.py").read_text()
    for extra in set(re.findall(r'pip install -e "\.\[(\w+)\]"', text)):
        assert f'"{extra}":' in setup, extra
    assert "tensorflow[and-cuda]" in setup
    variants = list(itertools.chain.from_iterable(_argv_variants(c) for _, c in COMMANDS))
    assert any("--precision" in argv for argv in variants if argv[:2] == ["srgan-tf", "infer"])


@pytest.mark.parametrize("page", PAGES, ids=_page_name)
def test_numbers_name_their_machine(page):
    """A measured number names the CPU and commit it was measured on (docs/benchmarks.md),
    never an unnamed machine that the reader cannot identify."""
    text = " ".join(page.read_text().split()).lower()
    for phrase in ("this machine", "earlier machine", "today's machine", "this session",
                   "the development machine", "on a loaded machine"):
        assert phrase not in text, f"{_page_name(page)} says {phrase!r}: name the CPU and commit"
