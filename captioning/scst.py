"""Self-critical sequence training (Rennie et al. 2017, as in ruotianluo/self-critical.pytorch):
fine-tune a cross-entropy captioner with REINFORCE on the CIDEr-D of its own sampled captions.

Per image, K captions w^s are sampled (multinomial, temperature T: 1 by default) and rewarded
r(w^s) = CIDEr-D against the image's references (document frequencies of the training split) [+ lambda BLEU-4]
[+ mu METEOR-style score]; the
baseline b is the reward of the greedy caption ("greedy", the paper's test-time inference) or the
mean reward of the other K-1 samples ("mean"). The loss is

    L = -1/(I K) sum_s (r(w^s) - b) * sum_t log p(w^s_t | w^s_<t, I)     (t up to and including <end>)

Sampling runs without autograd through the one decoding entry point (`EncoderDecoder.decode`); the
sampled words are then teacher-forced through the decoder's fast training pass (`decoder(features,
captions, rules, temperature)`, K captions per image sharing its grid) for log-probabilities with gradients, under
the distribution they were drawn from: the model's softmax without the words generation never says
(`GenerationRules`: <unk>, <end> first), renormalised, at the sampling temperature. Scored under the
plain softmax, the baseline's term would no longer average to zero and would flatten every next-word
distribution. Both passes use the network the captions came from: dropout off (the decoder in eval
mode), and for hard attention the test-time attention (`hard_inference`: expectation or argmax), so
SCST is REINFORCE over words only, with deterministic attention."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .cider import CiderD
from .data.records import ImageRecord
from .meteor_proxy import meteor_proxy
from .model import Captioner
from .search import Hypothesis
from .training import Dist, Hooks, TrainerState, Validation, epoch_batches

DF_FILE = "scst_df.json"  # RUN/scst_df.json: the training split's CIDEr-D document frequencies


@dataclass
class ScstSettings:
    samples: int = 5              # K captions sampled per image
    baseline: str = "greedy"      # greedy | mean
    bleu_weight: float = 0.0      # reward = CIDEr-D + bleu_weight * BLEU-4
    per_word: bool = False        # advantage x mean word log-prob of a sample instead of the sum
    temperature: float = 1.0      # the policy: softmax(logits / T); argmax (greedy, beam) is the same for any T
    images_per_batch: int = 16
    max_len: int = 20
    seed: int = 0
    log_every: int = 50


@dataclass
class ScstOutput:
    """What the `Trainer` reads of a step (`loss`, `nll`) and the reward statistics of the batch."""

    loss: torch.Tensor
    nll: torch.Tensor                 # mean -log p per sampled word (with <end>)
    reward: float                     # mean sampled reward
    baseline: float                   # mean baseline
    advantage: float                  # mean |reward - baseline|


def training_cider(run_dir: Path, train: Sequence[ImageRecord], d: Dist) -> CiderD:
    """CIDEr-D with the training references' document frequencies, computed once and kept in
    RUN/scst_df.json (a resumed run reads it back; a missing or damaged file is rebuilt)."""
    path = run_dir / DF_FILE
    if path.is_file():
        try:
            scorer = CiderD.load(path)
            if scorer.num_documents == len(train):
                return scorer
        except (ValueError, KeyError, TypeError):
            pass
    scorer = CiderD.from_references(r.captions for r in train)
    if d.main:
        scorer.save(path)
    return scorer


class CaptionReward:
    """r(caption) = CIDEr-D(caption, refs) [+ bleu_weight * sentence BLEU-4] [+ meteor_weight * the
    METEOR-style score of `meteor_proxy`], one image at a time. CIDEr-D alone rewards the consensus words
    and makes captions short; the METEOR term weighs recall of the references' words."""

    def __init__(self, cider: CiderD, bleu_weight: float = 0.0, meteor_weight: float = 0.0):
        self.cider, self.bleu_weight, self.meteor_weight = cider, bleu_weight, meteor_weight

    def __call__(self, captions: Sequence[str], records: Sequence[ImageRecord]) -> torch.Tensor:
        rewards = [self.cider.score(c, r.captions, key=r.image_id) for c, r in zip(captions, records, strict=True)]
        if self.bleu_weight:
            bleu = sentence_bleu4(captions, [r.captions for r in records])
            rewards = [c + self.bleu_weight * b for c, b in zip(rewards, bleu, strict=True)]
        if self.meteor_weight:
            rewards = [c + self.meteor_weight * meteor_proxy(caption, r.captions)
                       for c, caption, r in zip(rewards, captions, records, strict=True)]
        return torch.tensor(rewards, dtype=torch.float32)


