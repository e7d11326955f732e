"""Decoding written once: greedy, temperature sampling and batched beam search.

Every function drives a `step(tokens, state, memory) -> (log_probs, state, alpha)` callable: state
is a tuple of batch-first tensors, one row per hypothesis; memory is whatever the step reads per
image (the decoder's `Memory`), passed through untouched, so search knows nothing about the model.
Memory keeps one row per image even when the state has several rows (beams) per image: rows
i*k .. i*k+k-1 of the state belong to image i, and the step reads memory row i for all of them
(`ShowAttendTellDecoder.step` does), so each beam step reads every image grid once, not k times."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .limits import DEFAULT_BEAM_SIZE  # noqa: F401  (re-exported: search is where callers look)

Step = Callable[[torch.Tensor, tuple, Any], tuple[torch.Tensor, tuple, torch.Tensor]]


@dataclass(frozen=True)
class GenerationRules:
    """What generation never says: the `never` ids (<unk>) anywhere, and <end> right after <start> (so a
    caption or answer has at least one known word) or right after any of the `no_end_after` ids (a caption
    does not stop on "the", "of" or "holding"). Sampling draws from the distribution these rules leave;
    whatever learns from samples (SCST) scores them under the same one (`masked_logits`)."""

    never: tuple[int, ...]
    start_id: int
    end_id: int
    no_end_after: tuple[int, ...] = ()
    no_end_pairs: tuple[tuple[int, int], ...] = ()  # (opener, word) ids: no <end> after "a red"
    joiners: tuple[int, ...] = ()  # ids ("and") that keep a pair's noun phrase open: no <end> after "a red and white"

    def mask_(self, scores: torch.Tensor, previous: torch.Tensor,
              before: torch.Tensor | None = None) -> torch.Tensor:
        """Set the banned entries of (N, V) scores (logits or log-probabilities) to -inf in place, given
        each row's previous token (N,) and the one before it (N,; needed for `no_end_pairs`)."""
        pair = self._is_pair(before, previous) if self.no_end_pairs and before is not None else None
        return self._mask_with(scores, previous, pair)

    def _mask_with(self, scores: torch.Tensor, previous: torch.Tensor, pair: torch.Tensor | None) -> torch.Tensor:
        """`mask_` given whether each row's (before, previous) is a pair (None: no pairs to check)."""
        scores[:, list(self.never)] = float("-inf")
        banned = torch.isin(previous, self._stops.to(previous.device))
        if pair is not None:
            banned |= pair
        scores[banned, self.end_id] = float("-inf")
        return scores

    @functools.cached_property
    def _stops(self) -> torch.Tensor:
        """The ids after which <end> is banned, as a tensor made once per rules object (not per step)."""
        return torch.tensor((self.start_id, *self.no_end_after))

    @functools.cached_property
    def _pairs(self) -> torch.Tensor:
        return torch.tensor(self.no_end_pairs, dtype=torch.long).view(-1, 2)

    @functools.cached_property
    def _pair_keys(self) -> torch.Tensor:
        return (self._pairs[:, 0] << 32) | self._pairs[:, 1]

    def _is_pair(self, before: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return torch.isin((before << 32) | previous, self._pair_keys.to(previous.device))

    @functools.cached_property
    def _openers(self) -> torch.Tensor:
        return self._pairs[:, 0].unique()

    @functools.cached_property
    def _joiners(self) -> torch.Tensor:  # made once per rules object, not per step
        return torch.tensor(self.joiners, dtype=torch.long)

    def next_before(self, before: torch.Tensor, previous: torch.Tensor, pair: torch.Tensor | None = None) -> torch.Tensor:
        """What the next word's ending is judged against: `previous`, except inside a noun phrase a pair left
        open ("a red", "a red and"), where it stays the phrase's opener, so "a red and white" cannot end.
        `pair`: `_is_pair(before, previous)` when the caller already has it."""
        keep = self._is_pair(before, previous) if pair is None else pair
        if self.joiners:
            keep = keep | torch.isin(previous, self._joiners.to(previous.device)) & torch.isin(
                before, self._openers.to(previous.device))
        return torch.where(keep, before, previous)

    def befores(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T) teacher-forced inputs (<start> first) -> (B, T): each position's `before`, as generation
        carries it (`next_before`), for scoring given text under the rules (SCST)."""
        before = torch.full_like(inputs[:, 0], self.start_id)
        out = []
        for t in range(inputs.shape[1]):
            out.append(before)
            before = self.next_before(before, inputs[:, t])
        return torch.stack(out, 1)

    def masked_logits(self, logits: torch.Tensor, previous: torch.Tensor,
                      before: torch.Tensor | None = None) -> torch.Tensor:
        """A banned-entries copy of (N, V) logits (autograd flows through the rest): their log_softmax is
        the distribution `sequential_search` samples from."""
        return self.mask_(logits.clone(), previous, before)

    def initial_state(self, state: tuple) -> tuple:
        """The decoder's start state as `generation_step` carries it: with the token before <start>."""
        if not self.no_end_pairs:
            return state
        return (*state, torch.full((state[0].shape[0],), self.start_id, dtype=torch.long, device=state[0].device))


MAX_CONSTRAINTS = 3  # 2^3 groups of beams: guided search stays a few tensor rows wide


@dataclass(frozen=True)
class Guidance:
    """What one image's text must and must not say, for constrained beam search (Anderson et al. 2017).

    include: word sets, each satisfied by saying any one of its token ids (cat: {cat, cats, kitten});
    the result says one word of every set when the search finds such a text within `max_len`.
    exclude: token ids never said for this image (what the tags rule out, words it may not use unguided)."""

    include: tuple[frozenset[int], ...] = ()
    exclude: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.include) > MAX_CONSTRAINTS:
            raise ValueError(f"at most {MAX_CONSTRAINTS} word sets can be required, got {len(self.include)}")
        if any(not words for words in self.include):
            raise ValueError("a required word set is empty")


