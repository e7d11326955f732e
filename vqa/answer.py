"""`vqa answer RUN IMAGE "QUESTION" [--choices A B C D] [--attention-out FILE]`: print the answer
and the candidates' scores; optionally save the attention of each question word over the image."""

from __future__ import annotations

import argparse
import sys

from captioning.engine.device import resolve_device
from captioning.engine.figures import attention_figure
from captioning.images import open_image
from captioning.limits import DEFAULT_BEAM_SIZE, INFERENCE_HELP, INFERENCE_KINDS, MAX_BEAM_SIZE, whole_number

from .config import QATask
from .model import AnswerResult, load_answerer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (best, else last checkpoint), checkpoint folder or bundled name")
    parser.add_argument("image", help="image file")
    parser.add_argument("question", help='the question, e.g. "What color is the circle?"')
    parser.add_argument("--choices", nargs="+", metavar="CHOICE",
                        help="candidate answers to pick from (pointing: boxes as x,y,width,height)")
    parser.add_argument("--attention-out", metavar="FILE", help="save a PNG: one attention map per question word")
    parser.add_argument("--beam-size", type=int, default=DEFAULT_BEAM_SIZE, help="open-ended decoding beam (1: greedy)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--inference", choices=INFERENCE_KINDS, default="fast", help=INFERENCE_HELP)


def main(args: argparse.Namespace) -> AnswerResult:
    whole_number("--beam-size", args.beam_size, 1, MAX_BEAM_SIZE)
    model = load_answerer(args.run, resolve_device(args.device), inference=args.inference)
    image = open_image(args.image, at_least=model.encoder.preprocess.decode_at_least)
    result = model.answer(image, args.question, choices=args.choices, beam_size=args.beam_size)
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    print(f"answer: {result.text}")
    heading = "choice" if args.choices else "candidate (beam search)"
    unit = "box logit" if model.config.task == QATask.POINTING else "log p(answer)"
    print(f"  {unit:>13}  {heading}")
    for label, score in sorted(zip(result.choices, result.scores, strict=True), key=lambda x: -x[1]):
        print(f"  {score:>13.4f}  {label}{'  <-' if label == result.text else ''}")
    if args.attention_out:
        path = attention_figure(image, result.question_tokens, result.attention, args.attention_out,
                                title=f"{args.question}  ->  {result.text}")
        print(f"attention figure: {path}")
    return result
