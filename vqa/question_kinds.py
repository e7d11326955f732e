"""What kind of question is this? Read off its first words, the way VQA's question types are ("is there",
"how many", "what color is the"), into the kinds an answerer can say it was or was not trained on:

    "Is there a cat?"  "Are the dogs running?"  "Do you see a dog?"  -> yes/no
    "How many people are there?"  "How many dogs can you see?"      -> how many
    "What colour is the dog?"  "What color are his shoes?"           -> colour
    "What is this?"  "What animal is shown?"  "What is in this photo?" -> what is this
    "What is the man holding?"  "What are they playing?"             -> what
    "Who is riding a bike?"   "Where is the dog?"   "What is the girl doing (in the picture)?" -> who, where, doing
    "Why ...", "When ...", "Which ...", "How ..." (not "how many")   -> why, when, which, how

`answer_type` maps a kind to VQA's three answer types (yes/no, number, other)."""

from __future__ import annotations

import re

from captioning.vocab import tokenize

YES_NO_STARTS = frozenset("is are was were does do did can could will would should has have had am".split())
THIS = frozenset("this that it these those".split())
SCENE = frozenset("picture photo image photograph scene".split())
SCENE_PHRASE = rf"(?:in|on) (?:the|this) (?:{'|'.join(sorted(SCENE))})"   # "in the picture", "in this photo"
KINDS = ("yes/no", "how many", "colour", "what is this", "doing", "who", "where", "what", "why", "when", "which",
         "how", "other")


def question_kind(question: str) -> str:
    """The kind of `question` (one of KINDS)."""
    words = tokenize(question)
    if not words:
        return "other"
    first = words[0]
    if first in YES_NO_STARTS:
        return "yes/no"
    if words[:2] == ["how", "many"]:
        return "how many"
    if first in ("what", "which") and len(words) > 1 and words[1] in ("color", "colour", "colors", "colours"):
        return "colour"
    if first == "what":
        text = " ".join(words[1:])
        if re.sub(rf" {SCENE_PHRASE}$", "", text).split()[-1:] == ["doing"]:
            return "doing"
        if THIS_QUESTION.fullmatch(text):
            return "what is this"
        return "what"
    if first in ("who", "where", "why", "when", "which", "how"):
        return first
    return "other"


# after "what": "is this", "animal is this", "kind of animal is that", "is it", "is shown", "animal is in the
# picture", "is there in this photo"
THIS_QUESTION = re.compile(r"(?:(?:kind|type|sort) of )?(?:(?P<thing>\w+) )?(?:is|are) "
                           rf"(?:this|that|it|these|those|shown|pictured|(?:there )?{SCENE_PHRASE})")


def asked_thing(question: str) -> str | None:
    """For "what animal is this?" the word naming the kind asked for ("animal"), else None."""
    words = tokenize(question)
    match = THIS_QUESTION.fullmatch(" ".join(words[1:])) if words[:1] == ["what"] else None
    return match.group("thing") if match else None


def answer_type(kind: str) -> str:
    """VQA's answer type of a question kind: yes/no, number or other."""
    return {"yes/no": "yes/no", "how many": "number"}.get(kind, "other")