def generation_step(step: Step, rules: GenerationRules) -> Step:
    """`step` as generation uses it: the `rules`' banned words get -inf. Scoring given text uses `step` itself.
    With `no_end_pairs` the state ends with each row's token before `tokens` (`rules.initial_state`), so
    beam search reorders it with the rest."""
    if not rules.no_end_pairs:
        def generating(tokens: torch.Tensor, state: tuple, memory: Any) -> tuple[torch.Tensor, tuple, torch.Tensor]:
            log_probs, state, alpha = step(tokens, state, memory)
            return rules.mask_(log_probs.clone(), tokens), state, alpha
        return generating

    def generating_pairs(tokens: torch.Tensor, state: tuple, memory: Any) -> tuple[torch.Tensor, tuple, torch.Tensor]:
        *inner, before = state
        log_probs, inner, alpha = step(tokens, tuple(inner), memory)
        pair = rules._is_pair(before, tokens)  # once a step: for the <end> ban and the carried opener
        return rules._mask_with(log_probs.clone(), tokens, pair), (*inner, rules.next_before(before, tokens, pair)), alpha
    return generating_pairs


@dataclass
class Hypothesis:
    token_ids: list[int]      # generated words, without <start>/<end>
    log_prob: float           # log p(words, <end> | image), <end> included when finished
    attention: torch.Tensor   # (len(token_ids), P): the alpha that produced each word
    finished: bool            # ended with <end> (False: cut at max_len)
    score: float              # what ranking used (log_prob, or length-normalised)
    word_log_probs: list[float] = field(default_factory=list)  # log p of each word given the ones before


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
    history, alphas, picks = [], [], []
    for _ in range(max_len):
        log_probs, state, alpha = step(tokens, state, memory)
        if temperature is None:
            tokens = log_probs.argmax(dim=-1)
        else:
            probs = (log_probs / temperature).softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        picked = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        total += picked.masked_fill(finished, 0.0)
        picks.append(picked)
        tokens = tokens.masked_fill(finished, end_id)
        history.append(tokens)
        alphas.append(alpha)
        finished |= tokens == end_id
        if bool(finished.all()):
            break
    ids = torch.stack(history, 1).cpu()
    att = torch.stack(alphas, 1).float().cpu()
    totals = total.cpu()
    word_scores = torch.stack(picks, 1).float().cpu()
    out = []
    for b in range(batch):
        row = ids[b].tolist()
        n = row.index(end_id) if end_id in row else len(row)
        lp = float(totals[b])
        out.append(Hypothesis(row[:n], lp, att[b, :n], end_id in row, lp, word_scores[b, :n].tolist()))
    return out


