"""ipywidgets browsers: ranked test predictions (04) and the captioning demo (05); both also work headless.

Every callback is a method that reads the controls and calls a plain function (`rank_rows`, `caption_all`), so tests
and papermill drive them without a browser; results land in widget values and attributes, not in printed output.
How they look in a real browser (aspect ratio, clipping, stale panels) is checked by tests/browser/.
Over 300 lines on purpose: both widgets share the image panel, the PNG helpers and the control styling here.
"""
from __future__ import annotations

import html
import io
import math
import os
from pathlib import Path

from ..config import GenerationConfig
from ..runtime.decoding import KINDS, MAX_CONSENSUS_SAMPLES
from ..runtime.images import BadImageError, to_rgb
from ..errors import require
from ..schema import CIDER, IMAGE, IMAGE_ID, METRIC_KEYS, undecoded

widgets = require("ipywidgets", "blipnb's notebook widgets")

DECODINGS = KINDS  # the demo's rows and buttons: greedy, beam, sampling, consensus (GenerationConfig.as_kind)
ORDERS = ("lowest first", "highest first")
IMAGE_BOX = 256  # on-screen square, in CSS pixels, each image is fitted into (the sample's 64 px ones scale up)
# Without it ipywidgets cuts a description at ~80 px: "temperature" showed as "temperat...".
LABEL = {"description_width": "initial"}


def png_bytes(image, name: str | None = None) -> bytes:
    """Any image `to_rgb` reads, as PNG bytes for an ipywidgets.Image."""
    return _png(to_rgb(image, name))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def fitted_size(size: tuple[int, int], box: int = IMAGE_BOX) -> tuple[int, int]:
    """(width, height) of an image of `size` scaled to fit a box x box square, its aspect ratio kept."""
    width, height = size
    scale = box / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class ImagePanel(widgets.Box):
    """A fixed IMAGE_BOX square showing one image at its own aspect ratio, or a message instead of a broken icon.

    The image gets an explicit CSS width and height (fitted_size) and may neither grow nor shrink: in a flex row a
    bare <img> is stretched to the height of the text beside it, and squeezed when the captions get long.
    """

    def __init__(self):
        self.image = widgets.Image(format="png", layout=widgets.Layout(flex="0 0 auto", object_fit="contain"))
        self.message = widgets.HTML(layout=widgets.Layout(display="none", padding="8px"))
        super().__init__([self.image, self.message], layout=widgets.Layout(
            width=f"{IMAGE_BOX}px", height=f"{IMAGE_BOX}px", flex="0 0 auto", align_items="center",
            justify_content="center"))

    def show(self, image, name: str | None = None) -> None:
        """Draw `image` (anything to_rgb reads); raises BadImageError, leaving the panel as it was, if unreadable."""
        img = to_rgb(image, name)
        png, (width, height) = _png(img), fitted_size(img.size)
        self.image.layout.width, self.image.layout.height = f"{width}px", f"{height}px"
        self.image.value = png
        self.image.layout.display = None
        self.message.layout.display = "none"

    def clear(self, message: str = "") -> None:
        """Show `message` (HTML) in place of the image."""
        self.image.value = b""
        self.image.layout.display = "none"
        self.message.value = message
        self.message.layout.display = None if message else "none"


def unreadable(name: str, error: Exception) -> str:
    """One sentence for a file that is not a readable image; the technical reason shows on hover."""
    return (f"<span style='color:#b00' title='{html.escape(str(error), quote=True)}'>{html.escape(name)} is not "
            f"an image the demo can open: choose a PNG, JPEG, GIF, BMP or WebP file.</span>")


def split_images(split, limit: int | None = None) -> dict[str, object]:
    """{image_id: stored image (path/bytes dict)} of a canonical split, undecoded; the first `limit` images."""

    if limit is not None:
        split = split.select(range(min(limit, len(split))))
    raw = undecoded(split)
    return dict(zip(raw[IMAGE_ID], raw[IMAGE]))


