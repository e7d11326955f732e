"""`vqa train | evaluate | answer`: one parser per command, one `main(args)` each. Errors print as
one line (`error: ...`) with a non-zero exit status; `--debug` shows the traceback instead."""

from __future__ import annotations

import argparse
import sys

from captioning.runtime import passive_openmp

passive_openmp()  # before the commands below load torch (and its OpenMP): idle threads sleep, not spin

from captioning.cli_base import OneLineErrorParser, run_command  # noqa: E402

from . import answer, baseline, evaluate, prepare, train  # noqa: E402

COMMANDS = {
    "train": (train, "train a question answerer (Visual7W, easy-VQA, shapes, VQA v2)"),
    "evaluate": (evaluate, "multiple-choice and open-ended accuracy per question type (VQA v2: the official "
                 "VQA accuracy)"),
    "answer": (answer, "answer one question about one image"),
    "baseline": (baseline, "question-only baseline: answer priors per question, no image"),
    "prepare": (prepare, "write a question set (caption-qa: questions generated from captions)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="vqa", description="Visual7W-style question answering with "
                                "soft or hard attention (LSTM-Att).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,answer,baseline,prepare}")
    for name, (module, help_text) in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text, parents=[common]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(COMMANDS[args.command][0].main, args, args.debug)


if __name__ == "__main__":
    sys.exit(main())
