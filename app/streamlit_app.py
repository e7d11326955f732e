"""showtell in the browser: upload images, read their captions and answers, see where the model looked.

Run `streamlit run app/streamlit_app.py` (or `make app`). The page only loads models through the public
APIs (`captioning.load_captioner`, `vqa.load_answerer`) and draws what they return."""

from __future__ import annotations

from captioning.engine.runtime import passive_openmp

passive_openmp()  # before torch loads OpenMP: idle threads sleep, so concurrent sessions keep their cores

import os  # noqa: E402
import re  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

from app import backend as be  # noqa: E402
from app import overlay  # noqa: E402
from captioning import CheckpointError, WeightsUnavailableError, load_captioner  # noqa: E402
from captioning.search import DEFAULT_BEAM_SIZE  # noqa: E402

# Streamlit serves each session on its own thread: one intra-op thread per request keeps
# concurrent sessions from stalling each other (measured: 30 ms vs 280 ms median on a busy 2-core CPU).
torch.set_num_threads(int(os.environ.get("SHOWTELL_THREADS", "1")))

CUSTOM = "checkpoint folder…"
LOAD_ERRORS = (CheckpointError, WeightsUnavailableError, ImportError, OSError, ValueError, RuntimeError, KeyError)
ANSWER_ERRORS = (ValueError, RuntimeError, KeyError, IndexError, TypeError)
METHODS = {"beam": "beam search", "greedy": "greedy", "sample": "sampling"}


def md(text: str) -> str:
    """Text shown literally inside Markdown (file names and captions may hold * _ # ...)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|>~<$])", r"\\\1", text)


# ---- cached work: models once per process, images and results once per content ---------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def get_captioner(folder: str, stamp: float):
    return load_captioner(folder, device=be.app_device())


@st.cache_resource(show_spinner=False, max_entries=4)
def get_answerer(source: str, stamp: float):
    load_answerer, why = be.answerer_loader()
    if load_answerer is None:
        raise ImportError(why)
    return load_answerer(source, device=be.app_device())


@st.cache_resource(show_spinner=False, max_entries=64)
def decode(name: str, key: str, _data: bytes) -> be.LoadedImage:
    return be.load_image_bytes(name, _data, key)


@st.cache_resource(show_spinner=False, max_entries=256)
def caption(model_key: tuple, image_key: str, decoding: be.Decoding, _model, _image):
    (result,), ms = be.timed(lambda: _model.caption([_image], **decoding.kwargs()))
    return result, ms


@st.cache_resource(show_spinner=False, max_entries=256)
def answer(model_key: tuple, image_key: str, question: str, choices: tuple[str, ...] | None, _model, _image):
    return be.timed(lambda: _model.answer(_image, question, choices=list(choices) if choices else None))


# ---- sidebar -------------------------------------------------------------------------------------------
def model_picker(label: str, bundled: list[str], env_name: str, placeholder: str, key: str) -> str | None:
    env = be.env_source(env_name)
    options = [*bundled, CUSTOM]
    index = bundled.index(env) if env in bundled else len(bundled) if env or not bundled else 0
    choice = st.selectbox(label, options, index=index, key=f"{key}_choice",
                          format_func=lambda o: o if o == CUSTOM else f"{o} (bundled)")
    if choice != CUSTOM:
        if be.model_about(choice):
            st.caption(f"Knows: {be.model_about(choice)}.")
        return choice
    path = st.text_input("Checkpoint folder", value=env, placeholder=placeholder, key=f"{key}_path",
                         help=f"A checkpoint folder or a run folder (its best/ checkpoint is used). "
                              f"Setting {env_name} before starting the app fills this in.")
    return path.strip() or None


def decoding_settings() -> be.Decoding:
    method = st.radio("Decoding", list(METHODS), format_func=METHODS.get, horizontal=True, key="method")
    if method == "sample":
        temperature = st.slider("Temperature", 0.1, 2.0, 1.0, 0.1, key="temperature",
                                help="Below 1 sharpens the word distribution, above 1 flattens it.")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="Same seed, same sample.")
        return be.Decoding("sample", temperature=float(temperature), seed=int(seed))
    beam_size = st.slider("Beam size", 2, 10, DEFAULT_BEAM_SIZE, key="beam_size") if method == "beam" else 1
    guide = st.toggle("Name what the encoder sees", value=True, key="guide",
                      help="The encoder's ImageNet classifier tags the photo; when it is confident (a cat, a "
                           "coffee, a rocket), the caption must name it and may not name a rival animal.")
    return be.Decoding(method, beam_size=beam_size, guide=guide)


def load_captioning(source: str | None, slot) -> tuple[object | None, tuple | None]:
    if source is None:
        if not be.bundled_captioners():
            st.warning(f"No bundled captioning model found (captioning/bundled/shapes-soft); train one with "
                       f"`{be.TRAIN_SHAPES}` and enter its run folder under **{CUSTOM}** in the sidebar, "
                       f"or start the app with `{be.CAPTION_ENV}=path/to/run`.")
        else:
            st.warning(f"Enter a captioning checkpoint folder in the sidebar under **{CUSTOM}**.")
        return None, None
    try:
        key = be.caption_checkpoint(source)
        with st.spinner(f"Loading captioning model {source}…"):
            model = get_captioner(*key)
    except LOAD_ERRORS as exc:
        st.error(f"Could not load captioning model {source}: {exc}")
        return None, None
    slot.caption(be.describe_captioner(model))
    return model, key


def load_vqa(source: str | None, slot) -> tuple[object | None, tuple | None, str, str]:
    """(answerer, cache key, why there is none, the same in a few words)."""
    loader, why = be.answerer_loader()
    if loader is None:
        return None, None, ("Question answering is not available in this installation yet (the `vqa` package "
                            f"could not be imported: {why})."), "Not available: the `vqa` package did not import."
    if source is None:
        return None, None, ("No VQA model found (vqa/bundled/easy-vqa-shapes); train one with "
                            f"`{be.TRAIN_VQA}` and enter its folder in the sidebar, or start the app with "
                            f"`{be.VQA_ENV}=path/to/model`."), "No model loaded."
    try:
        key = be.vqa_checkpoint(source)
        with st.spinner(f"Loading question-answering model {source}…"):
            model = get_answerer(*key)
    except LOAD_ERRORS as exc:
        return None, None, f"Could not load VQA model {source}: {exc}", "The model did not load."
    slot.caption(be.parameter_count(model))
    return model, key, "", ""


# ---- the page ----------------------------------------------------------------------------------------
def about() -> None:
    st.caption("Default models: `flickr8k` captions real photos of everyday scenes (people, dogs, children "
               "playing, sports, streets, beaches) and names what its encoder's ImageNet classifier is sure of; "
               "`flickr8k-qa` answers questions about them. The `shapes` models know synthetic shapes only.")
    with st.expander("What each model knows"):
        st.markdown(f"""
