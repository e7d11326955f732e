"""The committed word tables and what the captioner does with them: tags, guidance, stand-ins, notices."""

from __future__ import annotations

import math
import re

import pytest
import torch

from captioning.encoders import IMAGENET_1K, create_encoder
from captioning.guidance import GuideSettings, hedge_people, out_of_depth, plan, render
from captioning.lexicon.endings import bad_ending, no_end_words
from captioning.lexicon.tags import caption_words, tag_table
from captioning.vocab import Vocabulary, tokenize

from .helpers import random_features, tiny_captioner

KINDS = {"animal", "vehicle", "food", "drink", "clothing", "place", "plant", "furniture", "device", "object",
         "instrument", "sport"}


def test_imagenet_table_covers_every_class_in_order():
    from torchvision.models import ResNet50_Weights

    table = tag_table(IMAGENET_1K)
    assert table.class_names == tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    words = dict(zip(table.class_names, table.class_words, strict=True))
    assert {words[n] for n in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")} == {"cat"}
    assert {words[n] for n in ("Chihuahua", "golden retriever", "Mexican hairless")} == {"dog"}
    assert (words["airliner"], words["espresso"], words["space shuttle"]) == ("airplane", "coffee", "rocket")
    assert words["web site"] is None
    assert torch.equal(table.matrix.sum(1), torch.tensor([float(w is not None) for w in table.class_words]))


def test_caption_words_are_single_tokens_with_known_kinds_and_unique_forms():
    entries = caption_words()
    used = {w for w in tag_table(IMAGENET_1K).class_words if w}
    assert used == set(entries)
    seen: dict[str, str] = {}
    for word, entry in entries.items():
        assert entry.kind in KINDS
        for name in entry.names:
            assert tokenize(name) == [name] and re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
            assert name not in seen, f"{name} under {word} and {seen.get(name)}"
            seen[name] = word
        assert entry.stand_in is None or tokenize(entry.stand_in) == [entry.stand_in]


def test_word_probabilities_sum_classes():
    table = tag_table(IMAGENET_1K)
    probs = torch.zeros(1, 1000)
    probs[0, 281], probs[0, 285], probs[0, 151] = 0.5, 0.2, 0.3  # tabby, Egyptian cat, Chihuahua
    words = table.word_probabilities(probs)[0]
    assert float(words[table.words.index("cat")]) == pytest.approx(0.7)
    assert table.top_words(table.word_probabilities(probs))[0] == [("cat", 0.7), ("dog", 0.3)]


def test_encoders_with_a_classifier_compute_it_from_their_grid():
    from captioning.efficientnet_lite import EfficientNetLite

    encoder = create_encoder("efficientnet_lite0", pretrained=False, image_size=64).eval()
    net = EfficientNetLite("lite0").eval()
    net.load_state_dict({**{k.removeprefix("trunk.net."): v for k, v in encoder.state_dict().items()
                            if k.startswith("trunk.net.")}, "_fc.weight": encoder.head.fc.weight,
                         "_fc.bias": encoder.head.fc.bias})
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(encoder.class_logits(encoder(pixels)), net(pixels), atol=1e-5)
    assert encoder.head_labels == IMAGENET_1K
    assert all(not p.requires_grad for p in encoder.head.parameters())


def test_plan_requires_the_confident_word_and_rules_out_its_rivals():
    table = tag_table(IMAGENET_1K)
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "dogs", "cat", "horse", "ball"])
    probs = torch.zeros(len(table.words))
    probs[table.words.index("cat")], probs[table.words.index("dog")] = 0.8, 0.05
    settings = GuideSettings(threshold=0.6, dominant_at=0.2, dominance=2.0)
    p = plan(probs, table, vocab, settings)
    assert p.required == ("cat",) and p.guidance.include == (frozenset({vocab.index["cat"]}),)
    assert p.plurals == {"cat": "cats"}  # rendered after "two" even though the vocabulary has no "cats"
    assert {vocab.index[w] for w in ("dog", "dogs", "horse")} <= p.guidance.exclude
    assert vocab.index["ball"] not in p.guidance.exclude
    unsure = plan(probs, table, vocab, settings, threshold=0.9)  # not confident enough to require cat ...
    assert unsure.required == () and vocab.index["dog"] in unsure.guidance.exclude  # ... but enough to rule out dog
    probs[table.words.index("dog")] = 0.5
    assert vocab.index["dog"] not in plan(probs, table, vocab, settings).guidance.exclude  # 0.8 < 2 x 0.5
    probs[table.words.index("dog")] = 0.05
    probs[table.words.index("cat")] = 0.0
    probs[table.words.index("zebra")] = 0.9  # not in the vocabulary: said through its stand-in, horse
    z = plan(probs, table, vocab, settings)
    assert z.required == ("zebra",) and z.spoken_as == {vocab.index["horse"]: "zebra"}
    assert vocab.index["horse"] not in z.guidance.exclude
    probs[table.words.index("zebra")] = 0.0
    probs[table.words.index("shirt")] = 0.95  # clothing: shown as a tag, never required
    assert plan(probs, table, vocab, settings).required == ()