def sentence_bleu4(captions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """pycocoevalcap's per-sentence BLEU-4 (regex tokens), one per caption."""
    from pycocoevalcap.bleu.bleu import Bleu

    from .metrics import regex_tokenized

    ids = list(range(len(captions)))
    gts, res = regex_tokenized(dict(enumerate(references)), dict(enumerate(captions)), ids)
    _, per_sentence = Bleu(4).compute_score(gts, res, verbose=0)
    return [float(b) for b in per_sentence[3]]


def advantages(rewards: torch.Tensor, greedy: torch.Tensor | None, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward - baseline, baseline) per sample; rewards (I * K,) image-major, greedy (I,) or None (mean
    of the image's other K - 1 samples)."""
    per_image = rewards.view(-1, samples)
    if greedy is not None:
        baseline = greedy.view(-1, 1).expand_as(per_image)
    else:
        baseline = (per_image.sum(dim=1, keepdim=True) - per_image) / (samples - 1)
    return (per_image - baseline).reshape(-1), baseline.reshape(-1)


def caption_tensor(hypotheses: Sequence[Hypothesis], start_id: int, end_id: int) -> torch.Tensor:
    """(N, T + 1) <start> w_1 .. w_n <end> <pad>...: sampled words as teacher-forcing input and targets
    (a caption cut at max_len has no <end>; padding is 0)."""
    rows = [[start_id, *h.token_ids, *([end_id] if h.finished else [])] for h in hypotheses]
    width = max(map(len, rows))
    return torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)


class SelfCriticalHooks(Hooks):
    """The SCST step over `base`'s schedule, validation and checkpoints (`CaptionHooks`): batches are
    images (`images_per_batch` of them), each sampled K times."""

    def __init__(self, base: Hooks, model: Captioner, net: torch.nn.Module, records: Sequence[ImageRecord],
                 features, reward: Callable, settings: ScstSettings, device: torch.device, d: Dist):
        self.base, self.model, self.net, self.records, self.features = base, model, net, records, features
        self.reward, self.settings, self.device, self.d = reward, settings, device, d
        self.trainer = None  # set by `attach`: its TensorBoard writer and step counter
        self.sums = dict.fromkeys(("reward", "baseline", "advantage"), 0.0)
        self.count = 0

    def attach(self, trainer) -> None:
        self.trainer = trainer

    def start_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        self.base.start_epoch(epoch, optimizer)
        self.sums = dict.fromkeys(self.sums, 0.0)
        self.count = 0

    def batches(self, epoch: int, done: int) -> list[list[ImageRecord]]:
        s = self.settings
        order = epoch_batches(len(self.records), s.images_per_batch, epoch, s.seed, self.d)[done:]
        return [[self.records[i] for i in batch] for batch in order]

    @torch.no_grad()
    def sample(self, features: torch.Tensor) -> tuple[list[Hypothesis], list[Hypothesis] | None]:
        """K sampled captions per image (image-major) and, for the greedy baseline, the greedy captions."""
        decoder, k, max_len = self.model.decoder, self.settings.samples, self.settings.max_len
        # The policy that samples is the one that learns: no dropout (and test-time hard attention); decoding's
        # weight copies follow the optimizer's steps by themselves (`ops.DerivedTensors`).
        decoder.eval()
        memory, state = decoder.memory(features), decoder.init_state(features)
        repeated = tuple(s.repeat_interleave(k, 0) for s in state)  # memory stays one row per image
        sampled = self.model.decode(repeated, memory, sample=True, temperature=self.settings.temperature,
                                   max_len=max_len)
        greedy = self.model.decode(state, memory, beam_size=1, max_len=max_len) \
            if self.settings.baseline == "greedy" else None
        return [h[0] for h in sampled], [h[0] for h in greedy] if greedy is not None else None

    def step(self, batch: list[ImageRecord]) -> ScstOutput:
        k, vocab = self.settings.samples, self.model.vocab
        features = torch.stack([self.features[r.image_id] for r in batch]).to(self.device).float()  # (I, P, D)
        sampled, greedy = self.sample(features)
        per_sample = [r for r in batch for _ in range(k)]
        rewards = self.reward([" ".join(vocab.decode(h.token_ids)) for h in sampled], per_sample)
        greedy_rewards = self.reward([" ".join(vocab.decode(h.token_ids)) for h in greedy], batch) \
            if greedy is not None else None
        advantage, baseline = advantages(rewards, greedy_rewards, k)
        captions = caption_tensor(sampled, vocab.start_id, vocab.end_id).to(self.device)
        # teacher-forced, K captions per image sharing its grid, under the sampling policy (module docstring)
        out = self.net(features, captions, self.model.generation_rules, self.settings.temperature)
        n_words = (captions[:, 1:] != 0).sum()
        log_probs = out.sequence_log_probs
        if self.settings.per_word:  # each sample's words share its advantage: length-neutral
            log_probs = log_probs / (captions[:, 1:] != 0).sum(dim=1).clamp_min(1)
        loss = -(advantage.to(self.device) * log_probs).mean()
        nll = -out.sequence_log_probs.detach().sum() / n_words
        result = ScstOutput(loss, nll, float(rewards.mean()), float(baseline.mean()), float(advantage.abs().mean()))
        self.record(result)
        return result

    def record(self, out: ScstOutput) -> None:
        """Epoch sums and, every log_every steps, TensorBoard scalars scst/{reward, baseline, advantage}."""
        values = {"reward": out.reward, "baseline": out.baseline, "advantage": out.advantage}
        for name, value in values.items():
            self.sums[name] += value
        self.count += 1
        writer = getattr(self.trainer, "writer", None)
        if writer is None:
            return
        step = self.trainer.state.step + 1  # the step this batch is about to take
        if step % self.settings.log_every == 0 or self.count == 1:
            for name, value in values.items():
                writer.add_scalar(f"scst/{name}", value, step)

    def validate(self) -> Validation:
        validation = self.base.validate()
        means = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        validation.scalars.update({f"scst/epoch_{name}": v for name, v in means.items()})
        validation.history.update({f"train_{name}": round(v, 4) for name, v in means.items()})
        validation.summary += f"  train reward {means['reward']:.3f} (baseline {means['baseline']:.3f})"
        return validation

    def save(self, folder: Path, state: TrainerState, validation: Validation | None,
             extra_files: dict[str, bytes] | None) -> None:
        self.base.save(folder, state, validation, extra_files)