def pick_image(images: dict, image_path: str | None) -> tuple[str, object]:
    """(name, image): the file at `image_path`, or the first of `images` when it is None."""
    if image_path is not None:
        if not Path(image_path).is_file():
            raise FileNotFoundError(f"image_path {image_path!r} is not a file")
        return Path(image_path).name, image_path
    if not images:
        raise ValueError("no test images to show: pass image_path")
    return next(iter(images.items()))


def images_folder(split) -> Path | None:
    """The folder holding a split's image files (their common parent), or None when they are stored as bytes."""
    raw = undecoded(split)[IMAGE]
    paths = [im.get("path") if isinstance(im, dict) else None for im in raw]
    if not paths or any(not p or not os.path.isfile(p) for p in paths):
        return None
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]))


# ---------------------------------------------------------------- prediction browser (04)

def score_keys(rows: list[dict]) -> list[str]:
    """Score keys present in the rows: the known metrics in their usual order, then any others."""
    present = {k for r in rows for k in (r.get("scores") or {})}
    return [k for k in METRIC_KEYS if k in present] + sorted(present - set(METRIC_KEYS))


def rank_rows(rows: list[dict], key: str | None, descending: bool = False, text: str = "") -> list[dict]:
    """Rows whose prediction or a reference contains `text` (any case), sorted by scores[key]; unscored rows last."""
    needle = text.strip().lower()
    kept = [r for r in rows if not needle or needle in r["prediction"].lower()
            or any(needle in ref.lower() for ref in r["references"])]
    if key is None:
        return kept
    scored = [r for r in kept if _score(r, key) is not None]
    scored.sort(key=lambda r: _score(r, key), reverse=descending)  # stable: ties keep file order
    return scored + [r for r in kept if _score(r, key) is None]


def _score(row: dict, key: str) -> float | None:
    value = (row.get("scores") or {}).get(key)
    return None if value is None or math.isnan(value) else float(value)  # NaN sorts nowhere: missing