def test_animals_the_tags_cannot_tell_apart_are_said_as_animal():
    """Hedging (Deng et al. 2012): a dog and a cat the tags split between, or (with `hedge_absent`) an animal
    the tags do not see at all, are printed "animal"; a wolf and a dog (both said "dog") are not a split, and
    a word confident enough to be required is said as itself."""
    table = tag_table(IMAGENET_1K)
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "dogs", "cat", "cats", "horse", "ball"])
    settings = GuideSettings(threshold=0.6, hedge_kinds=("animal",), hedge_split=0.1, dominance=3.0)
    probs = torch.zeros(len(table.words))
    probs[table.words.index("dog")], probs[table.words.index("cat")] = 0.55, 0.3
    split = plan(probs, table, vocab, settings)
    assert split.spoken_as == {vocab.index["dog"]: "animal", vocab.index["dogs"]: "animals",
                               vocab.index["cat"]: "animal", vocab.index["cats"]: "animals"}
    assert not split.guidance.exclude & {vocab.index["dog"], vocab.index["cat"]}
    assert split.hedges == [(frozenset(split.spoken_as), "The encoder's classifier cannot tell a dog (55%) from a "
                                                         'cat (30%) here, so the caption says "animal".')]
    assert plan(probs, table, vocab, GuideSettings(threshold=0.6)).spoken_as == {}  # hedging is opt-in
    probs[table.words.index("cat")] = 0.15
    assert plan(probs, table, vocab, settings).spoken_as == {}              # 0.55 >= 3 x 0.15: the dog it is
    probs[table.words.index("cat")], probs[table.words.index("wolf")] = 0.0, 0.4
    assert plan(probs, table, vocab, settings).spoken_as == {}              # a wolf is said "dog" anyway
    probs[table.words.index("wolf")], probs[table.words.index("dog")] = 0.0, 0.0
    probs[table.words.index("cat")], probs[table.words.index("horse")] = 0.7, 0.3
    sure = plan(probs, table, vocab, settings)
    assert sure.required == ("cat",) and sure.spoken_as == {}               # required: said as itself
    probs[:] = 0.0
    probs[table.words.index("dishwasher")] = 0.9
    assert plan(probs, table, vocab, settings).spoken_as == {}
    absent = plan(probs, table, vocab, GuideSettings(hedge_kinds=("animal",), hedge_absent=0.02))
    assert absent.spoken_as[vocab.index["dog"]] == "animal" and absent.spoken_as[vocab.index["horse"]] == "animal"
    assert render(["a", "dog", "runs"], {"dog": "animal"}) == ["an", "animal", "runs"]


def test_people_the_decoder_is_unsure_of_are_said_as_person():
    words = "a boy and two girls watch a man".split()
    log_p = [0.0, math.log(0.09), 0.0, 0.0, math.log(0.05), 0.0, 0.0, math.log(0.5)]
    said, why = hedge_people(words, log_p, 0.12)
    assert said == "a person and two people watch a man".split()
    assert why == 'The captioner is unsure who is in the photo ("boy" 9%), so the caption says "person".'
    assert hedge_people(words, log_p, 0.0) == (words, None)
    assert hedge_people(words, [], 0.12) == (words, None)  # no word scores: left as it is


def test_render_replaces_stand_ins_and_fixes_articles():
    assert render("a horse runs past a dog".split(), {"horse": "elephant"}) == "an elephant runs past a dog".split()
    assert render("an apple".split(), {"apple": "banana"}) == ["a", "banana"]
    assert render("a dog".split(), {}) == ["a", "dog"]
    assert render("a airplane flies over a umbrella and an unicycle".split(), {}) == \
        "an airplane flies over an umbrella and a unicycle".split()
    # a required word after a number takes its plural; the decoder's own words are left as they are
    assert render("two rocket are near two dog".split(), {}, {"rocket": "rockets"}) == \
        "two rockets are near two dog".split()
    assert render("a rocket".split(), {}, {"rocket": "rockets"}) == ["a", "rocket"]