| model | trained on | knows |
| --- | --- | --- |
| `flickr8k` (default) | Flickr8k: 6,000 photos, five human captions each | {be.model_about("flickr8k")} |
| `flickr8k-hard` | the same, hard (stochastic) attention | {be.model_about("flickr8k-hard")} |
| `shapes-soft`, `shapes-hard` | synthetic scenes of one to three coloured shapes | {be.model_about("shapes-soft")} |
| `flickr8k-qa` | questions generated from Flickr8k's captions | {be.model_about("flickr8k-qa")} |
| `easy-vqa-shapes` | easy-VQA and shapes questions | {be.model_about("easy-vqa-shapes")} |

Flickr8k is small (6,000 training photos): objects it rarely saw (a rocket, a coffee cup) come out as the
nearest everyday thing it knows, and it saw only about 15 cats. For more kinds of scene, train on COCO (Karpathy split):

```bash
{be.TRAIN_COCO}
```

then pick **{CUSTOM}** in the sidebar and enter `runs/coco_soft`, or start the app pointing at it:

```bash
{be.CAPTION_ENV}=runs/coco_soft make app      # {be.VQA_ENV} does the same for question answering
```

Models run on the CPU, are loaded once and kept in memory; results are cached per image and setting.
Example photos: scikit-image's sample data (public domain or CC0; sources in `app/examples/SOURCES.md`).
""")


def choose_images(caption_source: str | None) -> list[be.LoadedImage]:
    left, right = st.columns([3, 2], gap="medium")
    uploads = left.file_uploader("Upload images", type=be.UPLOAD_TYPES, accept_multiple_files=True, key="uploads",
                                 help="JPEG, PNG, WebP, GIF (first frame) or BMP. Drop several at once.")
    examples = {p.name: p for p in be.examples_for(caption_source)}  # what the selected captioner knows
    world = be.model_world(caption_source)
    picked = right.multiselect("…or try bundled examples", list(examples), key=f"examples-{world}" if world else "examples",
                               format_func=lambda n: be.example_label(examples[n]))
    items = []
    for upload in uploads or []:
        data = upload.getvalue()
        items.append(decode(upload.name, be.digest(data), data))
    for name in picked:
        data = examples[name].read_bytes()
        items.append(decode(name, be.digest(data), data))
    return items


def caption_panel(slot: str, item: be.LoadedImage, model, model_key: tuple | None, decoding: be.Decoding) -> None:
    if model is None:
        st.info("No captioning model is loaded; see the notice at the top of the page.")
        return
    with st.spinner("Captioning…"):
        result, ms = caption(model_key, item.digest, decoding, model, item.image)
    words = result.tokens
    picture, heat, text = st.columns([1, 1, 1.5], gap="medium")
    with text:
        st.subheader(md(result.text) if words else "(empty caption)", anchor=False)
        st.caption(f"captioned in {be.ms_text(ms)} · {decoding.label()} · log p = {result.log_prob:.2f}")
        for notice in result.notices:
            st.warning(notice, icon="⚠️")
        if result.tags:
            guided = f" · guided to say “{', '.join(result.guided_by)}”" if result.guided_by else ""
            st.caption(f"The encoder sees: {md(be.tags_text(result.tags))}{guided}")
        elif model.tag_table is None:
            st.caption("No tags: this model's encoder has no classifier.")
        chosen = 0
        if words:
            chosen = st.pills(
                "Where the model looked for the word", list(range(len(words))), format_func=lambda i: words[i],
                default=overlay.first_shown(words, result.attention), required=True, wrap=True,
                key=f"word-{slot}-{be.digest(result.text.encode())[:8]}")
        if len(result.alternatives) > 1:
            st.markdown("**Beam alternatives**")
            table = pd.DataFrame([(f"{lp:.2f}", text) for text, lp in result.alternatives],
                                 columns=["log\u00a0p", "caption"])  # a no-break space: the header never wraps
            st.table(table, hide_index=True, border="horizontal")
    with picture:
        st.image(item.preview, caption="input", width="stretch", alt=f"{item.name}")
    if not words:
        return
    with heat:
        st.image(overlay.heatmap(item.preview, result.attention[chosen]), width="stretch",
                 caption=f"attention for “{words[chosen]}” (word {chosen + 1})",
                 alt=f"attention map for the word {words[chosen]}")
    st.image(overlay.strip(item.preview, words, result.attention, with_image=False),
             width="content",
             caption="Where the model looked, word by word (bright = high attention)",
             alt="attention strip: one map per word")


def scores_table(result) -> pd.DataFrame | None:
    """What the answerer scored (`result.choices`: the given choices, or its beams' answers) and the scores,
    best first (log p when every score is one)."""
    if not result.choices:
        return None
    table = pd.DataFrame(list(zip(result.choices, result.scores, strict=True)), columns=["answer", "score"])
    table = table.sort_values("score", ascending=False)
    if bool((table["score"] <= 0).all()):
        table = table.rename(columns={"score": "log p"})
    return table.head(10)


def attention_views(item: be.LoadedImage, result, question: str, heat) -> None:
    """The question's attention (whole question in `heat`, per word below) and, for a generated answer,
    the attention of each answer word."""
    if result.attention is not None and len(result.attention):
        maps = overlay.as_maps(result.attention)
        with heat:
            st.image(overlay.heatmap(item.preview, maps.mean(axis=0)), width="stretch",
                     caption="attention while reading the question (the mean of one map per word, below)",
                     alt="question attention map")
        if len(maps) > 1:
            labels = be.question_labels(result, question, len(maps))
            st.image(overlay.strip(item.preview, labels, maps, with_image=False),
                     width="content", caption="attention while reading each question word",
                     alt="question attention strip")
    if result.answer_attention is not None and len(result.answer_attention):
        maps = overlay.as_maps(result.answer_attention)
        words = str(result.text).split()
        labels = words if len(words) == len(maps) else [f"word {i + 1}" for i in range(len(maps))]
        st.image(overlay.strip(item.preview, labels, maps, with_image=False),
                 width="content", caption="attention while saying each answer word", alt="answer attention strip")


def question_panel(slot: str, item: be.LoadedImage, model, model_key: tuple | None, notice: str,
                   placeholder: str) -> None:
    if model is None:
        st.info(notice)
        return
    ask, heat = st.columns([1.5, 1], gap="medium")
    with ask:
        question = st.text_input("Question", key=f"q-{slot}", placeholder=placeholder)
        choices_text = st.text_area("Candidate answers (optional)", key=f"c-{slot}", height=68,
                                    placeholder="red, green, blue (comma or newline separated)")
        if not question.strip():
            st.caption("Type a question and press Enter.")
            return
        choices = be.parse_choices(choices_text)
        try:
            with st.spinner("Answering…"):
                result, ms = answer(model_key, item.digest, question.strip(), tuple(choices) if choices else None,
                                    model, item.image)
        except ANSWER_ERRORS as exc:
            st.error(f"Could not answer: {exc}")
            return
        st.subheader(md(str(result.text)), anchor=False)
        st.caption(f"answered in {be.ms_text(ms)}" + ("" if choices else " · open-ended"))
        for line in result.notices:
            st.caption(f"note: {line}")
        table = scores_table(result)
        if table is not None:
            if not choices:
                st.markdown("**Other answers**")
            score = table.columns[1]
            bounded = bool(((table[score] >= 0) & (table[score] <= 1)).all())
            column = (st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0) if bounded
                      else st.column_config.NumberColumn(format="%.3f"))
            st.dataframe(table, hide_index=True, column_config={score: column})
    attention_views(item, result, question, heat)


def image_card(index: int, item: be.LoadedImage, captioner, caption_key, decoding, answerer, vqa_key,
               vqa_notice: str, placeholder: str) -> None:
    slot = f"{index}-{item.digest[:10]}"
    with st.container(border=True):
        st.markdown(f"**{md(item.name)}** &nbsp; <small>{item.size_text}</small>", unsafe_allow_html=True)
        caption_tab, question_tab = st.tabs(["Caption", "Ask a question"])
        with caption_tab:
            caption_panel(slot, item, captioner, caption_key, decoding)
        with question_tab:
            question_panel(slot, item, answerer, vqa_key, vqa_notice, placeholder)


def main() -> None:
    st.set_page_config(page_title="showtell: where the model looks", page_icon="🔍", layout="wide")
    with st.sidebar:
        st.header("Models")
        caption_source = model_picker("Captioning model", be.bundled_captioners(), be.CAPTION_ENV,
                                      "runs/coco_soft", "caption")
        caption_info = st.empty()
        decoding = decoding_settings()
        st.divider()
        vqa_source = None
        if be.answerer_loader()[0] is not None:
            vqa_source = model_picker("Question-answering model", be.bundled_answerers(), be.VQA_ENV,
                                      "runs/easy_vqa", "vqa")
        else:
            st.markdown("**Question-answering model**")
        vqa_info = st.empty()
        st.divider()
        st.caption("CPU inference. Models load once and stay cached.")

    st.title("showtell")
    st.markdown("Caption images, ask questions about them, and see **where the model looked** for every word: "
                "*Show, Attend and Tell* (Xu et al. 2015) with Visual7W-style question answering.")
    about()
    captioner, caption_key = load_captioning(caption_source, caption_info)
    answerer, vqa_key, vqa_notice, vqa_short = load_vqa(vqa_source, vqa_info)
    if answerer is None:
        vqa_info.caption(vqa_short)

    items = choose_images(caption_source)
    placeholder = be.question_placeholder(vqa_source)
    for item in items:
        if item.error:
            st.error(item.error)
    good = [item for item in items if item.image is not None]
    if not items:  # a bad upload already has its error line: no "to begin" prompt under it
        st.info("Upload images (drag and drop works) or pick a bundled example to begin.")
    for index, item in enumerate(good):
        image_card(index, item, captioner, caption_key, decoding, answerer, vqa_key, vqa_notice, placeholder)


main()
