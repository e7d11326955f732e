"""Telling questions from image captions, the way COCO-QA was built (Ren, Kiros and Zemel 2015):
each caption is parsed, a question is asked about one of its parts, and the answer is one word.

nltk's tagger data cannot be downloaded here, so the parse is a small set of rules over hand-written
lexicons (colours, numbers, people, animals, objects, places, activity verbs), all in this file:

    "A brown dog is running on the grass ."  ->  What colour is the dog?     brown     (colour)
                                                 What is the dog doing?      running   (doing)
                                                 Where is the dog running?   grass     (where)
    "Two dogs play in the snow ."            ->  How many dogs are there?    two       (how many)
    "A man is riding a bike ."               ->  Who is riding a bike?       man       (who)
                                                 What is the man riding?     bike      (what)

An answer must agree across the image's captions (colour and how many: every caption that asks the
same question gives the same answer; the others: the most frequent one, ties dropped). The 3 wrong
choices are answers of the same type from elsewhere in the set (frequency-weighted, so an answer
is about as often wrong as right), first of the same question form ("What is the man riding?"
gets other things ridden), and a choice is rejected when it could also be right for this image:
it, or a word of its group (tan ~ brown, field ~ grass, child ~ boy), appears in any of its captions."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from captioning.vocab import tokenize

TYPES = ("what", "who", "where", "colour", "how many", "doing")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _plural(words: Iterable[str]) -> dict[str, str]:
    irregular = {"man": "men", "woman": "women", "child": "children", "person": "people", "sheep": "sheep",
                 "bus": "buses", "dress": "dresses", "glass": "glasses", "puppy": "puppies", "baby": "babies"}
    return {w: irregular.get(w, w + "s") for w in words}


# ---- lexicons ----------------------------------------------------------------------------------------
COLOURS = _words("black white brown red blue green yellow orange pink purple gray grey tan")
COLOUR_ALIASES = {"grey": "gray"}
COLOUR_GROUPS = [_words("brown tan golden blond blonde"), _words("gray grey silver")]

NUMBERS = _words("two three four five six seven eight nine ten")

PEOPLE = {  # word -> (sex, age); None matches anything
    "man": ("m", "adult"), "men": ("m", "adult"), "guy": ("m", "adult"), "guys": ("m", "adult"),
    "woman": ("f", "adult"), "women": ("f", "adult"), "lady": ("f", "adult"), "ladies": ("f", "adult"),
    "boy": ("m", "child"), "boys": ("m", "child"), "girl": ("f", "child"), "girls": ("f", "child"),
    "child": (None, "child"), "children": (None, "child"), "kid": (None, "child"), "kids": (None, "child"),
    "baby": (None, "child"), "toddler": (None, "child"), "toddlers": (None, "child"),
    "person": (None, None), "people": (None, None), "someone": (None, None), "player": (None, None),
    "players": (None, None), "biker": (None, None), "bikers": (None, None), "skier": (None, None),
    "surfer": (None, None), "climber": (None, None), "rider": (None, None), "skateboarder": (None, None),
    "snowboarder": (None, None), "swimmer": (None, None), "runner": (None, None), "cyclist": (None, None),
    "teenager": (None, None), "teen": (None, None), "adult": (None, "adult"), "crowd": (None, None),
}
WHO_ANSWERS = _words("man woman boy girl child baby")   # who-answers: singular, specific enough to choose
_SINGULAR_ANIMALS = _words("dog cat horse bird cow sheep puppy goat duck bull camel")
ANIMALS = _SINGULAR_ANIMALS | frozenset(_plural(_SINGULAR_ANIMALS).values())
SUBJECTS = frozenset(PEOPLE) | ANIMALS
PLURALS = frozenset(_plural(_SINGULAR_ANIMALS | _words("man woman child person boy girl kid baby")).values()) | \
    _words("people guys ladies players bikers toddlers")

_THINGS = _words("""ball frisbee stick bike bicycle skateboard surfboard snowboard kite toy rope horse wave
    camera guitar drum microphone umbrella bag backpack bottle cup sign flag bucket shovel bat racket net hoop
    basketball football soccer volleyball tennis baseball hockey golf motorcycle scooter boat kayak canoe
    raft car truck bus train sled skis swing slide tire leash hat flower flowers book phone newspaper food
    pizza sandwich ice cream water pole fish toys balls sticks""")
OBJECTS = _THINGS | ANIMALS
OBJECT_GROUPS = [_words("bike bicycle motorcycle"), _words("ball balls basketball football soccer volleyball "
                 "tennis baseball"), _words("stick sticks pole bat"), _words("toy toys ball"),
                 _words("frisbee disc toy"), _words("boat kayak canoe raft"), _words("dog puppy dogs"),
                 _words("horse pony"), _words("surfboard board"), _words("skateboard board"),
                 _words("snowboard board"), _words("car truck vehicle")]
TRANSITIVE = _words("riding holding carrying throwing catching chasing kicking pulling pushing eating "
                    "playing fetching hitting drinking climbing")
COLOUR_NOUNS = ANIMALS | _THINGS | _words("""shirt jacket coat dress hat helmet shorts pants jeans top
    uniform shoes boots skirt sweater hoodie swimsuit suit cap scarf tent building door wall fence jersey
    outfit costume vest shirts jackets uniforms hats helmets dresses""")

PLACES = _words("""grass field lawn yard park beach sand shore ocean sea water waves pool lake river stream
    creek pond snow mountain hill slope street road sidewalk city pavement track trail path dirt mud woods
    forest stage rocks rock cliff floor bed couch bench playground fountain desert""")
PLACE_GROUPS = [_words("grass field lawn yard park meadow backyard playground"),
                _words("beach sand shore ocean sea water waves surf"),
                _words("water pool lake river stream creek pond ocean sea fountain waves"),
                _words("snow mountain hill slope snowy"), _words("street road sidewalk city pavement crosswalk"),
                _words("dirt trail path track mud woods forest"), _words("rocks rock cliff mountain hill"),
                _words("floor bed couch bench"), _words("sand desert dirt")]
PLACE_PREPS = _words("in on at through across along near into down by under over around")

VERBS = _words("""running jumping swimming riding climbing walking sitting standing playing skiing surfing
    skateboarding snowboarding biking dancing singing eating drinking reading fishing hiking throwing
    catching kicking chasing carrying holding laying lying sleeping digging splashing wading pulling pushing
    fetching smiling laughing hugging resting racing crawling rolling skating performing posing""")
VERB_GROUPS = [_words("running racing jogging chasing sprinting"), _words("jumping leaping bouncing"),
               _words("swimming wading splashing"), _words("walking hiking strolling"),
               _words("sitting resting laying lying sleeping"), _words("riding biking cycling"),
               _words("playing chasing fetching running jumping catching throwing kicking"),
               _words("smiling laughing posing"), _words("standing posing waiting")]
NOT_DOING = _words("holding carrying pulling pushing throwing catching kicking chasing hitting fetching")  # need objects
DETERMINERS = _words("a an the his her their its some one")
STOPS = _words("and while as with which who that")


# ---- parsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    type: str
    question: str
    answer: str
    form: str          # the question form the wrong choices are drawn from first


def _det_noun(tokens: Sequence[str], start: int, nouns: frozenset[str], span: int = 3) -> int | None:
    """Index of the noun of a noun phrase beginning at `start` (a determiner, up to 2 modifiers)."""
    if start >= len(tokens) or tokens[start] not in DETERMINERS:
        return None
    for k in range(start + 1, min(start + span + 1, len(tokens))):
        if tokens[k] in nouns:
            return k
        if tokens[k] in STOPS or tokens[k] in PLACE_PREPS:
            return None
    return None


def _verb_after(tokens: Sequence[str], i: int) -> int | None:
    """The activity verb of the subject at `i`: "dog is running", "dog running", "man in a hat rides"."""
    for j in range(i + 1, min(i + 7, len(tokens))):
        word = tokens[j]
        if word in VERBS:
            between = tokens[i + 1:j]
            direct = not between or between in (["is"], ["are"])
            modifier = bool(between) and between[0] in ("in", "with", "wearing", "of") and \
                not any(w in SUBJECTS or w in VERBS for w in between)
            return j if direct or modifier else None
        if word in STOPS or word in SUBJECTS and j > i + 1:
            return None
    return None


def caption_questions(caption: str) -> list[Question]:
    """Every question one caption yields (possibly none)."""
    tokens = tokenize(caption)
    out: list[Question] = []
    for i, word in enumerate(tokens):
        # colour: "a brown dog", not "a black and white dog"
        if word in COLOURS and i + 1 < len(tokens) and tokens[i + 1] in COLOUR_NOUNS and \
                (i == 0 or tokens[i - 1] not in COLOURS and tokens[i - 1] != "and"):
            noun = tokens[i + 1]
            verb = "are" if noun in PLURALS or noun in ("shorts", "pants", "jeans", "shoes", "boots") else "is"
            out.append(Question("colour", f"What colour {verb} the {noun}?", COLOUR_ALIASES.get(word, word), "colour"))
        # how many: "two dogs"
        if word in NUMBERS and i + 1 < len(tokens) and tokens[i + 1] in PLURALS:
            noun = tokens[i + 1]
            out.append(Question("how many", f"How many {noun} are there?", word, "how many"))
    subject = next((i for i, w in enumerate(tokens) if w in SUBJECTS), None)
    if subject is None:
        return out
    noun = tokens[subject]
    j = _verb_after(tokens, subject)
    if j is None:
        return out
    verb, plural = tokens[j], noun in PLURALS
    be = "are" if plural else "is"
    if noun not in ("someone", "crowd") and verb not in NOT_DOING:
        out.append(Question("doing", f"What {be} the {noun} doing?", verb, f"doing {noun}"))
    k = j + 1
    with_ = k < len(tokens) and tokens[k] == "with" and verb == "playing"
    obj = _det_noun(tokens, k + int(with_), OBJECTS) if verb in TRANSITIVE else None
    phrase = ""
    if obj is not None and tokens[obj] != noun:
        det = "a" if tokens[k + int(with_)] in ("a", "an", "one", "his", "her", "their", "its") else \
            tokens[k + int(with_)]
        det = "an" if det == "a" and tokens[obj][0] in "aeiou" else det
        phrase = f"{verb} {'with ' if with_ else ''}{det} {tokens[obj]}"
        if noun not in ("someone", "crowd"):
            out.append(Question("what", f"What {be} the {noun} {verb}{' with' if with_ else ''}?", tokens[obj],
                                f"what {verb}"))
        k = obj + 1
    unknown_object = verb in TRANSITIVE and obj is None and k < len(tokens) and tokens[k] in DETERMINERS
    places = range(k, min(k + 3, len(tokens))) if verb not in NOT_DOING and not unknown_object else range(0)
    for p in places:
        if tokens[p] in PLACE_PREPS:
            place = _det_noun(tokens, p + 1, PLACES)
            if place is None and p + 1 < len(tokens) and tokens[p + 1] in PLACES:
                place = p + 1
            if place is not None and noun not in ("someone", "crowd"):
                out.append(Question("where", f"Where {be} the {noun} {verb}?", tokens[place], f"where {verb}"))
            break
        if tokens[p] in STOPS:
            break
    if noun in WHO_ANSWERS:
        out.append(Question("who", f"Who is {phrase or verb}?", noun, "who"))
    return out


# ---- what could also be right -------------------------------------------------------------------
def _person_compatible(a: str, b: str) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(PEOPLE[a], PEOPLE[b], strict=True))


GROUPS = {"colour": COLOUR_GROUPS, "where": PLACE_GROUPS, "what": OBJECT_GROUPS, "doing": VERB_GROUPS}


def could_be_right(kind: str, choice: str, caption_words: set[str]) -> bool:
    """Whether `choice` might also answer a `kind` question about an image whose captions hold these words."""
    if choice in caption_words or COLOUR_ALIASES.get(choice, choice) in caption_words:
        return True
    if kind == "colour" and choice == "gray" and "grey" in caption_words:
        return True
    if kind == "who":
        return any(w in PEOPLE and _person_compatible(choice, w) for w in caption_words)
    return any(choice in group and caption_words & group for group in GROUPS.get(kind, ()))


# ---- a data set ------------------------------------------------------------------------------------
def image_questions(captions: Sequence[str]) -> list[Question]:
    """The questions an image's captions agree on: one answer each (see the module notes)."""
    answers: dict[tuple[str, str], Counter] = {}
    first: dict[tuple[str, str], Question] = {}
    for caption in captions:
        for q in caption_questions(caption):
            key = (q.type, q.question)
            answers.setdefault(key, Counter())[q.answer] += 1
            first.setdefault(key, q)
    out = []
    for key, counts in answers.items():
        ranked = counts.most_common()
        if key[0] in ("colour", "how many") and len(ranked) > 1:
            continue   # two colours or counts for one noun: two different things
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            continue
        q = first[key]
        out.append(Question(q.type, q.question, ranked[0][0], q.form))
    return out


