"""`vqa train | evaluate | answer`: one parser per command, one `main(args)` each. Errors print as
one line (`error: ...`) with a non-zero exit status; `--debug` shows the traceback instead."""

from __future__ import annotations

import argparse
import sys

from captioning.engine.runtime import passive_openmp

passive_openmp()  # before the commands below load torch (and its OpenMP): idle threads sleep, not spin

import importlib  # noqa: E402

from captioning.engine.cli_base import OneLineErrorParser, run_command  # noqa: E402

COMMANDS = {
    "train": ("train", "train a question answerer (Visual7W, easy-VQA, shapes, VQA v2)"),
    "evaluate": ("evaluate", "multiple-choice and open-ended accuracy per question type (VQA v2: the official "
                 "VQA accuracy)"),
    "answer": ("answer", "answer one question about one image"),
    "baseline": ("baseline", "question-only baseline: answer priors per question, no image"),
    "prepare": ("prepare", "write a question set (caption-qa: questions generated from captions)"),
}


def command_module(name: str):
    """The module of one command (`vqa.train`, ...): imported only when that command runs or shows its help,
    so `vqa --help` does not wait for torch."""
    return importlib.import_module(f".{COMMANDS[name][0]}", __package__)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command`, the options of only that command (the others listed by name)."""
    parser = OneLineErrorParser(prog="vqa", description="Visual7W-style question answering with "
                                "soft or hard attention (LSTM-Att).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,answer,baseline,prepare}")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if command is None or command == name:
            command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    return run_command(command_module(args.command).main, args, args.debug)
