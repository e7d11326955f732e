"""The broader generated questions (`vqa.caption_qa`): people counts, "what is this", and yes/no pairs whose
premises no caption contradicts, balanced per type and split; determinism per seed; answer types; the
Visual7W loader reading the file; the question-only baseline per type and answer type; the wordings
(`vqa.caption_qa_wording`): several per type, each read as its kind, yes/no balanced per wording; the
evidence words derived from other captions."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from captioning.vocab import tokenize
from vqa import cli
from vqa.caption_qa import (
    ALL_TYPES,
    ANSWER_TYPES,
    TYPES,
    YES_NO_TYPES,
    counts,
    generate,
    wordings,
    yes_no_balance,
)
from vqa.caption_qa_broader import (
    balancing_weights,
    caption_people,
    caption_subject,
    derive_evidence,
    is_action,
    is_colour,
    is_there,
    main_subject,
    people_count,
    present_objects,
)
from vqa.caption_qa_lexicon import COLOUR_GROUPS, PRESENCE, PRESENCE_PLURAL, absent
from vqa.caption_qa_wording import CANONICAL, WORDINGS, placed, reword, slots_of, template_of
from vqa.data import load_visual7w
from vqa.prepare import flickr30k_photos, words_module
from vqa.question_kinds import asked_thing, question_kind


def words_of(captions: list[str]) -> set[str]:
    return {w for c in captions for w in tokenize(c)}


# ---- rules on hand-written captions ---------------------------------------------------------------------
@pytest.mark.parametrize("caption, number", [
    ("Two young men are sitting on a bench .", "two"),
    ("Three little girls play in the snow .", "three"),
    ("Two men and their dogs walk .", "two"),          # dogs are not people
    ("Two men and a woman talk .", ""),                 # another person: maybe not all
    ("Two boys and two girls run .", ""),               # two groups
    ("Two dogs chase a man .", None),                   # no number of people
    ("A man rides a bike .", None),
])
def test_people_count_of_one_caption(caption, number):
    assert caption_people(caption) == number


def test_people_count_needs_every_number_to_agree():
    assert people_count(["Two men talk .", "Two people stand .", "A man and a woman talk ."]) == "two"
    assert people_count(["Two men talk .", "Three people stand ."]) is None
    assert people_count(["Two men talk .", "Two men and a boy talk ."]) is None   # one caption is unsure
    assert people_count(["A man talks ."]) is None


def test_main_subject_is_named_canonically_and_ties_are_dropped():
    assert caption_subject("Two puppies play .") == "dog" and caption_subject("Three kids run .") == "child"
    assert caption_subject("Someone is running .") is None
    assert main_subject(["A puppy runs .", "A dog runs .", "A man and his dog ."]) == "dog"
    assert main_subject(["A dog runs .", "A man runs ."]) is None


def test_what_is_this_and_what_animal():
    images = [{"filename": f"{i}.jpg", "split": "train", "sentences": [{"raw": c} for c in caps]}
              for i, caps in enumerate([["A brown dog runs .", "Two dogs play .", "A puppy jumps ."],
                                        ["A man rides a bike .", "A man on a bike .", "A guy cycling ."],
                                        ["A cat sleeps .", "A kitten on a bed .", "A cat on a bed ."],
                                        ["A horse runs .", "A pony in a field .", "A horse grazes ."],
                                        ["A bird flies .", "A bird on a branch .", "Birds sing ."]])]
    pairs = {(i["image_id"], qa["type"]): qa for i in generate(images)["images"] for qa in i["qa_pairs"]}
    assert pairs["0", "what is this"]["answer"] == "dog" and pairs["0", "what animal"]["answer"] == "dog"
    assert pairs["1", "what is this"]["answer"] == "man" and ("1", "what animal") not in pairs
    assert pairs["3", "what animal"]["answer"] == "horse"
    assert not {"puppy", "dog"} & set(pairs["0", "what is this"]["multiple_choices"])
    assert {"cat", "horse"} <= set(pairs["0", "what is this"]["multiple_choices"])


def test_presence_yes_needs_a_majority_of_the_captions():
    captions = ["A dog runs with a ball .", "Two dogs play .", "A puppy and a ball .", "A man ."]
    assert present_objects(captions) == ["dog"]          # ball: 2 of 4, man: 1 of 4
    assert present_objects(captions[:2]) == ["dog"]     # ball: 1 of 2 is not more than half


@pytest.mark.parametrize("obj, caption", [
    ("dog", "A man walks with a puppy ."),                # a name of the object
    ("dog", "A man holds a leash ."),                     # evidence from Flickr30k's captions
    ("ball", "Kids play soccer ."),                       # a related word
    ("bike", "A cyclist on the road ."),
    ("cat", "A pet sleeps on the couch ."),               # any animal
    ("boy", "A child plays ."),                           # a child may be a boy
    ("man", "Someone is running ."),                      # anyone
    ("man", "He is running ."),
    ("woman", "A lady's hat ."),                          # possessive
])
def test_a_no_is_never_asked_when_a_caption_suggests_the_object(obj, caption):
    assert not absent(obj, set(tokenize(caption)))


@pytest.mark.parametrize("obj, caption", [
    ("dog", "A man rides a bike ."), ("woman", "A man and a boy ."), ("boy", "Two women talk ."),
    ("cat", "A man rides a bike ."),
])
def test_a_no_with_an_object_no_caption_suggests(obj, caption):
    assert absent(obj, set(tokenize(caption)))


def test_question_wording():
    assert is_there("umbrella", False) == "Is there an umbrella?" and is_there("man", True) == "Are there any men?"
    assert is_colour("What colour is the dog?", "brown") == "Is the dog brown?"
    assert is_colour("What colour is the shirts?", "red") == "Are the shirts red?"
    assert is_action("What is the dog playing with?", "ball") == "Is the dog playing with a ball?"
    assert is_action("What are the boys holding?", "toys") == "Are the boys holding toys?"


def test_balancing_weights_make_each_key_as_often_no_as_yes():
    # dog is "yes" in 6 images and allowed as a "no" in only 8 of 12: plain frequencies would give it too few
    targets = Counter(dog=6, cat=3, horse=3)
    slots = [["cat", "horse"]] * 4 + [["cat", "dog", "horse"]] * 8
    weights = balancing_weights(targets, slots)
    expected = Counter()
    for allowed in slots:
        total = sum(weights[k] for k in allowed)
        for k in allowed:
            expected[k] += weights[k] / total
    assert all(abs(expected[k] - n) < 0.05 for k, n in targets.items())
    assert balancing_weights(targets, slots) == weights                           # deterministic


# ---- a generated set -----------------------------------------------------------------------------------
ANIMALS = ["dog", "cat", "horse", "bird"]
PEOPLE = ["man", "woman", "boy", "girl"]
COLOURS = ["black", "white", "brown", "red", "blue", "green"]
THINGS = ["ball", "frisbee", "stick"]


def synthetic_images(n: int = 240, seed: int = 0) -> list[dict]:
    """`n` images, five or six captions each, three quarters train and the rest val: a coloured animal with
    a thing, and a person in a coloured shirt, named by a majority or a minority of the captions."""
    rng = random.Random(seed)
    images = []
    for i in range(n):
        animal, person, thing = rng.choice(ANIMALS), rng.choice(PEOPLE), rng.choice(THINGS)
        colour, shirt = rng.sample(COLOURS, 2)
        captions = [f"A {colour} {animal} is carrying a {thing} on the grass .",
                    f"The {animal} carries a {thing} .", f"A {animal} is running on the grass ."]
        people = [f"A {person} in a {shirt} shirt watches .", f"The {person} in a {shirt} shirt stands ."]
        captions += people if i % 3 else [f"A {colour} {animal} runs in a field .", f"An {animal} outside ."]
        if i % 4 == 0:
            captions.append(f"{['Two', 'Three', 'Four', 'Five'][i % 16 // 4]} {animal}s play .")   # a count
        images.append({"filename": f"{i}.jpg", "split": "train" if i < 3 * n // 4 else "val",
                       "sentences": [{"raw": c} for c in captions]})
    return images


IMAGES = synthetic_images()


@pytest.fixture(scope="module")
def data() -> dict:
    return generate(IMAGES, seed=0)


def test_premises_never_contradict_a_caption(data):
    captions = {e["filename"]: [s["raw"] for s in e["sentences"]] for e in IMAGES}
    asked = Counter()
    for image in data["images"]:
        caps = captions[image["filename"]]
        words = words_of(caps)
        for qa in image["qa_pairs"]:
            q, yes = tokenize(qa["question"]), qa["answer"] == "yes"
            asked[qa["type"], qa["answer"]] += 1
            if qa["type"] == "is there":
                obj = next(o for o in PRESENCE if {o, PRESENCE_PLURAL[o]} & set(q))   # in any wording
                named = sum(bool(PRESENCE[obj] & set(tokenize(c))) for c in caps)
                assert 2 * named > len(caps) if yes else named == 0 and absent(obj, words)
            elif qa["type"] == "is colour":
                colour = q[-1]
                group = next((g for g in COLOUR_GROUPS if colour in g), {colour})
                assert bool(words & group) == yes           # a "no" colour: no caption uses it, nor its group
                if yes:
                    noun = q[-2]
                    given = {c[k - 1] for c in map(tokenize, caps) for k, w in enumerate(c) if w == noun and k}
                    assert given & set(COLOURS) == {colour}  # every caption that colours the noun agrees
            elif qa["type"] == "is action":
                assert (q[-1] in words) == yes
    assert all(asked[t, "yes"] > 0 and asked[t, "no"] > 0 for t in ("is there", "is colour", "is action"))


def test_every_yes_no_type_is_balanced_per_split(data):
    balance = yes_no_balance(data)
    assert set(balance) == {"train", "val"}
    for split in balance:
        for kind in YES_NO_TYPES:
            assert balance[split][kind]["yes"] == balance[split][kind]["no"] > 0


def test_answer_types_and_choices(data):
    for image in data["images"]:
        for qa in image["qa_pairs"]:
            assert qa["answer_type"] == ANSWER_TYPES[qa["type"]]
            assert len(qa["multiple_choices"]) == 3 and qa["answer"] not in qa["multiple_choices"]
            if qa["answer_type"] == "yes/no":
                assert qa["answer"] in ("yes", "no")
                assert qa["multiple_choices"][0] == {"yes": "no", "no": "yes"}[qa["answer"]]
                assert not {"yes", "no"} & set(qa["multiple_choices"][1:])
    assert {"yes/no", "number", "other"} <= {qa["answer_type"] for i in data["images"] for qa in i["qa_pairs"]}


def test_generation_is_deterministic_and_leaves_the_coco_qa_set_alone(data):
    assert json.dumps(generate(IMAGES, seed=0)) == json.dumps(data)
    other = generate(IMAGES, seed=1)
    yes_no = [[qa["question"] for i in d["images"] for qa in i["qa_pairs"] if qa["answer_type"] == "yes/no"]
              for d in (data, other)]
    assert yes_no[0] != yes_no[1]
    alone = generate(IMAGES, seed=0, broader=False)
    first = {qa["qa_id"]: qa for i in data["images"] for qa in i["qa_pairs"] if qa["type"] in TYPES
             and qa["qa_id"] <= max(q["qa_id"] for j in alone["images"] for q in j["qa_pairs"])}
    assert first == {qa["qa_id"]: qa for i in alone["images"] for qa in i["qa_pairs"]}
    assert not any(qa["answer_type"] == "yes/no" for i in generate(IMAGES[:60], yes_no_per_image=0)["images"]
                   for qa in i["qa_pairs"])
    one, two = (generate(IMAGES[:60], yes_no_per_image=n) for n in (1, 2))
    assert counts(two)["train"]["is colour"] > counts(one)["train"]["is colour"]   # the animal's and the shirt's
    assert all(n["yes"] == n["no"] for kinds in yes_no_balance(two).values() for n in kinds.values())


def test_the_loader_reads_it_and_the_question_only_baseline_stays_near_chance_on_yes_no(data, tmp_path, capsys):
    annotations = tmp_path / "qa.json"
    annotations.write_text(json.dumps(data))
    loaded = load_visual7w(annotations, tmp_path, "telling", check_files=False)    # extra keys are harmless
    assert len(loaded.questions) == sum(len(i["qa_pairs"]) for i in data["images"])
    assert all(len(q.candidates) == 4 and {"yes", "no"} <= set(q.candidates) for q in loaded.questions
               if q.type in YES_NO_TYPES)
    out = tmp_path / "baseline.json"
    assert cli.main(["baseline", "--annotations", str(annotations), "--split", "val", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per answer type" in printed and "is there" in printed
    report = json.loads(out.read_text())
    per_type = report["multiple_choice"]["per_type"]
    for kind in YES_NO_TYPES:
        assert per_type[kind]["total"] > 0 and per_type[kind]["accuracy"] <= 0.65, kind
    by_answer = report["per_answer_type"]["multiple_choice"]["per_type"]
    assert by_answer["yes/no"]["accuracy"] <= 0.6 and by_answer["yes/no"]["total"] >= 60
    assert report["per_answer_type"]["open_ended"]["per_type"]["yes/no"]["accuracy"] <= 0.6


def test_prepare_command_options(tmp_path, capsys):
    captions = tmp_path / "dataset.json"
    captions.write_text(json.dumps({"images": IMAGES[:40]}))
    out = tmp_path / "qa.json"
    assert cli.main(["prepare", "caption-qa", "--captions", str(captions), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| split |" in printed and "yes/no in train: is there" in printed
    assert cli.main(["prepare", "caption-qa", "--captions", str(captions), "--out", str(out), "--coco-qa-only"]) == 0
    assert {qa["type"] for i in json.loads(out.read_text())["images"] for qa in i["qa_pairs"]} <= set(TYPES)
    assert cli.main(["prepare", "caption-qa", "--captions", str(captions), "--out", str(out), "--one-wording"]) == 0
    assert all(set(templates) <= set(CANONICAL[kind]) for kind, templates in wordings(json.loads(out.read_text())).items())
    assert cli.main(["prepare", "caption-qa", "--captions", str(captions), "--out", str(out),
                     "--yes-no-per-image", "-1"]) == 1


# ---- wordings --------------------------------------------------------------------------------------------
def varied_images(n: int = 200, seed: int = 1) -> list[dict]:
    """`n` images whose captions vary enough (subjects, activities, places, objects) for every type to be
    asked: a coloured animal doing something somewhere, a person riding or holding something."""
    rng = random.Random(seed)
    places = [("on", "grass"), ("on", "beach"), ("in", "snow"), ("along", "street"), ("in", "pool"), ("on", "rocks")]
    images = []
    for i in range(n):
        animal, person, colour = rng.choice(ANIMALS), rng.choice(PEOPLE), rng.choice(COLOURS)
        verb = rng.choice(["running", "walking", "sitting", "standing", "jumping"])
        prep, place = rng.choice(places)
        act, thing = rng.choice([("riding", "bike"), ("riding", "horse"), ("holding", "ball"), ("holding", "camera"),
                                 ("holding", "kite"), ("holding", "umbrella")])
        captions = [f"A {colour} {animal} is {verb} {prep} the {place} .", f"The {animal} is {verb} {prep} the {place} .",
                    f"A {person} is {act} a {thing} .", f"The {person} is {act} a {thing} .",
                    f"{rng.choice(['Two', 'Three', 'Four', 'Five'])} {animal}s play ." if i % 4 == 0
                    else f"A {colour} {animal} outside ."]
        images.append({"filename": f"{i}.jpg", "split": "train" if i < 3 * n // 4 else "val",
                       "sentences": [{"raw": c} for c in captions]})
    return images


KIND_OF_TYPE = {**{t: t for t in TYPES}, "what is this": "what is this", "what animal": "what is this",
                **dict.fromkeys(YES_NO_TYPES, "yes/no")}


@pytest.fixture(scope="module")
def varied() -> dict:
    return generate(varied_images(), seed=0)


def test_every_type_is_asked_in_several_wordings_each_read_as_its_kind(varied):
    for image in varied["images"]:
        for qa in image["qa_pairs"]:
            assert question_kind(qa["question"]) == KIND_OF_TYPE[qa["type"]], qa
            if qa["type"] == "what animal":
                assert asked_thing(qa["question"]) == "animal"
    used = wordings(varied)
    assert set(used) == set(ALL_TYPES)
    assert not any(None in templates for templates in used.values())        # each a wording of its type
    assert all(len(templates) > 1 for templates in used.values()), used
    colour = used["colour"]
    assert colour["What color {be} the {noun}?"] > 2 * colour["What colour {be} the {noun}?"]   # VQA's spelling


def test_yes_no_answers_are_balanced_per_wording(varied):
    answers: dict[tuple[str, str], Counter] = {}
    for image in varied["images"]:
        for qa in image["qa_pairs"]:
            if qa["answer_type"] == "yes/no":
                answers.setdefault((image["split"], template_of(qa["type"], qa["question"])), Counter())[qa["answer"]] += 1
    assert len({template for _, template in answers}) >= 8
    for key, n in answers.items():
        assert 0.45 <= n["yes"] / (n["yes"] + n["no"]) <= 0.55, (key, n)


def test_wordings_keep_the_question_and_its_grammar():
    rng = random.Random(0)
    assert {reword("colour", "What colour is the dog?", rng) for _ in range(40)} == \
        {"What colour is the dog?", "What color is the dog?"}
    assert {reword("colour", "What colour is the shirts?", rng) for _ in range(40)} == \
        {"What colour are the shirts?", "What color are the shirts?"}      # the plural, as "Are the shirts red?"
    assert len({reword("how many", "How many dogs are there?", rng) for _ in range(60)}) == 5
    assert {reword("what", "What are the boys holding?", rng) for _ in range(40)} == \
        {"What are the boys holding?", "What are these boys holding?"}
    assert slots_of("is action", "Is the dog playing with a ball?") == \
        {"Be": "Is", "be": "is", "this": "this", "noun": "dog", "act": "playing with a ball"}
    assert {reword("where", "Where is the dog running?", rng) for _ in range(40)} == {"Where is the dog running?"}
    assert "Where is the dog?" in {reword("where", "Where is the dog running?", rng, placed=True) for _ in range(40)}
    assert reword("what is this", "What is this?", rng, paraphrase=False) == "What is this?"
    assert {reword("who", "Who is holding?", rng) for _ in range(40)} == {"Who is holding?"}   # no "... in the picture"
    assert len({reword("who", "Who is riding a bike?", rng) for _ in range(40)}) == 2
    one = generate(varied_images(40), seed=0, paraphrase=False)
    assert all(template_of(qa["type"], qa["question"]) in CANONICAL[qa["type"]] for i in one["images"]
               for qa in i["qa_pairs"])
    assert all(template in dict(WORDINGS[kind]) for kind, templates in CANONICAL.items()
               for template in templates)


@pytest.mark.parametrize("captions, expected", [
    (["A dog is running on the grass .", "The dog is running through the field ."], True),   # field ~ grass
    (["A dog is running on the grass .", "The dog is jumping over the stream ."], False),    # over: not at it
    (["A dog is running on the grass .", "A dog is swimming in the pool ."], False),         # two places
    (["A dog is running on the grass .", "A man is sitting on the bench ."], True),          # another subject
])
def test_where_is_the_subject_only_where_every_caption_puts_it_there(captions, expected):
    assert placed(captions, "Where is the dog running?", "grass") is expected


# ---- evidence words from other captions ------------------------------------------------------------------
def test_evidence_words_are_those_that_come_with_the_object():
    photos = [{"a", "dog", "on", "leash"}] * 5 + [{"a", "man", "on", "leash"}] + [{"a", "man", "walks"}] * 20 + \
        [{"a", "dog's", "bowl"}] * 2
    evidence = derive_evidence(photos)
    assert "leash" in evidence["dog"]                    # 5 of the 6 photos that say leash name a dog
    assert "bowl" not in evidence["dog"]                 # too few photos
    assert "a" not in evidence["dog"] and "dog" not in evidence["dog"]
    assert set(evidence) == set(PRESENCE)


def test_flickr30k_reading_and_the_words_module(tmp_path):
    token = tmp_path / "results.token"
    token.write_text("1.jpg#0\tA dog on a leash .\n1.jpg#1\tA dog .\n2.jpg#0\tA man walks .\n\n"
                     "3.jpg#0\tA cat .\n")
    assert flickr30k_photos(token, {"3"}) == [{"a", "dog", "on", "leash"}, {"a", "man", "walks"}]
    bad = tmp_path / "bad.token"
    bad.write_text("no tab here\n")
    with pytest.raises(Exception, match="line 1"):
        flickr30k_photos(bad)
    text = words_module({"dog": ["leash"] + [f"word{'x' * (i % 7)}" for i in range(60)], "cat": []}, 2)
    assert max(map(len, text.splitlines())) <= 110
    scope: dict = {}
    exec(compile(text, "caption_qa_words.py", "exec"), scope)
    assert "leash" in scope["EVIDENCE"]["dog"] and scope["EVIDENCE"]["cat"] == frozenset()
