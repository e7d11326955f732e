"""Decoding written once: greedy, temperature sampling and batched beam search.

Every function drives a `step(tokens, state, memory) -> (log_probs, state, alpha)` callable: state
is a tuple of batch-first tensors, one row per hypothesis; memory is whatever the step reads per
image (the decoder's `Memory`), passed through untouched, so search knows nothing about the model.
Memory keeps one row per image even when the state has several rows (beams) per image: rows
i*k .. i*k+k-1 of the state belong to image i, and the step reads memory row i for all of them
(`ShowAttendTellDecoder.step` does), so each beam step reads every image grid once, not k times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_BEAM_SIZE = 3  # what `caption`, `answer` and the commands use unless told otherwise

Step = Callable[[torch.Tensor, tuple, Any], tuple[torch.Tensor, tuple, torch.Tensor]]




@dataclass(frozen=True)
class GenerationRules:
    """What generation never says: the `never` ids (<unk>) anywhere, and <end> right after <start>, so a
    caption or answer has at least one known word. Sampling draws from the distribution these rules
    leave; whatever learns from samples (SCST) scores them under the same one (`masked_logits`)."""

    never: tuple[int, ...]
    start_id: int
    end_id: int

    def mask_(self, scores: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Set the banned entries of (N, V) scores (logits or log-probabilities) to -inf in place, given
        each row's previous token (N,)."""
        scores[:, list(self.never)] = float("-inf")
        scores[previous == self.start_id, self.end_id] = float("-inf")
        return scores

    def masked_logits(self, logits: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """A banned-entries copy of (N, V) logits (autograd flows through the rest): their log_softmax is
        the distribution `sequential_search` samples from."""
        return self.mask_(logits.clone(), previous)


def generation_step(step: Step, rules: GenerationRules) -> Step:
    """`step` as generation uses it: the `rules`' banned words get -inf. Scoring given text uses `step` itself."""

    def generating(tokens: torch.Tensor, state: tuple, memory: Any) -> tuple[torch.Tensor, tuple, torch.Tensor]:
        log_probs, state, alpha = step(tokens, state, memory)
        return rules.mask_(log_probs.clone(), tokens), state, alpha
    return generating


@dataclass
class Hypothesis:
    token_ids: list[int]      # generated words, without <start>/<end>
    log_prob: float           # log p(words, <end> | image), <end> included when finished
    attention: torch.Tensor   # (len(token_ids), P): the alpha that produced each word
    finished: bool            # ended with <end> (False: cut at max_len)
    score: float              # what ranking used (log_prob, or length-normalised)


def _repeat(tensors: tuple, times: int) -> tuple:
    return tuple(t.repeat_interleave(times, dim=0) if t is not None else None for t in tensors)


def _normalised(log_prob: torch.Tensor, length: torch.Tensor, length_penalty: float) -> torch.Tensor:
    """score = log p / length^alpha (alpha = 0: raw log-probability)."""
    if length_penalty == 0:
        return log_prob
    return log_prob / length.clamp_min(1).to(log_prob.dtype) ** length_penalty


@torch.no_grad()
def sequential_search(step: Step, state: tuple, memory: Any, *, start_id: int, end_id: int, max_len: int,
                      temperature: float | None = None, generator: torch.Generator | None = None) -> list[Hypothesis]:
    """Greedy decoding (temperature None) or sampling from softmax(logits / temperature)."""
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batch, device = state[0].shape[0], state[0].device
    tokens = torch.full((batch,), start_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    total = torch.zeros(batch, device=device)
    history, alphas = [], []
    for _ in range(max_len):
        log_probs, state, alpha = step(tokens, state, memory)
        if temperature is None:
            tokens = log_probs.argmax(dim=-1)
        else:
            probs = (log_probs / temperature).softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        picked = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        total += picked.masked_fill(finished, 0.0)
        tokens = tokens.masked_fill(finished, end_id)
        history.append(tokens)
        alphas.append(alpha)
        finished |= tokens == end_id
        if bool(finished.all()):
            break
    ids = torch.stack(history, 1).cpu()
    att = torch.stack(alphas, 1).float().cpu()
    totals = total.cpu()
    out = []
    for b in range(batch):
        row = ids[b].tolist()
        n = row.index(end_id) if end_id in row else len(row)
        lp = float(totals[b])
        out.append(Hypothesis(row[:n], lp, att[b, :n], end_id in row, lp))
    return out


@torch.no_grad()
def beam_search(step: Step, state: tuple, memory: Any, *, start_id: int, end_id: int, pad_id: int, max_len: int,
                beam_size: int = DEFAULT_BEAM_SIZE, length_penalty: float = 0.0,
                num_results: int = 1) -> list[list[Hypothesis]]:
    """Beam search over many images at once; returns the `num_results` best hypotheses per image.

    Finished beams stay in the beam with a frozen score (their only continuation is <pad> at
    cost 0), so all images advance in one tensor program; search stops once every beam of
    every image has ended, since an alive beam's log-probability can only fall.

    Plain beam search can lose the greedy path and end with K beams cut at `max_len`, all worse
    than the greedy caption. One extra lane per image follows the greedy path, so the result is
    never less likely than greedy decoding (for beam_size 1 the beam is the greedy path)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    k, batch, device = beam_size, state[0].shape[0], state[0].device
    lanes = k + 1 if k > 1 else 1  # the beams, then the greedy lane
    state = _repeat(state, lanes)  # memory stays one row per image (see the module docstring)
    tokens = torch.full((batch * lanes,), start_id, dtype=torch.long, device=device)
    scores = torch.full((batch, lanes), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    scores[:, k:] = 0.0
    finished = torch.zeros(batch, lanes, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, lanes, dtype=torch.long, device=device)
    offsets = (torch.arange(batch, device=device) * lanes).unsqueeze(1)
    greedy_parent = torch.full((batch, lanes - k), k, dtype=torch.long, device=device)
    token_hist, parent_hist, alpha_hist = [], [], []
    frozen = None  # what a finished lane may emit: only <pad>, at no cost
    for _ in range(max_len):
        log_probs, new_state, alpha = step(tokens, state, memory)
        log_probs = log_probs.view(batch, lanes, -1)
        if frozen is None:
            frozen = torch.full(log_probs.shape[-1:], float("-inf"), device=device, dtype=log_probs.dtype)
            frozen[pad_id] = 0.0
        log_probs = torch.where(finished.unsqueeze(-1), frozen, log_probs)
        scores, parent, words = _advance(scores, log_probs, k, greedy_parent)
        state = tuple(s.index_select(0, (offsets + parent).view(-1)) for s in new_state)
        was_finished = finished.gather(1, parent)
        finished = was_finished | (words == end_id)
        lengths = lengths.gather(1, parent) + (~was_finished).long()
        token_hist.append(words)
        parent_hist.append(parent)
        alpha_hist.append(alpha.view(batch, lanes, -1).gather(1, parent.unsqueeze(-1).expand(-1, -1, alpha.shape[-1])))
        tokens = words.view(-1)
        if bool(finished.all()):
            break
    seq, att = _backtrack(token_hist, parent_hist, alpha_hist)
    ranked = _normalised(scores, lengths, length_penalty)
    return _best(seq, att, scores, ranked, finished, lengths, num_results)


def _advance(scores: torch.Tensor, log_probs: torch.Tensor, k: int,
             greedy_parent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One beam step: (scores (B, lanes), parent lane (B, lanes), word (B, lanes)) from the lanes' scores
    and next-word log-probabilities (B, lanes, V); the top k of the beams' continuations, then the
    greedy lane's best word."""
    batch, _, vocab = log_probs.shape
    candidates = (scores[:, :k].unsqueeze(-1) + log_probs[:, :k]).view(batch, k * vocab)
    beam_scores, flat = candidates.topk(k, dim=1)  # (B, K), sorted best first
    parent, words = flat // vocab, flat % vocab
    if scores.shape[1] == k:
        return beam_scores, parent, words
    greedy_lp, greedy_words = log_probs[:, k:].max(dim=-1)
    return (torch.cat([beam_scores, scores[:, k:] + greedy_lp], dim=1), torch.cat([parent, greedy_parent], 1),
            torch.cat([words, greedy_words], 1))


def _backtrack(token_hist: list[torch.Tensor], parent_hist: list[torch.Tensor],
               alpha_hist: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk the back-pointers once at the end instead of copying histories every step:
    (B, lanes, steps) words and (B, lanes, steps, P) attention of every lane's path."""
    steps, (batch, lanes) = len(token_hist), token_hist[0].shape
    device = token_hist[0].device
    lane = torch.arange(lanes, device=device).expand(batch, lanes)
    seq = torch.empty(batch, lanes, steps, dtype=torch.long, device=device)
    att = torch.empty(batch, lanes, steps, alpha_hist[0].shape[-1], device=device)
    for t in range(steps - 1, -1, -1):
        seq[:, :, t] = token_hist[t].gather(1, lane)
        att[:, :, t] = alpha_hist[t].gather(1, lane.unsqueeze(-1).expand(-1, -1, att.shape[-1]))
        lane = parent_hist[t].gather(1, lane)
    return seq, att


def _best(seq: torch.Tensor, att: torch.Tensor, scores: torch.Tensor, ranked: torch.Tensor, finished: torch.Tensor,
          lengths: torch.Tensor, num_results: int) -> list[list[Hypothesis]]:
    """The `num_results` best distinct, finite hypotheses of each image, by `ranked`."""
    seq, att, scores, ranked, finished, lengths = (x.cpu() for x in (seq, att, scores, ranked, finished, lengths))
    results = []
    for b in range(seq.shape[0]):
        hyps, seen = [], set()
        for j in ranked[b].argsort(descending=True).tolist():
            n = int(lengths[b, j]) - int(finished[b, j])
            ids = tuple(seq[b, j, :n].tolist())
            if ids in seen or not torch.isfinite(scores[b, j]):
                continue
            seen.add(ids)
            hyps.append(Hypothesis(list(ids), float(scores[b, j]), att[b, j, :n].float(), bool(finished[b, j]),
                                   float(ranked[b, j])))
            if len(hyps) == num_results:
                break
        results.append(hyps)
    return results
