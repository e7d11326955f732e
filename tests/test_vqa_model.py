"""The LSTM-Att answerer: sequence layout, scoring consistent with step-by-step decoding, hard
attention trained by REINFORCE, pointing, the `answer` API and checkpoint round trips."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from captioning.vocab import Vocabulary
from vqa import AnswererConfig, QuestionError, load_answerer
from vqa.decoder import IMAGE_SLOT, pack
from vqa.model import Answerer

from .test_vqa_helpers import TINY, tiny_encoder  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("tiny_encoder")

WORDS = ["what", "color", "is", "the", "square", "which", "box", "red", "green", "blue", "a", "sailor"]


def _model(task: str = "telling", **overrides) -> Answerer:
    torch.manual_seed(0)
    config = AnswererConfig(encoder=TINY, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0, task=task,
                            **overrides)
    return Answerer(config, Vocabulary.build(WORDS)).eval()


def test_pack_layout():
    seq = pack([[5, 6, 7], [8]], [[9], [10, 11]], start_id=1, end_id=2)
    assert seq.inputs.tolist() == [[IMAGE_SLOT, 5, 6, 7, 1, 9], [IMAGE_SLOT, 8, 1, 10, 11, 0]]
    assert seq.targets.tolist() == [[0, 0, 0, 0, 9, 2], [0, 0, 10, 11, 2, 0]]
    assert seq.lengths.tolist() == [6, 5]
    only = pack([[5, 6], [7]], None, start_id=1, end_id=2)
    assert only.inputs.tolist() == [[0, 5, 6], [0, 7, 0]] and only.targets.abs().sum() == 0


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_candidate_score_is_the_step_by_step_log_likelihood(attention):
    """Teacher-forced scoring of a candidate == reading the question, then `step` over its words."""
    model = _model(attention=attention, hard_inference="argmax" if attention == "hard" else "expectation")
    v = model.vocab
    features = torch.randn(2, 4, 8)
    questions = [v.encode("what color is the square", add_start_end=False), v.encode("which box", False)]
    candidates = [[v.encode("red", False), v.encode("a sailor", False)], [v.encode("blue", False)]]
    with torch.no_grad():
        scores = model.score_candidates(features, questions, candidates)
        assert scores.shape == (2, 2) and scores[1, 1] == float("-inf")
        for b, cands in enumerate(candidates):
            for k, cand in enumerate(cands):
                state, memory, _ = model.decoder.encode(features[b:b + 1], pack([questions[b]], None, start_id=1,
                                                                                 end_id=2))
                total, token = 0.0, torch.tensor([v.start_id])
                for word in [*cand, v.end_id]:
                    log_probs, state, _ = model.decoder.step(token, state, memory)
                    total += float(log_probs[0, word])
                    token = torch.tensor([word])
                assert scores[b, k].item() == pytest.approx(total, abs=1e-4)


def test_rows_do_not_leak_into_each_other():
    """A question's score does not depend on what else is in the batch (padding is inert)."""
    model = _model()
    v = model.vocab
    features = torch.randn(2, 4, 8)
    q = [v.encode("what color is the square", False), v.encode("which", False)]
    c = [[v.encode("red", False)], [v.encode("a sailor", False)]]
    with torch.no_grad():
        both = model.score_candidates(features, q, c)
        alone = model.score_candidates(features[1:], q[1:], c[1:])
    assert both[1, 0].item() == pytest.approx(alone[0, 0].item(), abs=1e-5)


@pytest.mark.parametrize("task", ["telling", "pointing"])
def test_hard_attention_learns_through_reinforce(task):
    """Hard attention: sampled locations give no gradient path, so the attention MLP is trained
    only by the REINFORCE term of the decoder's machinery; it must receive a gradient."""
    model = _model(task, attention="hard").train()
    v = model.vocab
    seq = pack([v.encode("which box", False)] * 3, None if task == "pointing" else [[v.index["red"]]] * 3,
               start_id=1, end_id=2)
    boxes = torch.randn(3, 4, 8) if task == "pointing" else None
    out = model.decoder(torch.randn(3, 4, 8), seq, boxes, torch.tensor([0, 1, 2]) if boxes is not None else None)
    out.loss.backward()
    grad = model.decoder.attention.score.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert bool(model.decoder.baseline_initialised)


