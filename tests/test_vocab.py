import pytest

from captioning.vocab import Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Man, riding a T-shirt's horse!  Café.") == ["a", "man", "riding", "a", "t-shirt's", "horse", "café"]
    assert tokenize("") == [] and tokenize("?!...") == []


def test_build_min_freq_and_specials():
    v = Vocabulary.build(["a dog", "a cat", "a dog runs"], min_freq=2)
    assert v.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert v.words[4:] == ["a", "dog"]
    assert v.encode("a cat") == [v.start_id, v.index["a"], v.unk_id, v.end_id]
    assert v.decode(v.encode("a dog")) == ["a", "dog"]


def test_json_round_trip(tmp_path):
    v = Vocabulary.build(["zebra crossing", "ünïcode words"])
    v.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").words == v.words


@pytest.mark.parametrize("text", ["not json", '{"words": 3}', '{"words": ["a", "b"]}', "[1, 2]"])
def test_bad_vocab_file_is_named(tmp_path, text):
    path = tmp_path / "vocab.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="vocab.json"):
        Vocabulary.load(path)