def test_out_of_depth_names_rare_things():
    table, settings = tag_table(IMAGENET_1K), GuideSettings()
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "dog", "rocket"], [0, 0, 0, 0, 9000, 3])
    assert "rocket" in out_of_depth([("rocket", 0.9)], vocab, table, settings)
    assert "only 3 times" in out_of_depth([("rocket", 0.9)], vocab, table, settings)
    assert "never" in out_of_depth([("koala", 0.7)], vocab, table, settings)
    assert out_of_depth([("dog", 0.9)], vocab, table, settings) is None
    assert out_of_depth([("rocket", 0.2)], vocab, table, settings) is None
    assert out_of_depth([("rocket", 0.9)], Vocabulary(vocab.words), table, settings) is None  # no counts


def test_endings_table():
    table = no_end_words()
    assert table["the"] == "article" and table["of"] == "preposition" and table["and"] == "conjunction"
    assert table["holding"] == "rarely final" and "grass" not in table and "dog" not in table
    assert bad_ending("a man is holding".split()) == "rarely final"
    assert bad_ending("a dog runs on the grass".split()) is None and bad_ending([]) is None
    assert bad_ending("a boy is holding a red".split()) == "noun missing"      # a pair: "a red" needs its noun
    assert bad_ending("the car is red".split()) is None and bad_ending("a man is holding a boy".split()) is None
    assert bad_ending("a boy is holding a red and white".split()) == "noun missing"  # the phrase is still open
    assert bad_ending("a boy and a girl in red and white".split()) is None


def test_a_describing_word_after_an_article_cannot_end():
    """A toy decoder that most wants to stop after "a red" says the noun first, in greedy, sampled and beam
    search; after "is red" it may stop. The sampler's distribution is the one SCST scores (`masked_logits`)."""
    from captioning.search import GenerationRules, beam_search, generation_step, sequential_search

    START, END, A, RED, IS, CAR = 1, 2, 4, 5, 6, 7

    def step(tokens, state, memory):
        logits = torch.full((tokens.shape[0], 8), -5.0)
        logits[tokens == START, state[0][tokens == START, 0].long()] = 5.0  # the first word: A or IS
        logits[:, RED] = torch.where((tokens == A) | (tokens == IS), 5.0, -5.0)
        logits[tokens == RED, END], logits[tokens == RED, CAR] = 6.0, 3.0
        logits[tokens == CAR, END] = 6.0
        return logits.log_softmax(-1), state, torch.ones(tokens.shape[0], 1)

    rules = GenerationRules(never=(3,), start_id=START, end_id=END, no_end_pairs=((A, RED),))
    kw = dict(start_id=START, end_id=END, max_len=5)
    for first, expected in ((A, [A, RED, CAR]), (IS, [IS, RED])):
        state = rules.initial_state((torch.full((1, 1), float(first)),))
        ruled = generation_step(step, rules)
        assert sequential_search(ruled, state, None, **kw)[0].token_ids == expected
        assert beam_search(ruled, state, None, pad_id=0, beam_size=3, **kw)[0][0].token_ids == expected
        sampled = sequential_search(ruled, state, None, temperature=1.0, generator=torch.Generator().manual_seed(0),
                                    **kw)
        assert sampled[0].token_ids[-1] != RED or first == IS
    logits = torch.zeros(2, 8)
    masked = rules.masked_logits(logits, torch.tensor([RED, RED]), torch.tensor([A, IS]))
    assert masked[0, END] == float("-inf") and masked[1, END] == 0.0


