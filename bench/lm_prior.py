"""Does a language-model prior from Flickr30k's text help the bundled captioner? (issue 23, item 3)

Trains a word LSTM language model on Flickr30k's captions in the captioner's own vocabulary (the captions of
Flickr8k's val photos left out: about 7,500 Flickr30k photos are Flickr8k photos), then decodes Flickr8k val
from the cached grids with shallow fusion, log p_caption + lambda log p_LM, through the one inference seam,
and scores each lambda (guided beam 3, as by default).

    python bench/lm_prior.py --captions ../shared/data/flickr30k_captions/results_20130124.token \\
        --karpathy data/flickr8k/dataset_flickr8k.json --images data/flickr8k/images \\
        --cache data/f8k_cache_lite2_320 [--lambdas 0 0.1 0.2 0.3] [--epochs 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if __package__:
    from .flickr8k_val import caption_grids, print_table, val_grids, val_records, val_scores
else:  # run as a script: `python bench/lm_prior.py`
    from flickr8k_val import caption_grids, print_table, val_grids, val_records, val_scores
from captioning import load_captioner
from captioning.vocab import Vocabulary, tokenize


class WordLM(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 512):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.logits = nn.Linear(dim, vocab_size)

    def forward(self, tokens: torch.Tensor, state=None):
        out, state = self.lstm(self.embedding(tokens), state)
        return self.logits(out), state


def flickr30k_sentences(path: Path, vocab: Vocabulary, held_out: set[str]) -> list[list[int]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, caption = line.partition("\t")
        if key.split(".")[0] in held_out:
            continue
        rows.append(vocab.encode(" ".join(tokenize(caption))))
    return rows


def train_lm(sentences: list[list[int]], vocab_size: int, epochs: int, batch: int = 128) -> WordLM:
    torch.manual_seed(0)
    lm = WordLM(vocab_size)
    optimizer = torch.optim.Adam(lm.parameters(), lr=2e-3)
    order = list(range(len(sentences)))
    for epoch in range(epochs):
        random.Random(epoch).shuffle(order)
        total, count, start = 0.0, 0, time.perf_counter()
        for i in range(0, len(order), batch):
            rows = [sentences[j][:22] for j in order[i:i + batch]]
            width = max(map(len, rows))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
            logits, _ = lm(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), ids[:, 1:].reshape(-1), ignore_index=0)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(lm.parameters(), 5.0)
            optimizer.step()
            total, count = total + loss.item(), count + 1
        print(f"LM epoch {epoch + 1}: loss {total / count:.3f} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return lm.eval()


def fused_step(decoder_step, lm: WordLM, weight: float, lm_dim: int):
    """The captioner's step with the LM's log p added (weight lambda); the LM's (h, c) ride in the state."""
    def step(tokens, state, memory):
        inner, lm_state = state[:-2], state[-2:]
        log_probs, inner, alpha = decoder_step(tokens, tuple(inner), memory)
        if len(lm_state[0]) != len(tokens):  # not yet made: zeros for every row
            lm_state = (tokens.new_zeros((len(tokens), 1, lm_dim), dtype=torch.float32),) * 2
        logits, (h, c) = lm(tokens.unsqueeze(1), (lm_state[0].transpose(0, 1).contiguous(),
                                                  lm_state[1].transpose(0, 1).contiguous()))
        fused = log_probs + weight * logits[:, 0].float().log_softmax(dim=-1)
        return fused.log_softmax(dim=-1), (*inner, h.transpose(0, 1), c.transpose(0, 1)), alpha
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--captions", required=True)
    p.add_argument("--karpathy", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--cache", required=True, help="feature cache folder of the bundled model's encoder")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = load_captioner()
    val = val_records(args.karpathy, args.images)
    held_out = {Path(r.path).stem.split("_")[0] for r in val}
    sentences = flickr30k_sentences(Path(args.captions), model.vocab, held_out)
    print(f"{len(sentences)} Flickr30k captions ({len(held_out)} Flickr8k val photos' left out)", file=sys.stderr)
    lm = train_lm(sentences, len(model.vocab), args.epochs)
    grids = val_grids(model, val, args.cache)
    init, rows = model.decoder.init_state, []
    for weight in args.lambdas:
        if weight:
            model._step = fused_step(model.decoder.step, lm, weight, lm.lstm.hidden_size)
            model.decoder.init_state = lambda g: (*init(g), g.new_zeros(0), g.new_zeros(0))
        else:
            model._step, model.decoder.init_state = None, init
        rows.append({"lambda": weight, **val_scores(val, caption_grids(model, grids))})
        print(rows[-1], file=sys.stderr)
    print_table(["lambda", "BLEU-4", "METEOR", "CIDEr", "bad endings"],
                [[f"{r['lambda']:g}", f"{r['Bleu_4']:.4f}", f"{r.get('METEOR', float('nan')):.4f}",
                  f"{r['CIDEr']:.4f}", str(r["bad_endings"])] for r in rows], rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