def _weighted_sample(pool: Counter, k: int, rng: random.Random, exclude) -> list[str]:
    """Up to `k` distinct entries of `pool`, drawn with probability proportional to their counts;
    `exclude(answer, picked so far)` rules an entry out."""
    items = sorted((a, n) for a, n in pool.items() if not exclude(a, []))
    picked: list[str] = []
    while items and len(picked) < k:
        r = rng.random() * sum(n for _, n in items)
        for idx, (a, n) in enumerate(items):
            r -= n
            if r < 0 or idx == len(items) - 1:
                picked.append(a)
                break
        items = [(a, n) for a, n in items if a not in picked and not exclude(a, picked)]
    return picked


def wrong_choices(q: Question, caption_words: set[str], form_pool: Counter, type_pool: Counter,
                  rng: random.Random, k: int = 3) -> list[str]:
    """Up to `k` wrong answers for `q`: from its question form's answers first, then its type's; never one
    that could also be right for the image (`could_be_right` on all its captions' words), nor two of one
    group (bike and bicycle both wrong would give the answer away by elimination)."""
    def bad(a: str, picked: list[str]) -> bool:
        return a == q.answer or a in picked or could_be_right(q.type, a, caption_words | set(picked)) or \
            q.type == "who" and _person_compatible(a, q.answer)
    wrong = _weighted_sample(form_pool, k, rng, bad)
    return wrong + _weighted_sample(type_pool, k - len(wrong), rng, lambda a, picked: bad(a, wrong + picked))


