"""The commands of README.md, docs/*.md and the example plugin's README, run as written.

Every ```console block is read as a user reads it: lines after a `$ ` prompt are commands and the
lines under them their output; in a block without prompts every line is a command (indented lines
continue the one above, as in a synopsis). Each block runs in a fresh copy of the files the
commands name, in bash with the venv activated, as the README's set-up commands leave the shell
(`. .venv/bin/activate`; here `.venv` is the venv running the tests); a `surgery` command without
shell syntax runs in this process instead, the entry point the venv's `surgery` script calls, in
the block's folder with the same environment. A command that fails fails
the test, naming it; so does a block that writes anything outside `out/`, and an output line shown
under a `$` command (or, for the README's first command, in the block that shows what it prints)
that the command does not print.

A command that is not run is in NOT_RUN with the reason (a synopsis, a benchmark, training, another
machine); an entry that matches no command fails, so the list cannot rot. Blocks that build models
(seconds each) are marked slow; the light ones run in the quick lane.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "plugins" / "surgery-tinynet" / "README.md"]
# What the commands read, copied into each block's folder (the package runs from the venv).
COPIED = ("README.md", "docs", "specs", "examples", "plugins", "bench")
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "out", "runs")

# The README's set-up, which the test's environment has done already; what a line runs after it is run.
SETUP = re.compile(r"^python3 -m venv \.venv && \. \.venv/bin/activate && pip install [^&]+&& ")

# Commands not run, by a pattern matched at the command's start, and why.
NOT_RUN = {
    r"python -m pytest": "the whole test suite, which this test is part of",
    r"pip install -e plugins/surgery-tinynet": "pip builds the package in an isolated environment, which needs the "
    "network; the venv running the tests has the plugin installed (CONTRIBUTING's set-up)",
    r"surgery \w+ (SPEC|MODEL)": "a synopsis: the capitals are placeholders",
    r"surgery \w+ [^#]*\[": "a synopsis: the brackets are optional parts",
    r"python -m bench|python bench/": "a benchmark: minutes to an hour (docs/benchmarks.md gives the times)",
    r"python examples/digits/run_demo\.py": "trains four models on the digits: minutes (tests/test_digits_demo.py runs it)",
    r"python examples/scenarios/run_scenarios\.py": "trains 73 models: 15 minutes (tests/test_sweep.py runs sweeps, "
    "tests/test_scenarios_data.py its data)",
    r"surgery apply specs/(dinov2_linear_probe|siglip_vision_head|vit_lora)\.json": "downloads a KerasHub preset, which needs the internet "
    "(tests/test_hub.py runs the spec from a preset folder it makes)",
    r"surgery train ": "trains a model: minutes (tests/test_train.py runs surgery train)",
    r"surgery sweep ": "trains a model per variant: minutes (tests/test_sweep.py runs surgery sweep)",
    r"export TF_CONFIG=": "configures a worker of a cluster of two machines",
    r"pip install 'surgery\[ray\]'": "installs on the reader's machines; the venv running the tests has Ray (the dev extra)",
    r"ray start --head": "starts a Ray cluster that outlives the command (tests/test_sweep.py starts one on ports of "
    "its own and stops it)",
    r"surgery predict runs/tiny/best\.keras photos/": "an example: the run folder and the photos are the reader's",
    r"surgery (evaluate|predict|features) runs/my_model": "an example: the run folder and the data are the reader's "
    "(tests/test_evaluate.py and tests/test_features_predict.py run these commands)",
    r"surgery export \S+ --to (onnx|saved_model)": "an export and its parity check against Keras, 10-20 s each; "
    "tests/test_onnx.py runs surgery export to both formats",
}
# Blocks that start TensorFlow (they build or export models): the slow lane.
HEAVY = re.compile(r"surgery (apply|plan|export)\b|python examples/")
# Output shown outside the command's block: (file, the command, the line that introduces the output).
SHOWN_ELSEWHERE = [
    ("README.md", "surgery apply specs/vgg16_cut_extend.json --weights none -o out/", "`surgery apply` prints"),
]


@dataclass
class Command:
    text: str
    shown: list[str] = field(default_factory=list)  # output lines under a `$` command


@dataclass
class Block:
    file: str
    line: int
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def _commands(body: str) -> list[Command]:
    lines = body.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    commands: list[Command] = []
    continued = False  # the line before ended in a backslash
    for line in lines:
        text = line.rstrip().removesuffix("\\").strip()
        if continued:
            commands[-1].text += " " + text
        elif prompted and line.startswith("$ "):
            commands.append(Command(text[2:].strip()))
        elif prompted:
            if commands and line.strip():
                commands[-1].shown.append(line)
            continue
        elif line[:1].isspace() and commands:  # a synopsis' continuation line
            commands[-1].text += " " + text
        elif text and not text.startswith("#"):
            commands.append(Command(text))
        continued = line.rstrip().endswith("\\")
    return commands


def doc_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^```console\n(.*?)^```", text, re.M | re.S):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append(Block(str(path.relative_to(ROOT)), line, _commands(m.group(1))))
    return blocks


def not_run(command: str) -> str | None:
    """Why the command is not run, or None."""
    command = SETUP.sub("", command)
    return next((why for pattern, why in NOT_RUN.items() if re.match(pattern, command)), None)


def to_run(block: Block) -> list[Command]:
    return [Command(SETUP.sub("", c.text), c.shown) for c in block.commands if not_run(c.text) is None]


BLOCKS = doc_blocks()
RUN = [b for b in BLOCKS if to_run(b)]


def _case(block: Block):
    heavy = any(HEAVY.search(c.text) for c in to_run(block))
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if heavy else [])


def test_the_docs_have_commands_and_every_one_is_run_or_says_why_not():
    assert len(BLOCKS) >= 10 and len(RUN) >= 6, [b.id for b in BLOCKS]
    commands = [c.text for b in BLOCKS for c in b.commands]
    unused = [p for p in NOT_RUN if not any(re.match(p, SETUP.sub("", c)) for c in commands)]
    assert not unused, f"NOT_RUN entries that match no command any more: {unused}"


def test_the_setup_commands_leave_the_venv_active():
    """The premise of every command in the docs: after the README's set-up, `surgery` is the venv's."""
    setup = [c.text for c in BLOCKS[0].commands + BLOCKS[1].commands]
    assert BLOCKS[0].file == "README.md" and len(setup) == 2
    assert all(SETUP.match(c) for c in setup), setup


def test_the_parser_reads_prompts_output_and_continuations():
    body = "$ surgery a \\\n      --b c\nout 1\n...\n$ surgery d\n"
    assert [(c.text, c.shown) for c in _commands(body)] == [("surgery a --b c", ["out 1", "..."]), ("surgery d", [])]
    body = "surgery x SPEC [--y]\n       [--z]\npython -m bench   # note\n"
    assert [c.text for c in _commands(body)] == ["surgery x SPEC [--y] [--z]", "python -m bench   # note"]
    assert not_run("surgery x SPEC [--y] [--z]") and not not_run("surgery validate specs/a.json")


def _copy(folder: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=IGNORED)
        else:
            shutil.copy2(source, folder / name)
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return folder


def _files(folder: Path) -> dict[str, int]:
    """Every file outside out/ (and the venv), with its modification time."""
    found = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in (".venv", "__pycache__") and Path(root, d) != folder / "out"]
        for name in names:
            path = Path(root, name)
            found[str(path.relative_to(folder))] = path.stat().st_mtime_ns
    return found


def _shown_elsewhere(block: Block, command: Command) -> list[str]:
    for file, text, intro in SHOWN_ELSEWHERE:
        if block.file == file and command.text == text:
            doc = (ROOT / file).read_text(encoding="utf-8")
            after = doc[doc.index(intro) :]
            return re.search(r"```\n(.*?)```", after, re.S).group(1).splitlines()
    return []


def _missing_output(block: Block, command: Command, printed: str) -> list[str]:
    """The output lines the docs show for the command that it did not print ("..." marks what they leave out)."""
    shown = [line.rstrip() for line in command.shown + _shown_elsewhere(block, command)]
    return [line for line in shown if line.strip() not in ("", "...") and line not in printed]


# A command made of words only runs in this process (TensorFlow is started once per worker, not once per
# command); one with shell syntax (pipes, redirection, variables, globs, `&&`) runs in bash as written.
SHELL_SYNTAX = re.compile(r"[|&;<>$`*?(){}\\]")


def _in_process(command: str) -> bool:
    return command.startswith("surgery ") and not SHELL_SYNTAX.search(command)


def _run(command: str, folder: Path, env: dict, monkeypatch) -> tuple[int, str]:
    """Exit status and everything printed."""
    if _in_process(command):
        from click.testing import CliRunner

        from surgery.cli import main

        with monkeypatch.context() as m:
            m.chdir(folder)
            for name in set(os.environ) - set(env):
                m.delenv(name)
            result = CliRunner().invoke(main, shlex.split(command, comments=True)[1:], prog_name="surgery")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout + result.stderr
    done = subprocess.run(
        ["bash", "-c", f". .venv/bin/activate && {command}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def test_commands_with_shell_syntax_run_in_bash():
    assert _in_process("surgery validate specs/a.json --json")
    for command in ("surgery schema | head -3", "surgery plugins > out/p.txt", "surgery apply $SPEC", "ls out/*"):
        assert not _in_process(command), command


@pytest.mark.parametrize("block", [_case(b) for b in RUN])
def test_docs_block_runs_as_written(block: Block, tmp_path, monkeypatch):
    activate = Path(sys.prefix) / "bin" / "activate"
    assert activate.exists(), f"run the tests from the venv the README's set-up makes (no {activate})"
    folder = _copy(tmp_path)
    before = _files(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGERY_", "VIRTUAL_ENV", "PYTHONPATH"))}
    for command in to_run(block):
        code, printed = _run(command.text, folder, env, monkeypatch)
        assert code == 0, f"{block.id}: `{command.text}` exited {code}:\n{printed[-3000:]}"
        missing = _missing_output(block, command, printed)
        assert not missing, f"{block.id}: `{command.text}` did not print:\n" + "\n".join(missing) + f"\n---\n{printed}"
    after = _files(folder)
    written = sorted(name for name in after if before.get(name) != after[name])
    assert not written, f"{block.id} wrote outside out/: {written}"