def test_captions_never_end_badly(vocab):
    """A toy decoder that most wants to end right after "a" says another word first, in every search; the
    captioner's rules carry every listed word of its vocabulary."""
    from captioning.search import GenerationRules, beam_search, generation_step, sequential_search

    START, END, A, CIRCLE = 1, 2, 4, 5

    def step(tokens, state, memory):
        logits = torch.full((tokens.shape[0], 6), -5.0)
        logits[:, A] = 3.0
        logits[tokens == A, END], logits[tokens == A, CIRCLE], logits[tokens == A, A] = 6.0, 4.0, -9.0
        logits[tokens == CIRCLE, END] = 6.0
        return logits.log_softmax(-1), state, torch.ones(tokens.shape[0], 1)

    rules = GenerationRules(never=(3,), start_id=START, end_id=END, no_end_after=(A,))
    state, memory = (torch.zeros(1, 1),), None
    kw = dict(start_id=START, end_id=END, max_len=5)
    assert sequential_search(step, state, memory, **kw)[0].token_ids == [A]  # unruled: "a"
    assert sequential_search(generation_step(step, rules), state, memory, **kw)[0].token_ids == [A, CIRCLE]
    assert beam_search(generation_step(step, rules), state, memory, pad_id=0, beam_size=3, **kw)[0][0].token_ids \
        == [A, CIRCLE]
    model = tiny_captioner(vocab)
    banned = {vocab.words[i] for i in model.generation_rules.no_end_after}
    assert banned == {w for w in vocab.words if w in no_end_words()} and {"a", "of", "the"} <= banned


def test_photos_that_must_say_a_word_keep_fewer_beams_and_their_place_in_the_batch(vocab, monkeypatch):
    """Constrained search on the photos with a required word keeps `group_beams` beams per group; a batch
    mixing them with unguided photos gives each photo what captioning it alone gives."""
    from captioning.guidance import Plan
    from captioning.search import Guidance

    model = tiny_captioner(vocab)
    word = vocab.index["circle"] if "circle" in vocab.index else 5
    required = Plan(Guidance((frozenset({word}),)), (vocab.words[word],))
    pattern = [Plan(), required, Plan()]
    monkeypatch.setattr(model, "_plans", lambda probs, guide: [pattern[i % 3] for i in range(len(probs))])
    feats = random_features(3, seed=7)
    together = model.caption_features(feats, beam_size=3)
    alone = [model.caption_features(feats[i:i + 1], beam_size=3)[0] for i in range(3)]
    assert [r.text for r in together] == [r.text for r in alone]
    assert together[1].guided_by == [vocab.words[word]] and not together[0].guided_by
    widths, decode = [], model.decode

    def spy(*args, beam_size, guidance=None, **kwargs):
        widths.append((beam_size, guidance is not None))
        return decode(*args, beam_size=beam_size, guidance=guidance, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    model.caption_features(feats, beam_size=3)
    assert sorted(widths) == [(2, True), (3, False)]  # the required-word photo alone, 2 beams per group


def test_captioner_reports_tags_and_guides(vocab):
    model = tiny_captioner(vocab)
    feats = random_features(2, seed=4)
    results = model.caption_features(feats, beam_size=3)
    for r in results:
        assert all(isinstance(w, str) and 0.05 <= p <= 1 for w, p in r.tags)
        assert [p for _, p in r.tags] == sorted((p for _, p in r.tags), reverse=True)
    # a saved model keeps its guidance settings
    model.guide_settings = GuideSettings(threshold=0.3, temperature=0.7)
    import tempfile

    from captioning import load_captioner
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_captioner(model.save(f"{tmp}/m"), pretrained_encoder=False)
    assert loaded.guide_settings == model.guide_settings


def test_guide_settings_validate():
    with pytest.raises(ValueError, match="threshold"):
        GuideSettings(threshold=0)
    with pytest.raises(ValueError, match="unknown guidance keys"):
        GuideSettings.from_dict({"thresold": 0.5})
    assert GuideSettings.from_dict(GuideSettings().to_dict()) == GuideSettings()


def test_vocabulary_counts_round_trip():
    v = Vocabulary.build(["a dog", "a dog runs", "a cat"])
    assert v.count("dog") == 2 and v.count("cat") == 1 and v.count("zebra") == 0
    assert Vocabulary.from_json(v.to_json()).counts == v.counts
    assert Vocabulary(v.words).count("dog") is None
    with pytest.raises(ValueError, match="counts"):
        Vocabulary(v.words, [1] * (len(v) - 1))


def test_class_counts_weigh_down_big_groups():
    """5 cat classes and 118 dog classes, half the probability on each group: a = 0.5 favours the cat."""
    table = tag_table(IMAGENET_1K)
    probs = torch.zeros(1, 1000)
    cat_classes = [k for k, w in enumerate(table.class_words) if w == "cat"]
    dog_classes = [k for k, w in enumerate(table.class_words) if w == "dog"]
    probs[0, cat_classes] = 0.5 / len(cat_classes)
    probs[0, dog_classes] = 0.5 / len(dog_classes)
    plain = table.word_probabilities(probs)[0]
    weighted = table.word_probabilities(probs, 0.5)[0]
    cat, dog = table.words.index("cat"), table.words.index("dog")
    assert float(plain[cat]) == pytest.approx(0.5) and float(plain[dog]) == pytest.approx(0.5)
    ratio = (len(dog_classes) / len(cat_classes)) ** 0.5
    assert float(weighted[cat] / weighted[dog]) == pytest.approx(ratio, rel=1e-4)
    assert float(weighted.sum()) == pytest.approx(1.0, abs=1e-5)


def test_words_the_captioner_knows_are_left_to_it():
    """A tag the training captions mention often (dog) is not forced in; one they rarely mention (cat) is."""
    table = tag_table(IMAGENET_1K)
    words = ["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "cat"]
    vocab = Vocabulary(words, [0, 0, 0, 0, 9000, 6000, 40])
    settings = GuideSettings(threshold=0.6, known_from=100)
    for word, required in (("dog", ()), ("cat", ("cat",))):
        probs = torch.zeros(len(table.words))
        probs[table.words.index(word)] = 0.9
        assert plan(probs, table, vocab, settings).required == required
    assert plan(probs, table, Vocabulary(words), settings).required == ("cat",)  # no counts: every tag is news


def test_tags_that_mislead_on_training_photos_are_not_required():
    from captioning.guidance import unreliable_tags

    table = tag_table(IMAGENET_1K)
    rows, captions = [], []
    for word, photos, mentioned in (("whale", 6, 1), ("dog", 6, 5), ("rocket", 2, 0), ("unicycle", 5, 3)):
        for i in range(photos):
            probs = torch.zeros(len(table.words))
            probs[table.words.index(word)] = 0.9
            rows.append(probs)
            said = f"a {word} is here" if i < mentioned else "a man is swimming"
            captions.append([tokenize(said), tokenize("people outside")])
    found = unreliable_tags(torch.stack(rows), captions, table, threshold=0.6)
    assert found == ("whale",)  # 1 of 6 confirmed; dog 5/6, unicycle 3/5; rocket: too few photos to judge
    assert unreliable_tags(torch.stack(rows), captions, table, threshold=0.95) == ()
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "whale"])
    whale = rows[0]
    assert plan(whale, table, vocab, GuideSettings(unreliable=found)).required == ()
    assert plan(whale, table, vocab, GuideSettings()).required == ("whale",)


