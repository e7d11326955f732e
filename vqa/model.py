"""The question answerer users hold: encoder + LSTM-Att decoder + vocabulary, with
`answer(image, question, choices=None)` as its face; `load_answerer(path_or_bundled_name)`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from captioning.cells import State
from captioning.config import shown
from captioning.decoder import Memory
from captioning.decoders import ANSWER
from captioning.encoder_decoder import EncoderDecoder
from captioning.images import original_size
from captioning.limits import DEFAULT_BEAM_SIZE, MAX_CHOICES
from captioning.search import Hypothesis
from captioning.vocab import UNK, Vocabulary, tokenize

from .config import AnswererConfig, QATask
from .data import Box
from .decoder import QuestionAnsweringDecoder, pack
from .features import pooled_crops
from .question_kinds import question_kind
from .tag_answers import TagAnswerSettings, tag_answer

BUNDLED_DIR = Path(__file__).parent / "bundled"
DEFAULT_ANSWERER = "flickr8k-qa"  # what `load_answerer()` and the app load when given no name
FORMAT = "showtell-answerer/1"


class QuestionError(ValueError):
    """A question the model cannot read (no words), or choices it cannot score."""


@dataclass
class AnswerResult:
    text: str                         # the answer; for pointing the chosen box as "x,y,w,h"
    scores: list[float]               # one per entry of `choices`: log p(answer | image, question), or box logit
    choices: list[str]                # what was scored: the given choices, or the beams' answers (open-ended)
    attention: torch.Tensor           # (question words, H, W): where the step reading each word looked
    question_tokens: list[str]        # the question as the model read it (<unk> for unknown words)
    truncated: bool = False           # the question was cut to `max_question_len` words
    answer_attention: torch.Tensor | None = None  # (answer words, H, W) when the answer was generated
    notices: list[str] = field(default_factory=list)
    unknown_words: list[str] = field(default_factory=list)  # question words not in the model's vocabulary
    source: str = "model"             # "tags": answered by the encoder's classifier (`vqa.tag_answers`)


def unknown_words(question: str, read: list[str]) -> list[str]:
    """The question's words the model read as <unk>, each once, in order."""
    asked = tokenize(question)[:len(read)]
    return list(dict.fromkeys(w for w, r in zip(asked, read, strict=True) if r == UNK))


def read_question(vocab: Vocabulary, question: str, max_words: int) -> tuple[list[int], list[str], bool]:
    """(ids, words as read, truncated). Raises QuestionError when the question has no words."""
    if not isinstance(question, str):
        raise QuestionError(f"a question is text, got {type(question).__name__}")
    words = tokenize(question)
    if not words:
        raise QuestionError(f"the question has no words: {shown(question)}")
    truncated = len(words) > max_words
    words = words[:max_words]
    ids = vocab.encode(words, add_start_end=False)
    return ids, [w if i != vocab.unk_id else UNK for w, i in zip(words, ids, strict=True)], truncated


def in_decoded_pixels(boxes: Sequence[Box], image: Image.Image) -> list[Box]:
    """Boxes come in the file's pixels; an image decoded at a reduced scale (`open_image(at_least=...)`) is
    cropped at its own scale."""
    width, height = original_size(image)
    sx, sy = image.width / width, image.height / height
    if sx == sy == 1:
        return list(boxes)
    return [replace(b, x=b.x * sx, y=b.y * sy, width=b.width * sx, height=b.height * sy) for b in boxes]