class _Guided:
    """Guidance as tensors: the group every image starts in (images with fewer constraints start with the
    others satisfied), which constraint bits each word sets, and the words each image may not say."""

    def __init__(self, guidance: Sequence[Guidance | None], batch: int, device: torch.device):
        rules = [g or Guidance() for g in guidance]
        if len(rules) != batch:
            raise ValueError(f"guidance for {len(rules)} images, but {batch} images to decode")
        self.rules, self.device = rules, device
        count = max((len(g.include) for g in rules), default=0)
        self.groups = 1 << count  # a beam group per subset of satisfied constraints
        self.start_group = torch.tensor([(self.groups - 1) ^ ((1 << len(g.include)) - 1) for g in rules],
                                        device=device)
        self.word_bits: torch.Tensor | None = None  # (B, V) long: bit i set when the word satisfies constraint i
        self.banned: torch.Tensor | None = None     # (B, V) float: -inf on excluded words, else 0

    def for_vocabulary(self, vocab: int) -> _Guided:
        """Build the (B, V) tables once the first step has told the vocabulary size."""
        if self.groups > 1:
            bits = torch.zeros(len(self.rules), vocab, dtype=torch.long)
            for b, g in enumerate(self.rules):
                for i, words in enumerate(g.include):
                    bits[b, [w for w in words if 0 <= w < vocab]] |= 1 << i
            self.word_bits = bits.to(self.device)
        if any(g.exclude for g in self.rules):
            banned = torch.zeros(len(self.rules), vocab)
            for b, g in enumerate(self.rules):
                banned[b, [w for w in g.exclude if 0 <= w < vocab]] = float("-inf")
            self.banned = banned.to(self.device)
        return self