class PredictionBrowser(widgets.VBox):
    """Test predictions ranked by one score, filtered by a word; a slider steps through the ranking. With a run_dir,
    the references of the image shown can be corrected (notebook.review), recorded in its corrections.jsonl."""

    def __init__(self, rows: list[dict], split=None, run_dir=None, applied: str | None = None):
        self.rows = [dict(r, references=list(r["references"])) for r in rows]  # corrections change these copies
        self._raw = undecoded(split) if split is not None else None  # to_rgb decodes, so a broken file is named
        self._index = {i: n for n, i in enumerate(split[IMAGE_ID])} if split is not None else {}
        keys = score_keys(self.rows)
        self.sort_by = widgets.Dropdown(options=keys or ["(file order)"], description="sort by", style=LABEL,
                                        value=CIDER if CIDER in keys else (keys or ["(file order)"])[0])
        self.order = widgets.ToggleButtons(options=ORDERS, value=ORDERS[0])
        self.filter = widgets.Text(description="filter", placeholder="word in the prediction or references",
                                   continuous_update=False, style=LABEL, layout=widgets.Layout(width="420px"))
        self.rank = widgets.IntSlider(min=0, max=0, description="rank", continuous_update=False, style=LABEL,
                                      layout=widgets.Layout(width="420px"))
        self.panel = ImagePanel()
        self.image = self.panel.image
        self.details = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0", margin="0 0 0 12px"))
        self.shown: list[dict] = []
        for control in (self.sort_by, self.order, self.filter):
            control.observe(lambda _: self.rerank(), "value")
        self.rank.observe(lambda _: self.show(), "value")
        self.editor = None
        if run_dir is not None:
            from .review import ReferenceEditor

            self.editor = ReferenceEditor(run_dir, self.rows, applied, on_change=self._describe)
        super().__init__([widgets.HBox([self.sort_by, self.order]), self.filter, self.rank,
                          widgets.HBox([self.panel, self.details], layout=widgets.Layout(align_items="flex-start")),
                          *([self.editor] if self.editor else [])])
        self.rerank()

    @property
    def sort_key(self) -> str | None:
        return self.sort_by.value if self.sort_by.value in score_keys(self.rows) else None

    @property
    def current(self) -> dict | None:
        """The row on screen, or None when the filter matches nothing."""
        return self.shown[self.rank.value] if self.shown else None

    def rerank(self) -> None:
        """Apply the sort and filter controls, and go back to the first row."""
        self.shown = rank_rows(self.rows, self.sort_key, self.order.value == ORDERS[1], self.filter.value)
        self.rank.value = 0
        self.rank.max = max(len(self.shown) - 1, 0)
        self.rank.disabled = len(self.shown) < 2
        self.show()

    def show(self) -> None:
        """Display the row at the slider's rank."""
        row = self.current
        if self.editor is not None:
            self.editor.show_row(row)
        if row is None:
            self.panel.clear("<i>no match</i>")
            self.details.value = (f"<i>No prediction or reference contains {html.escape(repr(self.filter.value))}"
                                  f": clear the filter or try another word.</i>")
            return
        stored = self._stored_image(row["image_id"])
        try:
            if stored is None:
                self.panel.clear(f"<i>image {html.escape(str(row['image_id']))} is not in the split</i>")
            else:
                self.panel.show(stored, str(row["image_id"]))
        except BadImageError as e:
            self.panel.clear(unreadable(str(row["image_id"]), e))
        self._describe()

    def _describe(self) -> None:
        if self.current is not None:
            self.details.value = _row_html(self.current, self.rank.value, len(self.shown), self.sort_key)

    def _stored_image(self, image_id):
        """The split's stored (undecoded) image for `image_id`, or None."""
        return self._raw[self._index[image_id]][IMAGE] if image_id in self._index else None

    def __repr__(self) -> str:
        return (f"PredictionBrowser({len(self.shown)} of {len(self.rows)} predictions, sorted by {self.sort_by.value}"
                f" {self.order.value}; open in Jupyter to browse)")


def _row_html(row: dict, rank: int, n: int, key: str | None) -> str:
    e = html.escape
    refs = "".join(f"<li>{e(r)}</li>" for r in row["references"])
    scores = "".join(
        f"<tr><td>{'<b>' + e(k) + '</b>' if k == key else e(k)}</td>"
        f"<td>{'n/a' if v is None else f'{v:.3f}'}</td></tr>" for k, v in (row.get("scores") or {}).items())
    return (f"<b>{rank + 1} of {n}</b> &middot; <code>{e(str(row['image_id']))}</code><br>"
            f"<b>prediction:</b> {e(row['prediction'])}<br><b>references:</b><ul>{refs}</ul>"
            f"<table>{scores}</table>")


def browse_predictions(rows: list[dict], split=None, run_dir=None, applied: str | None = None) -> PredictionBrowser:
    """A browser over prediction rows ({image_id, prediction, references, scores}) with their test images; with
    `run_dir`, corrections to the references shown are recorded there (`applied`: the corrections file the rows'
    data was loaded with, cfg.data.corrections)."""
    return PredictionBrowser(rows, split, run_dir, applied)


# ---------------------------------------------------------------- captioning demo (05)

def caption_all(models: dict[str, tuple], image, gen: GenerationConfig, n: int = 1) -> dict[str, list[str]]:
    """{model name: captions of `image`}: n samples when sampling, else the single best caption."""
    from ..model.generation import caption_batch  # here: 04 browses predictions without loading torch (~4 s)
    from ..model.modeling import eval_mode

    n = n if gen.kind == "sampling" else 1
    out = {}
    for name, (model, processor) in models.items():
        with eval_mode(model):
            out[name] = caption_batch(model, processor, [image], gen, num_return_sequences=n)
    return out