def test_answer_api():
    model = _model()
    image = Image.new("RGB", (40, 30), (200, 20, 20))
    r = model.answer(image, "What color is the square?", choices=["red", "green", "blue", "a sailor"])
    assert r.text in {"red", "green", "blue", "a sailor"} and len(r.scores) == 4
    assert r.text == r.choices[max(range(4), key=r.scores.__getitem__)]
    assert r.attention.shape == (5, 2, 2) and r.question_tokens == ["what", "color", "is", "the", "square"]
    assert torch.allclose(r.attention.sum(dim=(1, 2)), torch.ones(5))
    open_ended = model.answer(image, "What color is the hexagon? ¿Qué?", beam_size=2)
    assert isinstance(open_ended.text, str) and open_ended.question_tokens[4] == "<unk>"
    assert len(open_ended.scores) == len(open_ended.choices) >= 1
    long = model.answer(image, "what " * 30, choices=["red"])
    assert long.truncated and long.notices and long.attention.shape[0] == model.config.max_question_len
    with pytest.raises(QuestionError, match="no words"):
        model.answer(image, "?!")
    with pytest.raises(QuestionError, match="empty"):
        model.answer(image, "what color", choices=[])


def test_pointing_answer_api():
    model = _model("pointing")
    image = Image.new("RGB", (48, 48), (40, 40, 40))
    r = model.answer(image, "Which square is white?", choices=["0,0,24,24", (24, 0, 24, 24), {"x": 0, "y": 24,
                                                                 "width": 24, "height": 24}])
    assert len(r.scores) == 3 and r.text in r.choices and r.choices[1] == "24,0,24,24"
    with pytest.raises(QuestionError, match="boxes"):
        model.answer(image, "Which square is white?")


def test_checkpoint_round_trip(tmp_path):
    model = _model()
    image = Image.new("RGB", (32, 32), (20, 200, 20))
    before = model.answer(image, "what color is the square", choices=["red", "green"])
    model.save(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["format"] == "showtell-answerer/1" and config["model"]["decoder"]["task"] == "telling"
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert not any(k.startswith("encoder.") for k in tensors)  # frozen pretrained encoder: rebuilt on load
    loaded = load_answerer(tmp_path / "ckpt")
    after = loaded.answer(image, "what color is the square", choices=["red", "green"])
    assert after.scores == pytest.approx(before.scores, abs=1e-5)
    from captioning.checkpoint import CheckpointError

    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**config, "format": "showtell-captioner/1"}))
    with pytest.raises(CheckpointError, match="not a question-answering checkpoint"):
        load_answerer(tmp_path / "ckpt")


def test_bundled_model_answers_easy_vqa_and_shapes():
    """The shipped model (frozen EfficientNet-Lite0 + LSTM-Att trained on easy-VQA and shapes questions)."""
    from captioning.data.shapes import make_scene
    from captioning.images import open_image
    from vqa.data import load_easy_vqa

    model = load_answerer("easy-vqa-shapes")
    dataset = load_easy_vqa()
    test = dataset.split("test")[::997][:10]  # ten easy-VQA test questions spread over the set
    right = 0
    for q in test:
        r = model.answer(open_image(dataset.images[q.image]), q.question)
        right += r.text == q.answer
        assert r.attention.shape == (len(r.question_tokens), 4, 4)
    assert right >= 9
    image, objects = make_scene(seed=123, index=0)
    r = model.answer(image, "how many shapes are there?", choices=["one", "two", "three"])
    assert r.text == ["one", "two", "three"][len(objects) - 1]


def test_an_open_ended_answer_reads_its_question_once(monkeypatch):
    """The question's attention and the answer come from one pass over the question (issue 25), and the
    answer is the one `generate` gives from a fresh read."""
    from vqa.model import read_question

    model = _model("telling")
    passes = []
    encode = model.decoder.encode
    monkeypatch.setattr(model.decoder, "encode", lambda *a: passes.append(1) or encode(*a))
    image = Image.new("RGB", (48, 40), (30, 200, 30))
    result = model.answer(image, "what color is the square?", beam_size=2)
    assert len(passes) == 1 and result.attention.shape[0] == 5
    ids = read_question(model.vocab, "what color is the square?", model.config.max_question_len)[0]
    fresh = model.generate(model.encoder.encode_pil([image]), [ids], beam_size=2, num_results=2)[0]
    assert result.text == " ".join(model.vocab.words[i] for i in fresh[0].token_ids)
    assert result.scores[0] == pytest.approx(fresh[0].log_prob, abs=1e-5)