@torch.no_grad()
def beam_search(step: Step, state: tuple, memory: Any, *, start_id: int, end_id: int, pad_id: int, max_len: int,
                beam_size: int = DEFAULT_BEAM_SIZE, length_penalty: float = 0.0,
                num_results: int = 1, guidance: Sequence[Guidance | None] | None = None) -> list[list[Hypothesis]]:
    """Beam search over many images at once; returns the `num_results` best hypotheses per image.

    Finished beams stay in the beam with a frozen score (their only continuation is <pad> at
    cost 0), so all images advance in one tensor program; search stops once every beam of
    every image has ended, since an alive beam's log-probability can only fall.

    Plain beam search can lose the greedy path and end with K beams cut at `max_len`, all worse
    than the greedy caption. One extra lane per image follows the greedy path, so the result is
    never less likely than greedy decoding (for beam_size 1 the beam is the greedy path).

    guidance (one per image, or None): constrained beam search (Anderson et al. 2017). With C word sets
    to include, the beams form 2^C groups, one per subset of sets already said, each keeping its own
    `beam_size` best; a word that satisfies a set moves its continuation to the larger subset's group.
    The result comes from the group that has said every set when it holds a finished text. Without
    constraints this is plain beam search, one group."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    k, batch, device = beam_size, state[0].shape[0], state[0].device
    guided = _Guided(guidance, batch, device) if guidance is not None else None
    groups = guided.groups if guided is not None else 1
    beams = groups * k
    lanes = beams + 1 if k > 1 else beams  # the beams (group by group), then the greedy lane
    state = _repeat(state, lanes)  # memory stays one row per image (see the module docstring)
    tokens = torch.full((batch * lanes,), start_id, dtype=torch.long, device=device)
    scores = torch.full((batch, lanes), float("-inf"), device=device)
    rows = torch.arange(batch, device=device)
    if guided is None:
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
    else:
        scores[rows, guided.start_group * k] = 0.0
    scores[:, beams:] = 0.0
    greedy_group = guided.start_group.clone() if guided is not None else None
    finished = torch.zeros(batch, lanes, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, lanes, dtype=torch.long, device=device)
    offsets = (rows * lanes).unsqueeze(1)
    greedy_parent = torch.full((batch, lanes - beams), beams, dtype=torch.long, device=device)
    token_hist, parent_hist, alpha_hist, score_hist = [], [], [], []
    frozen = None  # what a finished lane may emit: only <pad>, at no cost
    for _ in range(max_len):
        log_probs, new_state, alpha = step(tokens, state, memory)
        log_probs = log_probs.view(batch, lanes, -1)
        if frozen is None and guided is not None:
            guided.for_vocabulary(log_probs.shape[-1])
        if guided is not None and guided.banned is not None:
            log_probs = log_probs + guided.banned.unsqueeze(1)
        if frozen is None:
            frozen = torch.full(log_probs.shape[-1:], float("-inf"), device=device, dtype=log_probs.dtype)
            frozen[pad_id] = 0.0
        log_probs = torch.where(finished.unsqueeze(-1), frozen, log_probs)
        scores, parent, words = _advance(scores, log_probs, k, groups, greedy_parent,
                                         guided.word_bits if guided is not None else None)
        state = tuple(s.index_select(0, (offsets + parent).view(-1)) for s in new_state)
        was_finished = finished.gather(1, parent)
        finished = was_finished | (words == end_id)
        lengths = lengths.gather(1, parent) + (~was_finished).long()
        if greedy_group is not None and lanes > beams and guided.word_bits is not None:
            greedy_group = greedy_group | guided.word_bits[rows, words[:, beams]]
        token_hist.append(words)
        parent_hist.append(parent)
        score_hist.append(scores)
        alpha_hist.append(alpha.view(batch, lanes, -1).gather(1, parent.unsqueeze(-1).expand(-1, -1, alpha.shape[-1])))
        tokens = words.view(-1)
        if bool((finished | torch.isneginf(scores)).all()):  # a dead lane (-inf) can only be refilled by a live one
            break
    seq, att, path_scores = _backtrack(token_hist, parent_hist, alpha_hist, score_hist)
    word_scores = path_scores.diff(dim=2, prepend=torch.zeros_like(path_scores[:, :, :1]))
    ranked = _normalised(scores, lengths, length_penalty)
    satisfied = None
    if guided is not None and groups > 1:
        lane_groups = torch.arange(beams, device=device) // k
        group = torch.cat([lane_groups.expand(batch, beams), greedy_group.unsqueeze(1)], 1) if lanes > beams \
            else lane_groups.expand(batch, beams)
        satisfied = _bit_count(group)
    return _best(seq, att, word_scores, scores, ranked, finished, lengths, num_results, satisfied)


def _bit_count(values: torch.Tensor) -> torch.Tensor:
    count = torch.zeros_like(values)
    for i in range(MAX_CONSTRAINTS):
        count += (values >> i) & 1
    return count


def _advance(scores: torch.Tensor, log_probs: torch.Tensor, k: int, groups: int, greedy_parent: torch.Tensor,
             word_bits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One beam step: (scores (B, lanes), parent lane (B, lanes), word (B, lanes)) from the lanes' scores
    and next-word log-probabilities (B, lanes, V); the top k continuations of each group (a continuation
    joins the group of the constraints its lane had said plus those its word says), then the greedy
    lane's best word."""
    batch, _, vocab = log_probs.shape
    beams = groups * k
    candidates = scores[:, :beams].unsqueeze(-1) + log_probs[:, :beams]  # (B, beams, V)
    if word_bits is None:
        beam_scores, flat = candidates.view(batch, beams * vocab).topk(k, dim=1)  # (B, K), sorted best first
    else:
        lane_group = (torch.arange(beams, device=scores.device) // k).view(1, beams, 1)
        target = (lane_group | word_bits.unsqueeze(1)).view(batch, beams * vocab)
        flat_candidates = candidates.view(batch, beams * vocab)
        picks = [flat_candidates.masked_fill(target != g, float("-inf")).topk(k, dim=1) for g in range(groups)]
        beam_scores, flat = torch.cat([p.values for p in picks], 1), torch.cat([p.indices for p in picks], 1)
    parent, words = flat // vocab, flat % vocab
    if scores.shape[1] == beams:
        return beam_scores, parent, words
    greedy_lp, greedy_words = log_probs[:, beams:].max(dim=-1)
    return (torch.cat([beam_scores, scores[:, beams:] + greedy_lp], dim=1), torch.cat([parent, greedy_parent], 1),
            torch.cat([words, greedy_words], 1))


def _backtrack(token_hist: list[torch.Tensor], parent_hist: list[torch.Tensor], alpha_hist: list[torch.Tensor],
               score_hist: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Walk the back-pointers once at the end instead of copying histories every step:
    (B, lanes, steps) words, (B, lanes, steps, P) attention and (B, lanes, steps) running log p of every
    lane's path."""
    steps, (batch, lanes) = len(token_hist), token_hist[0].shape
    device = token_hist[0].device
    lane = torch.arange(lanes, device=device).expand(batch, lanes)
    seq = torch.empty(batch, lanes, steps, dtype=torch.long, device=device)
    att = torch.empty(batch, lanes, steps, alpha_hist[0].shape[-1], device=device)
    running = torch.empty(batch, lanes, steps, dtype=score_hist[0].dtype, device=device)
    for t in range(steps - 1, -1, -1):
        seq[:, :, t] = token_hist[t].gather(1, lane)
        running[:, :, t] = score_hist[t].gather(1, lane)
        att[:, :, t] = alpha_hist[t].gather(1, lane.unsqueeze(-1).expand(-1, -1, att.shape[-1]))
        lane = parent_hist[t].gather(1, lane)
    return seq, att, running


def _best(seq: torch.Tensor, att: torch.Tensor, word_scores: torch.Tensor, scores: torch.Tensor, ranked: torch.Tensor,
          finished: torch.Tensor, lengths: torch.Tensor, num_results: int,
          satisfied: torch.Tensor | None = None) -> list[list[Hypothesis]]:
    """The `num_results` best distinct, finite hypotheses of each image, by `ranked`; with constraints
    (`satisfied`: how many word sets each lane has said), finished texts first (one cut at `max_len` can
    end anywhere), and among them those that said the most."""
    seq, att, word_scores, scores, ranked, finished, lengths = (x.cpu() for x in (seq, att, word_scores, scores,
                                                                                ranked, finished, lengths))
    satisfied = satisfied.cpu() if satisfied is not None else None
    results = []
    for b in range(seq.shape[0]):
        order = ranked[b].argsort(descending=True).tolist()
        if satisfied is not None:
            order.sort(key=lambda j: (not bool(finished[b, j]), -int(satisfied[b, j])))  # stable: ranked within
        hyps, seen = [], set()
        for j in order:
            n = int(lengths[b, j]) - int(finished[b, j])
            ids = tuple(seq[b, j, :n].tolist())
            if ids in seen or not torch.isfinite(scores[b, j]):
                continue
            seen.add(ids)
            hyps.append(Hypothesis(list(ids), float(scores[b, j]), att[b, j, :n].float(), bool(finished[b, j]),
                                   float(ranked[b, j]), word_scores[b, j, :n].tolist()))
            if len(hyps) == num_results:
                break
        results.append(hyps)
    return results