def caption_table(models: dict[str, tuple], image, gen: GenerationConfig, seed: int = 0) -> list[dict]:
    """One row per decoding setting (greedy, beam, sampling, consensus), one column per model: the static demo."""
    beam, consensus = gen.as_kind("beam", num_beams=gen.num_beams if gen.num_beams > 1 else 3), gen.as_kind("consensus")
    settings = [("greedy", gen.as_kind("greedy")), (f"beam {beam.num_beams}", beam),
                (f"sampling top_p={gen.top_p:g} T={gen.temperature:g}", gen.as_kind("sampling")),
                (f"consensus of {consensus.consensus_samples} draws", consensus)]
    import torch

    rows = []
    with torch.random.fork_rng(devices=[]):  # a fixed sample here, without resetting the caller's RNG
        torch.manual_seed(seed)
        for label, cfg in settings:
            captions = caption_all(models, image, cfg)
            rows.append({"decoding": label, **{name: caps[0] for name, caps in captions.items()}})
    return rows


class CaptionDemo(widgets.VBox):
    """Pick or upload an image, choose the decoding, and compare the captions of several models side by side."""

    def __init__(self, models: dict[str, tuple], images: dict[str, object], gen: GenerationConfig):
        self.models, self.images, self.gen = models, dict(images), gen
        self.selected: tuple[str, object] | None = None
        self.results: dict[str, list[str]] = {}
        self.picker = widgets.Dropdown(options=list(self.images), description="test image", style=LABEL)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.decoding = widgets.ToggleButtons(options=DECODINGS, value=gen.kind)
        # Beam search with one beam is greedy: the slider starts where caption_table's beam row does.
        self.num_beams = widgets.IntSlider(value=gen.num_beams if gen.num_beams > 1 else 3, min=2,
                                           max=max(10, gen.num_beams), description="beams", style=LABEL)
        self.max_new_tokens = widgets.IntSlider(value=gen.max_new_tokens, min=1, max=max(60, gen.max_new_tokens),
                                                description="max tokens", style=LABEL)
        self.top_p = widgets.FloatSlider(value=gen.top_p, min=0.05, max=1.0, step=0.05, description="top_p",
                                         style=LABEL)
        self.temperature = widgets.FloatSlider(value=gen.temperature, min=0.1, max=2.0, step=0.1,
                                               description="temperature", style=LABEL)
        self.samples = widgets.IntSlider(value=3, min=1, max=10, description="samples", style=LABEL)
        self.draws = widgets.IntSlider(value=gen.as_kind("consensus").consensus_samples, min=2,
                                       max=MAX_CONSENSUS_SAMPLES, description="draws", style=LABEL)
        self.prompt = widgets.Text(value=gen.prompt, description="prompt", placeholder="e.g. a picture of",
                                   style=LABEL)
        self.button = widgets.Button(description="Caption", button_style="primary")
        self.panel = ImagePanel()
        self.image = self.panel.image
        self.status = widgets.HTML()
        self.panels = {name: widgets.HTML(layout=widgets.Layout(flex="1 1 0", min_width="160px", margin="0 0 0 12px"))
                       for name in models}
        self.picker.observe(lambda c: self._on_pick(c["new"]), "value")
        self.upload.observe(self._on_upload, "value")
        self.decoding.observe(lambda _: self._enable_controls(), "value")
        self.button.on_click(lambda _: self.run())
        controls = widgets.VBox([widgets.HBox([self.picker, self.upload]), self.decoding,
                                 widgets.HBox([self.num_beams, self.max_new_tokens]),
                                 widgets.HBox([self.top_p, self.temperature, self.samples, self.draws]),
                                 self.prompt, self.button, self.status])
        super().__init__([controls, widgets.HBox([self.panel, *self.panels.values()],
                                                 layout=widgets.Layout(align_items="flex-start"))])
        self._enable_controls()
        self._clear_captions()
        if self.images:
            self.select(self.picker.value, self.images[self.picker.value])

    def select(self, name: str, image, keep_on_error: bool = False) -> bool:
        """Show `image` and caption it next; an unreadable one is reported in the status line, in one sentence
        (with keep_on_error, as for an upload, the image shown before stays, with its captions).

        The captions of the previous image are cleared: beside a new image they would read as its captions.
        """
        try:
            self.panel.show(image, name)
        except BadImageError as e:
            if not keep_on_error:
                self._clear_captions()
                self.selected = None
                self.panel.clear("<i>no image</i>")
            self.status.value = unreadable(name, e)
            return False
        self._clear_captions()
        self.selected = (name, image)
        self.status.value = f"image: <code>{html.escape(name)}</code> &middot; press <b>Caption</b>"
        return True

    def _on_pick(self, name) -> None:
        if name is not None and (self.selected is None or self.selected[0] != name):
            self.select(name, self.images[name])

    def _on_upload(self, change) -> None:
        if not change["new"]:  # ipywidgets 8: a tuple of {name, type, size, content: memoryview, last_modified}
            return
        upload = change["new"][0]
        name, content = upload["name"], bytes(upload["content"])
        if self.select(name, content, keep_on_error=True):
            # The picker names what is shown: the upload joins it (replacing an earlier upload of the same name).
            self.images[name] = content
            self.picker.options = list(self.images)
            self.picker.value = name

    def _clear_captions(self) -> None:
        self.results = {}
        for name, panel in self.panels.items():
            panel.value = f"<b>{html.escape(name)}</b><br><i style='color:gray'>no captions yet</i>"

    def _enable_controls(self) -> None:
        mode = self.decoding.value
        self.num_beams.disabled = mode != "beam"
        for control in (self.top_p, self.temperature):
            control.disabled = mode not in ("sampling", "consensus")
        self.samples.disabled = mode != "sampling"
        self.draws.disabled = mode != "consensus"

    def generation_config(self) -> GenerationConfig:
        """The decoding the controls describe: the run's, turned into the chosen kind, the controls on top."""
        kind = self.decoding.value
        return self.gen.as_kind(kind, max_new_tokens=self.max_new_tokens.value, top_p=self.top_p.value,
                                temperature=self.temperature.value, prompt=self.prompt.value,
                                num_beams=self.num_beams.value if kind == "beam" else None,
                                consensus_samples=self.draws.value if kind == "consensus" else None)

    def run(self) -> dict[str, list[str]]:
        """Caption the selected image with every model (the Caption button)."""
        if self.selected is None:
            self.status.value = "pick a test image or upload one first"
            return {}
        gen = self.generation_config()
        self.results = caption_all(self.models, self.selected[1], gen, n=self.samples.value)
        for name, captions in self.results.items():
            self.panels[name].value = _captions_html(name, captions, gen.prompt)
        self.status.value = f"image: <code>{html.escape(self.selected[0])}</code> &middot; {gen.kind}"
        return self.results

    def __repr__(self) -> str:
        return (f"CaptionDemo(models={list(self.models)}, {len(self.images)} test images; "
                f"open in Jupyter to pick, upload and caption)")


def _captions_html(name: str, captions: list[str], prompt: str) -> str:
    # The prompt is stripped from generated captions; show it once, greyed, in front of each.
    lead = f"<span style='color:gray'>{html.escape(prompt.strip())}</span> " if prompt.strip() else ""
    items = "".join(f"<li>{lead}{html.escape(c) or '<i>(empty)</i>'}</li>" for c in captions)
    return f"<b>{html.escape(name)}</b><ol>{items}</ol>"


def caption_demo(models: dict[str, tuple], images: dict[str, object], gen: GenerationConfig) -> CaptionDemo:
    """The interactive demo: {name: (model, processor)}, {name: image}, the starting decoding settings."""
    return CaptionDemo(models, images, gen)
