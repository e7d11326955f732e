"""Writes this folder: a VQA v2 fixture in the official layout (questions, annotations with 10 human
answers each, COCO-named images under val2014/). The pictures are drawn here (a few shapes, no photo).
Run from the repository root: python tests/data/vqa_v2/generate.py"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
SUBTYPE = "val2014"


def _dog_on_grass(draw: ImageDraw.ImageDraw) -> None:
    draw.ellipse((16, 22, 44, 44), fill=(120, 70, 30))
    draw.ellipse((38, 16, 52, 30), fill=(120, 70, 30))


def _two_dogs_on_snow(draw: ImageDraw.ImageDraw) -> None:
    for x in (8, 36):
        draw.ellipse((x, 30, x + 20, 46), fill=(20, 20, 20))


def _rider_on_road(draw: ImageDraw.ImageDraw) -> None:
    draw.ellipse((14, 40, 30, 56), outline=(10, 10, 10), width=3)
    draw.ellipse((36, 40, 52, 56), outline=(10, 10, 10), width=3)
    draw.rectangle((28, 14, 36, 40), fill=(200, 40, 40))


IMAGES = {1: ((40, 140, 40), _dog_on_grass), 2: ((230, 235, 245), _two_dogs_on_snow), 3: ((90, 90, 95), _rider_on_road)}

# (question_id, image_id, question, question_type, answer_type, multiple_choice_answer, 10 human answers)
QUESTIONS = [
    (10, 1, "How many dogs are there?", "how many", "number", "1", ["2", "2"] + ["1"] * 8),
    (11, 1, "What colour is the dog?", "what color is the", "other", "tan",
     ["brown"] * 3 + ["tan"] * 4 + ["light brown"] * 3),
    (12, 1, "Is the dog running?", "is the", "yes/no", "yes", ["yes"] * 10),
    (20, 2, "What is the dog doing?", "what is the", "other", "playing",
     ["running"] + ["playing"] * 5 + ["sitting"] * 4),
    (21, 2, "Where is the dog running?", "where is the", "other", "snow", ["snow"] * 10),
    (30, 3, "Who is riding a bike?", "who is", "other", "man", ["man"] * 4 + ["boy"] * 3 + ["person"] * 3),
]

HEADER = {"info": {"description": "showtell test fixture in the VQA v2 layout (generated pictures)",
                   "version": "2.0", "year": 2024},
          "license": {"name": "CC0: drawn by generate.py", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
          "data_type": "mscoco", "data_subtype": SUBTYPE}


def main() -> None:
    folder = HERE / SUBTYPE
    folder.mkdir(exist_ok=True)
    for image_id, (background, draw_it) in IMAGES.items():
        image = Image.new("RGB", (64, 64), background)
        draw_it(ImageDraw.Draw(image))
        image.save(folder / f"COCO_{SUBTYPE}_{image_id:012d}.jpg", quality=80)
    questions = {**HEADER, "task_type": "Open-Ended",
                 "questions": [{"image_id": i, "question": q, "question_id": qid} for qid, i, q, *_ in QUESTIONS]}
    annotations = {**HEADER, "annotations": [
        {"question_type": qt, "multiple_choice_answer": mc, "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)],
         "image_id": i, "answer_type": at, "question_id": qid}
        for qid, i, _, qt, at, mc, answers in QUESTIONS]}
    (HERE / f"v2_OpenEnded_mscoco_{SUBTYPE}_questions.json").write_text(json.dumps(questions, indent=1) + "\n")
    (HERE / f"v2_mscoco_{SUBTYPE}_annotations.json").write_text(json.dumps(annotations, indent=1) + "\n")


if __name__ == "__main__":
    main()