def parse_box(choice: object) -> Box:
    """A box as (x, y, width, height), a dict with those keys, a `Box`, or the text "x,y,w,h"."""
    if isinstance(choice, Box):
        return choice
    if isinstance(choice, dict):
        values = [choice.get(k) for k in ("x", "y", "width", "height")]
    elif isinstance(choice, str):
        values = choice.replace(",", " ").split()
    else:
        values = list(choice) if isinstance(choice, Sequence) else []
    try:
        x, y, w, h = (float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        raise QuestionError(f"a pointing choice is a box x,y,width,height; got {shown(choice)}") from None
    if not all(map(math.isfinite, (x, y, w, h))):
        raise QuestionError(f"box {shown(choice)} has a coordinate that is not a finite number")
    if w <= 0 or h <= 0:
        raise QuestionError(f"box {shown(choice)} has no area")
    return Box(-1, x, y, w, h)


class Answerer(EncoderDecoder):
    format, kind = FORMAT, "question-answering"
    config_type, decoder_task, bundled_dir = AnswererConfig, ANSWER, BUNDLED_DIR
    config: AnswererConfig
    decoder: QuestionAnsweringDecoder
    tag_settings = TagAnswerSettings()
    trained_kinds: tuple[str, ...] | None = None  # question kinds seen in training (`vqa.question_kinds`)

    def configure(self, meta: dict) -> None:
        """The question kinds a checkpoint was trained on and how its tags answer, when config.json records them."""
        if "tags" in meta:
            self.tag_settings = TagAnswerSettings.from_dict(meta["tags"])
        kinds = meta.get("question_kinds")
        if kinds is not None:
            if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
                raise ValueError(f"question_kinds must be a list of kinds, got {shown(kinds)}")
            self.trained_kinds = tuple(kinds)

    def save(self, folder, extra: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        kinds = {"question_kinds": list(self.trained_kinds)} if self.trained_kinds is not None else {}
        return super().save(folder, {"tags": self.tag_settings.to_dict(), **kinds, **(extra or {})}, extra_files)

    # ---- batched building blocks (evaluation, training validation) ---------------------------
    @property
    def generates_words(self) -> bool:
        return self.config.task != QATask.POINTING

    def answer_ids(self, text: str) -> list[int]:
        return self.vocab.encode(text, add_start_end=False)[:self.config.max_len]

    def score_candidates(self, features: torch.Tensor, questions: list[list[int]],
                         candidates: list[list[list[int]]]) -> torch.Tensor:
        """Telling: log p(candidate words, <end> | image, question) -> (B, K), -inf past a question's
        own number of candidates. Call in eval mode."""
        row = [b for b, cands in enumerate(candidates) for _ in cands]
        col = [k for cands in candidates for k in range(len(cands))]
        v = self.vocab
        seq = pack([questions[b] for b in row], [a for cands in candidates for a in cands],
                   start_id=v.start_id, end_id=v.end_id).to(features.device)
        flat = self.decoder(features[row], seq).scores
        out = flat.new_full((len(questions), max(col) + 1), float("-inf"))
        out[row, col] = flat
        return out

    def point(self, features: torch.Tensor, questions: list[list[int]], box_features: torch.Tensor) -> torch.Tensor:
        """Pointing: box logits (B, K) from box features (B, K, D). Call in eval mode."""
        v = self.vocab
        seq = pack(questions, None, start_id=v.start_id, end_id=v.end_id).to(features.device)
        return self.decoder(features, seq, box_features.to(features)).scores

    def generate(self, features: torch.Tensor, questions: list[list[int]], *, beam_size: int = DEFAULT_BEAM_SIZE,
                 max_len: int | None = None, num_results: int = 1) -> list[list[Hypothesis]]:
        """Open-ended answers: the question is read, then `decode` (`captioning.search`) goes on from <start>."""
        v = self.vocab
        seq = pack(questions, None, start_id=v.start_id, end_id=v.end_id).to(features.device)
        state, memory, _ = self.decoder.encode(features, seq)
        return self.decode(state, memory, beam_size=beam_size, max_len=self.config.max_len if max_len is None else max_len,
                           num_results=num_results)

    def yes_no(self, features: torch.Tensor, questions: list[list[int]]) -> list[str] | None:
        """"yes" or "no", whichever the decoder scores higher, per question (None: the vocabulary lacks them)."""
        if not {"yes", "no"} <= set(self.vocab.index):
            return None
        choices = [self.answer_ids("yes"), self.answer_ids("no")]
        scores = self.score_candidates(features, questions, [choices] * len(questions))
        return ["yes" if pick == 0 else "no" for pick in scores.argmax(dim=1).tolist()]

    def tag_answers(self, features: torch.Tensor, questions: Sequence[str],
                    learned: Sequence[str | None] | None = None) -> list[tuple[str, str] | None]:
        """The tags' answer (`vqa.tag_answers`) to each question about each grid, or None where they give none;
        `learned`: the model's own answers (a "what is this" answered with a person stays so)."""
        s = self.tag_settings
        probs = self.tag_probabilities(features, s.temperature, s.count_power)
        if probs is None:
            return [None] * len(questions)
        learned = list(learned) if learned is not None else [None] * len(questions)
        return [tag_answer(q, p, self.tag_table, s, a) for q, p, a in zip(questions, probs.cpu(), learned, strict=True)]

    def question_pass(self, features: torch.Tensor, question: list[int]) -> tuple[State, Memory, torch.Tensor]:
        """One pass over one question: the decoder's state after it (where an answer starts), the image's
        memory, and (words, H, W) the attention of the step that read each question word."""
        v = self.vocab
        seq = pack([question], None, start_id=v.start_id, end_id=v.end_id).to(features.device)
        state, memory, alphas = self.decoder.encode(features[:1], seq)
        g = self.encoder.grid_size
        return state, memory, alphas[0, 1:1 + len(question)].float().cpu().view(len(question), g, g)

    def question_attention(self, features: torch.Tensor, question: list[int]) -> torch.Tensor:
        """(words, H, W): the attention of the step that read each question word."""
        return self.question_pass(features, question)[2]

    # ---- one image, one question --------------------------------------------------------------
    @torch.inference_mode()
    def answer(self, image: Image.Image, question: str, choices: Sequence | None = None, *,
               beam_size: int = DEFAULT_BEAM_SIZE, max_len: int | None = None) -> AnswerResult:
        """Answer `question` about a PIL image. Telling: with `choices` the best-scoring one, without
        them a generated answer. Pointing: `choices` are boxes (x, y, width, height)."""
        ids, words, truncated = read_question(self.vocab, question, self.config.max_question_len)
        notices = [f"question truncated to its first {self.config.max_question_len} words"] if truncated else []
        unknown = unknown_words(question, words)
        if unknown:
            listed = ", ".join(f"'{w}'" for w in unknown)
            one = len(unknown) == 1
            notices.append(f"{listed} {'is' if one else 'are'} not in this model's vocabulary: it reads "
                           f"{'it as an unknown word' if one else 'them as unknown words'}")
        pointing = self.config.task == QATask.POINTING
        kind = question_kind(question)
        if self.trained_kinds is not None and kind not in self.trained_kinds and not pointing:
            notices.append(f"this model was not trained on {kind!r} questions: its answer is a guess")
        if isinstance(choices, (str, bytes)):
            raise QuestionError("choices must be a list of candidate answers, not one string (it would be read "
                                "letter by letter)")
        if choices is not None and len(choices) == 0:
            raise QuestionError("choices is empty: give at least one candidate, or None for an open-ended answer")
        if choices is not None and len(choices) > MAX_CHOICES:
            raise QuestionError(f"{len(choices)} choices: at most {MAX_CHOICES} (each is scored on its own copy "
                                "of the image grid)")
        if pointing and not choices:
            raise QuestionError("a pointing model picks one of several boxes: give choices as x,y,width,height")
        for i, c in enumerate(choices if choices and not pointing else []):  # str(None) would read "none"
            if isinstance(c, bool) or not isinstance(c, (str, int, float)):
                raise QuestionError(f"choices[{i}] is {type(c).__name__}, not text or a number")
        was_training = self.training
        self.eval()
        try:
            features = self.encoder.encode_pil([image]).to(next(self.decoder.parameters()).dtype)
            state, memory, attention = self.question_pass(features, ids)  # read once, answered from here
            answer_attention = None
            from_tags = None if pointing else self._tag_answer(features, (state, memory), question, choices)
            if not pointing and not choices and kind == "yes/no" and {"yes", "no"} <= set(self.vocab.index):
                choices = ["yes", "no"]  # a yes/no question gets yes or no, whatever else the decoder would say
            if from_tags is not None:
                text, why = from_tags
                labels = [str(c) for c in choices] if choices else [text]
                scores = [0.0 if label == text else float("-inf") for label in labels]
                notices.append(f"answered from what the encoder's classifier sees ({why})")
                return AnswerResult(text, scores, labels, attention, words, truncated, None, notices, unknown, "tags")
            if pointing:
                boxes = [parse_box(c) for c in choices]
                rgb = image.convert("RGB")
                crops = pooled_crops(self.encoder, rgb, in_decoded_pixels(boxes, image)).unsqueeze(0)
                scores = self.point(features, [ids], crops)[0].tolist()
                labels = [f"{b.x:g},{b.y:g},{b.width:g},{b.height:g}" for b in boxes]
            elif choices:
                labels = [str(c) for c in choices]
                if not all(tokenize(c) for c in labels):
                    notices.append("a choice without words is scored as the empty answer")
                scores = self.score_candidates(features, [ids], [[self.answer_ids(c) for c in labels]])[0].tolist()
            else:
                hyps = self.decode(state, memory, beam_size=beam_size, num_results=min(beam_size, 5),
                                   max_len=self.config.max_len if max_len is None else max_len)[0]
                labels = [" ".join(self.vocab.words[i] for i in h.token_ids) for h in hyps]
                scores = [h.log_prob for h in hyps]
                g = self.encoder.grid_size
                answer_attention = hyps[0].attention.view(len(hyps[0].token_ids), g, g)
            best = max(range(len(scores)), key=scores.__getitem__)
            tied = sum(abs(s - scores[best]) < 1e-6 for s in scores)
            if choices and tied > 1:
                notices.append(f"{tied} choices tie for the best score (to this model they read alike, e.g. as the "
                               f"same unknown words): the first of them, {labels[best]!r}, is given")
            return AnswerResult(labels[best], scores, labels, attention, words, truncated, answer_attention, notices,
                                unknown)
        finally:
            self.train(was_training)


    def _tag_answer(self, features: torch.Tensor, read: tuple[State, Memory], question: str,
                    choices: Sequence | None) -> tuple[str, str] | None:
        """The tags' answer when they give one that is among the choices (if any); `read`: the question read."""
        learned = None
        if question_kind(question) == "what is this" and not choices:
            greedy = self.decode(*read, beam_size=1)[0][0]
            learned = " ".join(self.vocab.words[i] for i in greedy.token_ids)
        found = self.tag_answers(features, [question], [learned])[0]
        if found is None or (choices and found[0] not in [str(c).strip().lower() for c in choices]):
            return None
        return found


def load_answerer(path: str | os.PathLike = DEFAULT_ANSWERER, device: str | torch.device = "cpu", *,
                  pretrained_encoder: bool = True, inference: str = "fast") -> Answerer:
    """Rebuild an answerer from its folder, a run folder (best, else last) or a bundled model's name (by
    default the app's default answerer, so scripts follow it as it improves)."""
    return Answerer.load(path, device, pretrained_encoder=pretrained_encoder, inference=inference)
