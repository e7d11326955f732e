"""The reference point for bench.py: a tutorial-style Show, Attend and Tell decoder, written here
to reproduce the costs of the best-known PyTorch tutorial implementation (not its code):

* the attention re-projects the whole encoder grid `W_a a_i` at every time step;
* training sorts the batch by caption length and shrinks it step by step (`batch_t`), writing
  per-step logits into a (B, T, V) tensor that `pack_padded_sequence` flattens for the loss;
* everything runs in fp32 with `nn.LSTMCell` and the gate / attention matmuls issued separately;
* beam search decodes one image at a time, keeping its hypotheses in Python lists.

Two deliberate differences make it compute exactly the function of our decoder with
`deep_output=False` (so `from_showtell` can copy weights across and tests can compare outputs):
tanh in the attention MLP (the tutorial uses ReLU; same cost) and the paper's scalar gate
beta = sigmoid(f_beta(h)) (the tutorial's gate has one value per channel, which costs more).
Both only make this baseline cheaper or equal, never slower."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class TutorialAttention(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim, bias=False)
        self.full_att = nn.Linear(attention_dim, 1)

    def forward(self, encoder_out: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att1 = self.encoder_att(encoder_out)  # (b, P, A): recomputed at every step, as in the tutorial
        att2 = self.decoder_att(hidden)       # (b, A)
        alpha = self.full_att(torch.tanh(att1 + att2.unsqueeze(1))).squeeze(2).softmax(dim=1)  # (b, P)
        return (encoder_out * alpha.unsqueeze(2)).sum(dim=1), alpha  # (b, D), (b, P)


class TutorialDecoder(nn.Module):
    def __init__(self, vocab_size: int, encoder_dim: int = 2048, embed_dim: int = 512, decoder_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = TutorialAttention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, 1)
        self.fc = nn.Linear(decoder_dim, vocab_size)

    def init_hidden_state(self, encoder_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = encoder_out.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def one_step(self, embedded: torch.Tensor, encoder_out: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        awe, alpha = self.attention(encoder_out, h)
        awe = torch.sigmoid(self.f_beta(h)) * awe
        h, c = self.decode_step(torch.cat([embedded, awe], dim=1), (h, c))
        return h, c, alpha

    def forward(self, encoder_out: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor):
        """encoder_out (B, P, D); captions (B, L) padded; lengths (B,) = words + 2 (<start>, <end>)."""
        lengths, order = lengths.sort(descending=True)
        encoder_out, captions = encoder_out[order], captions[order]
        batch, positions = encoder_out.shape[:2]
        embeddings = self.embedding(captions)
        h, c = self.init_hidden_state(encoder_out)
        decode_lengths = (lengths - 1).tolist()
        steps = max(decode_lengths)
        predictions = torch.zeros(batch, steps, self.vocab_size, device=encoder_out.device)
        alphas = torch.zeros(batch, steps, positions, device=encoder_out.device)
        for t in range(steps):
            batch_t = sum(n > t for n in decode_lengths)  # rows still inside their caption
            h, c, alpha = self.one_step(embeddings[:batch_t, t], encoder_out[:batch_t], h[:batch_t], c[:batch_t])
            predictions[:batch_t, t] = self.fc(self.dropout(h))
            alphas[:batch_t, t] = alpha
        return predictions, captions, decode_lengths, alphas


def tutorial_loss(model: TutorialDecoder, features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor,
                  alpha_c: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over packed targets + the doubly stochastic term; returns (loss, nll)."""
    scores, captions, decode_lengths, alphas = model(features, captions, lengths)
    scores = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
    targets = pack_padded_sequence(captions[:, 1:], decode_lengths, batch_first=True).data
    nll = F.cross_entropy(scores, targets)
    return nll + alpha_c * ((1.0 - alphas.sum(dim=1)) ** 2).mean(), nll


