"""The captioner users hold: encoder + decoder + vocabulary, with `caption(images)` as its face."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .config import ModelConfig
from .decoder import DecoderOutput, ShowAttendTellDecoder
from .encoder_decoder import EncoderDecoder
from .encoder_decoder import resolve_checkpoint as resolve_folder
from .guidance import TAG_FLOOR, TAGS_SHOWN, GuideSettings, Plan, out_of_depth, plan, render
from .lexicon.endings import no_end_words
from .search import DEFAULT_BEAM_SIZE, GenerationRules, Hypothesis
from .vocab import Vocabulary

BUNDLED_DIR = Path(__file__).parent / "bundled"
DEFAULT_CAPTIONER = "flickr8k"  # what `load_captioner()` and the app load when given no name
FORMAT = "showtell-captioner/1"
Guide = bool | float | None  # None or True: the model's own threshold; False: off; a float: that threshold


@dataclass
class CaptionResult:
    text: str
    tokens: list[str]
    log_prob: float
    attention: torch.Tensor                 # (words, H, W), one map per word in `tokens`
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # other beams: (text, log-prob)
    tags: list[tuple[str, float]] = field(default_factory=list)  # what the encoder's classifier sees, in words
    guided_by: list[str] = field(default_factory=list)  # tag words the caption was required to say
    notices: list[str] = field(default_factory=list)    # plain-words warnings ("the caption may be wrong")


class Captioner(EncoderDecoder):
    format, kind = FORMAT, "captioning"
    config_type, decoder_type, bundled_dir = ModelConfig, ShowAttendTellDecoder, BUNDLED_DIR
    config: ModelConfig
    decoder: ShowAttendTellDecoder

    def __init__(self, config: ModelConfig, vocab: Vocabulary, *, pretrained_encoder: bool = True,
                 guide_settings: GuideSettings | None = None):
        super().__init__(config, vocab, pretrained_encoder=pretrained_encoder)
        self.guide_settings = guide_settings or GuideSettings()

    def configure(self, meta: dict) -> None:
        """Read the tag guidance a checkpoint's config.json records (defaults when it has none)."""
        if "guidance" in meta:
            self.guide_settings = GuideSettings.from_dict(meta["guidance"])

    def save(self, folder: str | Path, extra: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        return super().save(folder, {"guidance": self.guide_settings.to_dict(), **(extra or {})}, extra_files)

    @property
    def generation_rules(self) -> GenerationRules:
        """The shared rules, and no caption ends on a word that cannot end one ("the", "of", "holding")."""
        rules = super().generation_rules
        index = self.vocab.index
        return GenerationRules(rules.never, rules.start_id, rules.end_id,
                               no_end_after=tuple(sorted(index[w] for w in no_end_words() if w in index)))

    def forward(self, pixels: torch.Tensor, captions: torch.Tensor) -> DecoderOutput:
        """Training from pixels (B, 3, S, S) and padded caption ids (B, T)."""
        return self.decoder(self.encoder(pixels), captions)

    # ---- decoding ------------------------------------------------------------------------
    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], *, beam_size: int = DEFAULT_BEAM_SIZE, sample: bool = False,
                temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
                num_results: int = 1, batch_size: int = 32, seed: int | None = None,
                guide: Guide = None) -> list[CaptionResult]:
        """Caption PIL images of any size and mode. beam_size=1 is greedy; sample=True samples (unguided).
        guide: make the caption say what the encoder's classifier is confident of (`captioning.guidance`):
        None or True at the model's threshold, a number for another threshold, False not at all."""
        if isinstance(images, Image.Image):
            images = [images]
        was_training = self.training
        self.eval()
        out: list[CaptionResult] = []
        try:
            for i in range(0, len(images), batch_size):
                features = self.encoder.encode_pil(images[i:i + batch_size])
                out += self.caption_features(features, beam_size=beam_size, sample=sample, temperature=temperature,
                                             max_len=max_len, length_penalty=length_penalty,
                                             num_results=num_results, seed=seed, guide=guide)
        finally:
            self.train(was_training)
        return out

    @torch.inference_mode()
    def caption_features(self, features: torch.Tensor, *, beam_size: int = DEFAULT_BEAM_SIZE, sample: bool = False,
                         temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
                         num_results: int = 1, seed: int | None = None, guide: Guide = None) -> list[CaptionResult]:
        """Caption from encoder grids (B, P, D), e.g. read from a feature cache."""
        if num_results < 1:
            raise ValueError(f"num_results must be >= 1, got {num_results}")
        features = features.to(self.device, next(self.decoder.parameters()).dtype)
        settings = self.guide_settings
        table, probs = self.tag_table, self.tag_probabilities(features, settings.temperature, settings.count_power)
        tags = table.top_words(probs, TAGS_SHOWN, TAG_FLOOR) if probs is not None else [[] for _ in features]
        plans = self._plans(probs, guide) if probs is not None and not sample else [Plan() for _ in features]
        guided = any(p.guidance.include or p.guidance.exclude for p in plans)
        memory, state = self.decoder.memory(features), self.decoder.init_state(features)
        hyps = self.decode(state, memory, beam_size=beam_size, sample=sample, temperature=temperature,
                           max_len=max_len, length_penalty=length_penalty, seed=seed,
                           num_results=max(num_results, min(beam_size, 5)),
                           guidance=[p.guidance for p in plans] if guided else None)
        results = []
        for h, image_tags, image_plan in zip(hyps, tags, plans, strict=True):
            result = self._result(h[:num_results] if num_results > 1 else h, image_plan)
            result.tags = image_tags
            notice = out_of_depth(image_tags, self.vocab, table, self.guide_settings) if table else None
            result.notices = [notice] if notice else []
            results.append(result)
        return results

    def _plans(self, probs: torch.Tensor, guide: Guide) -> list[Plan]:
        if guide is False:
            return [Plan() for _ in probs]
        if isinstance(guide, bool) or guide is None:
            threshold = None
        elif isinstance(guide, (int, float)) and 0 < guide <= 1:
            threshold = float(guide)
        else:
            raise ValueError(f"guide must be True, False, None or a threshold in (0, 1], got {guide!r}")
        return [plan(p, self.tag_table, self.vocab, self.guide_settings, threshold) for p in probs.cpu()]

    def _result(self, hyps: list[Hypothesis], image_plan: Plan) -> CaptionResult:
        best = hyps[0]
        grid = self.encoder.grid_size
        spoken = {self.vocab.words[i]: word for i, word in image_plan.spoken_as.items()}

        def words(h: Hypothesis) -> list[str]:
            return render([self.vocab.words[i] for i in h.token_ids], spoken)

        tokens = words(best)
        attention = best.attention.view(len(tokens), grid, grid)
        alternatives = [(" ".join(words(h)), h.log_prob) for h in hyps]
        return CaptionResult(" ".join(tokens), tokens, best.log_prob, attention, alternatives,
                             guided_by=list(image_plan.required))


def load_captioner(path: str | os.PathLike = DEFAULT_CAPTIONER, device: str | torch.device = "cpu", *,
                   pretrained_encoder: bool = True) -> Captioner:
    """Rebuild any captioner variant from its folder, a run folder or a bundled name (by default the app's
    default captioner, so scripts follow it as it improves); never unpickles anything."""
    return Captioner.load(path, device, pretrained_encoder=pretrained_encoder)


def resolve_checkpoint(path: str | os.PathLike, bundled_dir: Path = BUNDLED_DIR) -> Path:
    """A checkpoint folder, a run folder (its best, else latest checkpoint), or a bundled captioner's name."""
    return resolve_folder(path, bundled_dir)