def generate(images: Sequence[dict], *, seed: int = 0, per_type: int = 2, choices: int = 3) -> dict:
    """Visual7W telling JSON from Karpathy-layout image entries (`filename`, `split`, `sentences[].raw`).

    At most `per_type` questions of each type per image (chosen with `seed`); questions for which
    fewer than `choices` wrong answers can be found are dropped."""
    asked: list[tuple[dict, list[Question], set[str]]] = []
    by_form: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for entry in images:
        captions = [s["raw"] if isinstance(s, dict) else str(s) for s in entry.get("sentences", [])]
        words = {w for c in captions for w in tokenize(c)}
        qs = image_questions(captions)
        asked.append((entry, qs, words))
        for q in qs:
            by_form.setdefault(q.form, Counter())[q.answer] += 1
            by_type.setdefault(q.type, Counter())[q.answer] += 1
    out_images, qa_id = [], 0
    for entry, qs, words in asked:
        image_id = entry.get("image_id") or entry["filename"].rsplit(".", 1)[0]
        rng = random.Random(f"caption-qa-{seed}-{image_id}")
        pairs = []
        for kind in TYPES:
            of_kind = [q for q in qs if q.type == kind]
            for q in rng.sample(of_kind, min(per_type, len(of_kind))):
                wrong = wrong_choices(q, words, by_form[q.form], by_type[q.type], rng, choices)
                if len(wrong) < choices:
                    continue
                qa_id += 1
                pairs.append({"qa_id": qa_id, "image_id": image_id, "question": q.question, "answer": q.answer,
                              "multiple_choices": wrong, "type": q.type})
        if pairs:
            out_images.append({"image_id": image_id, "filename": entry["filename"], "split": entry["split"],
                               "qa_pairs": pairs})
    return {"images": out_images, "source": "captions (COCO-QA-style rules, showtell vqa.caption_qa)",
            "seed": seed}


def counts(data: dict) -> dict[str, Counter]:
    """Questions per type in each split."""
    out: dict[str, Counter] = {}
    for image in data["images"]:
        for qa in image["qa_pairs"]:
            out.setdefault(image["split"], Counter())[qa["type"]] += 1
    return out