def tutorial_train_step(model: TutorialDecoder, optimizer: torch.optim.Optimizer, features: torch.Tensor,
                        captions: torch.Tensor, lengths: torch.Tensor, grad_clip: float = 5.0) -> float:
    loss, _ = tutorial_loss(model, features, captions, lengths)
    optimizer.zero_grad()
    loss.backward()
    for group in optimizer.param_groups:  # clip each gradient value, as the tutorial does
        for p in group["params"]:
            if p.grad is not None:
                p.grad.clamp_(-grad_clip, grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def tutorial_beam_search(model: TutorialDecoder, features: torch.Tensor, *, start_id: int, end_id: int,
                         beam_size: int = 3, max_len: int = 50) -> tuple[list[int], float]:
    """One image (1, P, D) -> (best word ids without <start>/<end>, its log-probability)."""
    k = beam_size
    encoder_out = features.expand(k, *features.shape[1:])
    prev_words = torch.full((k, 1), start_id, dtype=torch.long, device=features.device)
    seqs = prev_words
    top_scores = torch.zeros(k, 1, device=features.device)
    complete, complete_scores = [], []
    h, c = model.init_hidden_state(encoder_out)
    for step in range(1, max_len + 1):
        embedded = model.embedding(prev_words).squeeze(1)
        h, c, _ = model.one_step(embedded, encoder_out, h, c)
        scores = top_scores.expand(-1, model.vocab_size) + F.log_softmax(model.fc(h), dim=1)
        if step == 1:  # all beams are identical at the first step
            top_scores, top_words = scores[0].topk(k, 0, True, True)
        else:
            top_scores, top_words = scores.view(-1).topk(k, 0, True, True)
        prev_idx, next_words = top_words // model.vocab_size, top_words % model.vocab_size
        seqs = torch.cat([seqs[prev_idx], next_words.unsqueeze(1)], dim=1)
        incomplete = [i for i, w in enumerate(next_words) if w != end_id]
        done = list(set(range(len(next_words))) - set(incomplete))
        if done:
            complete.extend(seqs[done].tolist())
            complete_scores.extend(top_scores[done].tolist())
        k -= len(done)
        if k == 0:
            break
        seqs = seqs[incomplete]
        h, c = h[prev_idx[incomplete]], c[prev_idx[incomplete]]
        encoder_out = encoder_out[prev_idx[incomplete]]
        top_scores = top_scores[incomplete].unsqueeze(1)
        prev_words = next_words[incomplete].unsqueeze(1)
    if not complete:  # cut at max_len (the tutorial would fail here): take the best open beam
        complete, complete_scores = seqs.tolist(), top_scores.squeeze(1).tolist()
    best = max(range(len(complete)), key=complete_scores.__getitem__)
    words = [w for w in complete[best][1:] if w != end_id]
    return words, complete_scores[best]


@torch.no_grad()
def from_showtell(decoder: nn.Module) -> TutorialDecoder:
    """A TutorialDecoder computing the same function as a 1-layer LSTM ShowAttendTellDecoder with a
    gate and a shallow output (`deep_output=False`): the weights are copied across."""
    c = decoder.config
    if c.cell != "lstm" or c.num_layers != 1 or c.deep_output or not c.gate:
        raise ValueError("from_showtell needs cell='lstm', num_layers=1, deep_output=False, gate=True")
    vocab_size, feature_dim = decoder.embedding.num_embeddings, decoder.context_gates.in_features
    base = TutorialDecoder(vocab_size, feature_dim, c.embed_dim, c.hidden_dim, c.attention_dim, c.dropout)
    att = decoder.attention
    base.attention.encoder_att.load_state_dict(att.feature_proj.state_dict())
    base.attention.decoder_att.load_state_dict(att.hidden_proj.state_dict())
    base.attention.full_att.load_state_dict(att.score.state_dict())
    base.embedding.weight.copy_(decoder.embedding.weight)
    base.decode_step.weight_ih.copy_(torch.cat([decoder.embed_gates.weight, decoder.context_gates.weight], 1))
    base.decode_step.bias_ih.copy_(decoder.embed_gates.bias)
    hidden = decoder.rnn.hidden_proj[0]
    base.decode_step.weight_hh.copy_(hidden.weight)
    base.decode_step.bias_hh.copy_(hidden.bias)
    base.init_h.load_state_dict(decoder.init_h.state_dict())
    base.init_c.load_state_dict(decoder.init_c.state_dict())
    base.f_beta.load_state_dict(decoder.gate.state_dict())
    base.fc.load_state_dict(decoder.output.logits.state_dict())
    base.fc.bias[:2] = float("-inf")  # our decoder never predicts <pad> (0) or <start> (1)
    return base.to(decoder.embedding.weight.device)