def test_a_noun_phrase_stays_open_through_and():
    """After "a red and" the phrase still waits for its noun: "a red and white" cannot end, in search and
    under the distribution SCST scores (`befores` follows generation's state); "is red and white" can."""
    from captioning.search import GenerationRules, beam_search, generation_step

    START, END, A, RED, AND, WHITE, IS, CAR = 1, 2, 4, 5, 6, 7, 8, 9

    def step(tokens, state, memory):
        logits = torch.full((tokens.shape[0], 10), -5.0)
        logits[tokens == START, state[0][tokens == START, 0].long()] = 5.0  # the first word: A or IS
        logits[(tokens == A) | (tokens == IS), RED] = 5.0
        logits[tokens == RED, AND] = 5.0
        logits[tokens == AND, WHITE] = 5.0
        logits[tokens == WHITE, END], logits[tokens == WHITE, CAR] = 6.0, 3.0
        logits[tokens == CAR, END] = 6.0
        return logits.log_softmax(-1), state, torch.ones(tokens.shape[0], 1)

    rules = GenerationRules(never=(3,), start_id=START, end_id=END, no_end_pairs=((A, RED), (A, WHITE)),
                            joiners=(AND,))
    for first, expected in ((A, [A, RED, AND, WHITE, CAR]), (IS, [IS, RED, AND, WHITE])):
        state = rules.initial_state((torch.full((1, 1), float(first)),))
        found = beam_search(generation_step(step, rules), state, None, start_id=START, end_id=END, pad_id=0,
                            max_len=6, beam_size=2)[0][0]
        assert found.token_ids == expected
    inputs = torch.tensor([[START, A, RED, AND, WHITE], [START, IS, RED, AND, WHITE]])
    assert rules.befores(inputs).tolist() == [[START, START, A, A, A], [START, START, IS, RED, AND]]
    without = GenerationRules(never=(3,), start_id=START, end_id=END, no_end_pairs=((A, RED), (A, WHITE)))
    assert without.befores(inputs)[0].tolist() == [START, START, A, A, AND]  # no joiners: "a red and white" ends
