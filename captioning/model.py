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
from .decoders import CAPTION
from .encoder_decoder import EncoderDecoder
from .encoder_decoder import resolve_checkpoint as resolve_folder
from .guidance import TAG_FLOOR, TAGS_SHOWN, GuideSettings, Plan, hedge_people, out_of_depth, plan, render
from .lexicon.endings import JOINERS, no_end_pairs, no_end_words
from .limits import beam_width, check_decoding
from .search import GenerationRules, Hypothesis
from .vocab import Vocabulary

BUNDLED_DIR = Path(__file__).parent / "bundled"
DEFAULT_CAPTIONER = "flickr8k"  # what `load_captioner()` and the app load when given no name
SMALL_IMAGE = 64  # pixels on the shorter side: below this the encoder sees mostly upsampling blur
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
    config_type, decoder_task, bundled_dir = ModelConfig, CAPTION, BUNDLED_DIR
    config: ModelConfig
    decoder: ShowAttendTellDecoder  # or another registered kind (`config.decoder`)

    def __init__(self, config: ModelConfig, vocab: Vocabulary, *, pretrained_encoder: bool = True,
                 guide_settings: GuideSettings | None = None):
        super().__init__(config, vocab, pretrained_encoder=pretrained_encoder)
        self.guide_settings = guide_settings or GuideSettings()
        self.length_penalty = 0.0  # beams ranked by log p / length^this unless a call says otherwise

    def configure(self, meta: dict) -> None:
        """Read the tag guidance and the decoding defaults a checkpoint's config.json records (defaults when
        it has none)."""
        if "guidance" in meta:
            self.guide_settings = GuideSettings.from_dict(meta["guidance"])
        penalty = meta.get("decoding", {}).get("length_penalty", 0.0)
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not 0 <= penalty <= 2:
            raise ValueError(f"config.json: decoding.length_penalty must be a number in [0, 2], got {penalty!r}")
        self.length_penalty = float(penalty)

    def save(self, folder: str | Path, extra: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        return super().save(folder, {"guidance": self.guide_settings.to_dict(),
                                     "decoding": {"length_penalty": self.length_penalty}, **(extra or {})}, extra_files)

    @property
    def generation_rules(self) -> GenerationRules:
        """The shared rules, and no caption ends on a word that cannot end one ("the", "of", "holding"),
        nor on a describing word right after an article ("a red")."""
        rules = super().generation_rules
        index = self.vocab.index
        pairs = tuple(sorted((index[b], index[a]) for b, a in no_end_pairs() if a in index and b in index))
        return GenerationRules(rules.never, rules.start_id, rules.end_id,
                               no_end_after=tuple(sorted(index[w] for w in no_end_words() if w in index)),
                               no_end_pairs=pairs, joiners=tuple(index[w] for w in JOINERS if w in index))

    def forward(self, pixels: torch.Tensor, captions: torch.Tensor) -> DecoderOutput:
        """Training from pixels (B, 3, S, S) and padded caption ids (B, T)."""
        return self.decoder(self.encoder(pixels), captions)

    # ---- decoding ------------------------------------------------------------------------
    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], *, beam_size: int | None = None, sample: bool = False,
                temperature: float = 1.0, max_len: int | None = None, length_penalty: float | None = None,
                num_results: int = 1, batch_size: int = 32, seed: int | None = None,
                guide: Guide = None) -> list[CaptionResult]:
        """Caption PIL images of any size and mode. beam_size=1 is greedy (None: DEFAULT_BEAM_SIZE);
        sample=True samples one caption per image (unguided; no beam_size).
        length_penalty: rank beams by log p / length^this (None: the model's own, `self.length_penalty`).
        guide: make the caption say what the encoder's classifier is confident of (`captioning.guidance`):
        None or True at the model's threshold, a number for another threshold, False not at all."""
        if isinstance(images, Image.Image):
            images = [images]
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(f"images[{i}] is {type(image).__name__}, not a PIL image "
                                "(open files with captioning.images.open_image)")
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
        for image, result in zip(images, out, strict=True):
            if min(image.size) < SMALL_IMAGE:
                result.notices.append(f"This image is only {image.size[0]}x{image.size[1]} pixels, too small to "
                                      "say much about: the caption may be wrong.")
        return out

    @torch.inference_mode()
    def caption_features(self, features: torch.Tensor, *, beam_size: int | None = None, sample: bool = False,
                         temperature: float = 1.0, max_len: int | None = None, length_penalty: float | None = None,
                         num_results: int = 1, seed: int | None = None, guide: Guide = None) -> list[CaptionResult]:
        """Caption from encoder grids (B, P, D), e.g. read from a feature cache."""
        beam_size = beam_width(beam_size, sample)
        check_decoding(beam_size=beam_size, max_len=self.config.max_len if max_len is None else max_len,
                       num_results=num_results, temperature=temperature)
        features = features.to(self.device, next(self.decoder.parameters()).dtype)
        length_penalty = self.length_penalty if length_penalty is None else length_penalty
        settings = self.guide_settings
        table, probs = self.tag_table, self.tag_probabilities(features, settings.temperature, settings.count_power)
        tags = table.top_words(probs, TAGS_SHOWN, TAG_FLOOR) if probs is not None else [[] for _ in features]
        plans = self._plans(probs, guide) if probs is not None and not sample else [Plan() for _ in features]
        options = dict(sample=sample, temperature=temperature, max_len=max_len, length_penalty=length_penalty,
                       seed=seed, num_results=max(num_results, min(beam_size, 5)))
        required = [i for i, p in enumerate(plans) if p.guidance.include]
        narrow = min(beam_size, settings.group_beams)
        if required and narrow < beam_size and not sample:  # photos that must say a word: fewer beams per group
            rest = [i for i in range(len(plans)) if i not in set(required)]
            hyps: list = [None] * len(plans)
            for rows, width in ((required, narrow), (rest, beam_size)):
                for row, found in zip(rows, self._decode_rows(features, plans, rows, width, options), strict=True):
                    hyps[row] = found
        else:
            hyps = self._decode_rows(features, plans, list(range(len(plans))), beam_size, options)
        results = []
        for h, image_tags, image_plan in zip(hyps, tags, plans, strict=True):
            result = self._result(h[:num_results] if num_results > 1 else h, image_plan)
            result.tags = image_tags
            notice = out_of_depth(image_tags, self.vocab, table, self.guide_settings) if table else None
            result.notices += [notice] if notice else []
            results.append(result)
        return results

    def _decode_rows(self, features: torch.Tensor, plans: list[Plan], rows: list[int], beam_size: int,
                     options: dict) -> list[list[Hypothesis]]:
        """`decode` for some of the grids, each with its plan's guidance (plain search when none has any)."""
        if not rows:
            return []
        grids = features[rows] if len(rows) < len(features) else features
        chosen = [plans[i] for i in rows]
        guided = any(p.guidance.include or p.guidance.exclude for p in chosen)
        return self.decode(self.decoder.init_state(grids), self.decoder.memory(grids), beam_size=beam_size,
                           guidance=[p.guidance for p in chosen] if guided else None, **options)

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

        def words(h: Hypothesis) -> tuple[list[str], str | None]:
            said, why = hedge_people([self.vocab.words[i] for i in h.token_ids], h.word_log_probs,
                                     image_plan.people_below)
            return render(said, spoken, image_plan.plurals), why

        tokens, unsure_who = words(best)
        attention = best.attention.view(len(tokens), grid, grid)
        alternatives = [(" ".join(words(h)[0]), h.log_prob) for h in hyps]
        notices = [why for ids, why in image_plan.hedges if ids & set(best.token_ids)]
        return CaptionResult(" ".join(tokens), tokens, best.log_prob, attention, alternatives,
                             guided_by=list(image_plan.required), notices=[*notices, *filter(None, [unsure_who])])


def load_captioner(path: str | os.PathLike = DEFAULT_CAPTIONER, device: str | torch.device = "cpu", *,
                   pretrained_encoder: bool = True, inference: str = "fast") -> Captioner:
    """Rebuild any captioner variant from its folder, a run folder or a bundled name (by default the app's
    default captioner, so scripts follow it as it improves); never unpickles anything."""
    return Captioner.load(path, device, pretrained_encoder=pretrained_encoder, inference=inference)


def resolve_checkpoint(path: str | os.PathLike, bundled_dir: Path = BUNDLED_DIR) -> Path:
    """A checkpoint folder, a run folder (its best, else latest checkpoint), or a bundled captioner's name."""
    return resolve_folder(path, bundled_dir)
