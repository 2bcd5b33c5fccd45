"""`ctdenoise denoise`: run a trained generator over one CT series, write a new derived series.

The input folder must hold one CT series and nothing else: every file is read and checked
(`ctdenoise.dicomio.reader`) before the model is loaded or anything is written, so a bad file stops
the command with its name and reason instead of leaving a partial series. The output is
assembled in a hidden folder beside `out_dir` and renamed into place at the end
(`ctdenoise.storage.publish`); what the model returns is checked (the input's shape, finite, on the
CT scale) before each batch is written, so a wrong model stops the command instead of
publishing a plausible series of nonsense. Slices larger than TILE² pixels are denoised
tile by tile, with overlaps wider than the generator's receptive field, so memory stays
bounded whatever the matrix size and the result equals denoising the whole slice at once.

Output: one CT Image Storage file per input slice (`ctdenoise.dicomio.derived`), named 0001.dcm,
0002.dcm, ... in the order of the sorted input files (then frame order), InstanceNumber
matching the file number, labelled research output unless `research_label` is off. Its UIDs
follow from the input's and the model's digest, so the same series and model give the same
derived series (what lets a PACS store that stopped half-way be completed, `ctdenoise.app.pacs`).
Progress lines carry counts and paths only, never tag values.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.app.display import labelled_panels
from ctdenoise.contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from ctdenoise.contract.names import (
    INPUT_KEY,
    LEVEL_KEY,
    MODEL_METADATA_FILE,
    MODEL_NAME_VARIABLE,
    OUTPUT_KEY,
    RECEPTIVE_RADIUS_VARIABLE,
    SERVING_SIGNATURE,
)
from ctdenoise.contract.noise_level import check_level, noise_level_hu
from ctdenoise.dicomio.derived import (
    Provenance,
    SourceSlice,
    derived_dataset,
    derived_uid,
    source_slices,
    text_problem,
    to_ct_hu,
)
from ctdenoise.dicomio.reader import DicomRejected, read_ct_file
from ctdenoise.metadata import names
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.storage import files
from ctdenoise.storage.publish import staged, staging_name

TILE = 512
"""Slices of more than TILE × TILE pixels are denoised in tiles of that size."""
TILE_MARGIN = 8
"""Pixels of context added on each side of a tile beyond the model's receptive radius, which
the model declares (`ctdenoise.contract.names.RECEPTIVE_RADIUS_VARIABLE`): with more context than the
generator reads, tiles agree with the whole slice."""


class DenoiseError(ValueError):
    """A problem with the model, the input series or the output folder; the message is one line."""


class NoPushedModel(DenoiseError):
    """`latest` asked of a run root that has pushed no model yet."""


@dataclass
class DenoiseReport:
    """What `denoise_series` wrote."""

    out_dir: Path
    slices: int
    series_uid: str
    png_paths: list[Path]
    seconds: float


@dataclass(frozen=True)
class _Slice:
    """One input slice and its output file's number and name."""

    source: SourceSlice
    number: int
    name: str


def denoise_series(
    model_dir: str | Path,
    input_dir: Path,
    out_dir: Path,
    *,
    png: bool = False,
    batch_size: int = 4,
    model_version: str = "",
    research_label: bool = True,
    strength_hu: float | None = None,
    progress: Callable[[str], None] | None = print,
    loaded: LoadedModel | None = None,
) -> DenoiseReport:
    """Denoise the CT series in `input_dir` with the SavedModel in `model_dir` (a folder or a
    bucket URL) into `out_dir`; `loaded` is that model already loaded (`load_model`), as a
    service that denoises series after series keeps it.

    Each slice is denoised at its own estimated noise level, or at `strength_hu` for all; the
    level goes into each derived instance's DerivationDescription. `out_dir` must not exist or
    be empty. With `png`, `out_dir/preview/NNNN.png` shows each slice as LDCT | denoised in a
    soft-tissue window. Raises DenoiseError on bad input.
    """
    say = progress or (lambda _line: None)
    start = time.monotonic()
    if batch_size < 1:
        raise DenoiseError(f"batch size must be at least 1, got {batch_size}")
    check_strength(strength_hu)
    out_dir = _resolved_out(out_dir)
    _check_out_dir(out_dir, input_dir)
    slices = _read_series(input_dir)
    say(f"denoise: {len(slices)} slices read from {input_dir}")
    model = loaded or load_model(str(model_dir))
    say(f"denoise: model {model_dir} ({model.name}, receptive radius {model.receptive_radius} px)")
    _check_batch_memory(model, slices, batch_size)
    provenance = Provenance(
        model.name, model_version or _name(str(model_dir)), model.digest, research_label, strength_hu
    )
    series_uid = derived_uid(provenance, slices[0].source.header.get("SeriesInstanceUID", ""))
    try:
        with staged(str(out_dir)) as staging:
            pngs = _write_series(model, slices, Path(staging), series_uid, provenance, png, batch_size, say)
    except OSError as exc:
        raise DenoiseError(
            f"{out_dir}: cannot write the derived series ({_os_reason(exc)}); nothing was written"
        ) from None
    seconds = time.monotonic() - start
    say(f"denoise: wrote {len(slices)} slices to {out_dir} in {seconds:.1f} s")
    return DenoiseReport(out_dir, len(slices), series_uid, [out_dir / p for p in pngs], seconds)


def check_strength(strength_hu: float | None) -> None:
    """DenoiseError in one line unless `strength_hu` is None or a level a user may give."""
    if strength_hu is not None:
        try:
            check_level(strength_hu)
        except ValueError as exc:
            raise DenoiseError(f"--strength: {exc}") from None


def _os_reason(exc: OSError) -> str:
    """The operating system's words for `exc`: pydicom re-raises a failed write as a new
    exception of the same type whose message carries a whole traceback, with the original
    (e.g. ENOSPC) as its cause."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(exc).splitlines()[0]


def resolve_model(model: str, run_root: Path, address: StoreAddress = StoreAddress()) -> str:
    """A SavedModel folder (local or in a bucket); for "base" the shipped base model
    (`ctdenoise.app.base_models`); for "latest" the newest complete version in the run's
    serving folder: the one ML Metadata records the newest push into (it may be a bucket),
    else RUN_ROOT/serving (NoPushedModel when there is none).

    Pusher names versions by integer timestamp, so the newest is the numerically largest
    (not the lexically last: "9" < "10"); a version is complete once its metadata file,
    which Pusher writes last, is there.
    """
    if model == "base":
        from ctdenoise.app.base_models import PAIRED_BASE, base_model

        return str(base_model(PAIRED_BASE))
    if model == "latest":
        serving = _serving_dir(run_root, address)
        names = files.listdir(serving) if files.isdir(serving) else []
        versions = [
            n
            for n in names
            if n.isdigit()
            and _is_model(files.join(serving, n))
            and files.exists(files.join(files.join(serving, n), MODEL_METADATA_FILE))
        ]
        if not versions:
            raise NoPushedModel(f"no pushed model under {serving}: run `ctdenoise run --until push` first")
        return files.join(serving, max(versions, key=int))
    if not _is_model(model):
        raise DenoiseError(f"{model}: not a SavedModel folder (no saved_model.pb) and not 'latest' or 'base'")
    return model


@dataclass(frozen=True)
class LoadedModel:
    """An exported denoiser: which model it is, a digest of its graph and weights, what context
    it reads, and its HU → HU call ([N, H, W, 1] float32 HU and each slice's noise level [N] in
    HU in, denoised HU out, slices larger than TILE² tile by tile)."""

    name: str
    digest: str
    receptive_radius: int
    denoise: Callable[[np.ndarray, np.ndarray], np.ndarray]
    widest_layer: int = 1
    """The most channels any of its convolutions has: what one pixel costs it at the most."""

    def __call__(self, hu: np.ndarray, levels_hu: np.ndarray | None = None) -> np.ndarray:
        """Denoise `hu` at `levels_hu`, by default each slice's own estimate (`noise_levels`)."""
        return self.denoise(hu, noise_levels(hu) if levels_hu is None else np.asarray(levels_hu, np.float32))


def noise_levels(hu: np.ndarray) -> np.ndarray:
    """Each slice's noise level in HU [N] (`contract.noise_level`) of [N, H, W, 1] HU: what ingestion
    measured for the examples the model was trained on."""
    return np.array([noise_level_hu(image[..., 0]) for image in hu], np.float32)


def load_model(model_dir: str) -> LoadedModel:
    """The SavedModel's HU → HU serving signature and its description, loaded once.

    TensorFlow is imported here rather than with the module, so input and output folder
    errors are reported before its start-up of several seconds.
    """
    if not _is_model(str(model_dir)):
        raise DenoiseError(f"{model_dir}: not a SavedModel folder (no saved_model.pb)")
    import ctdenoise.tensorflow_env  # noqa: F401  (the exported generator is a tf_keras model)

    # isort: split
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(files.tf_path(model_dir))
        serve = loaded.signatures[SERVING_SIGNATURE]
    except Exception as exc:
        raise DenoiseError(
            f"{model_dir}: cannot load the model's {SERVING_SIGNATURE} signature ({type(exc).__name__})"
        ) from None
    inputs, expected = sorted(serve.structured_input_signature[1]), sorted([INPUT_KEY, LEVEL_KEY])
    if inputs != expected:
        raise DenoiseError(
            f"{model_dir}: the model's {SERVING_SIGNATURE} signature takes {' and '.join(inputs) or 'nothing'}, "
            f"not {' and '.join(expected)}: it was not exported by this version of `ctdenoise run`"
        )
    name, radius = (getattr(loaded, variable, None) for variable in (MODEL_NAME_VARIABLE, RECEPTIVE_RADIUS_VARIABLE))
    if name is None or radius is None:
        raise DenoiseError(
            f"{model_dir}: the model does not say which model it is or how far it reads "
            f"(no {MODEL_NAME_VARIABLE} or {RECEPTIVE_RADIUS_VARIABLE}); export it again with "
            "`ctdenoise run`"
        )
    radius, name_text = int(radius.numpy()), name.numpy().decode(errors="replace")
    problem = text_problem(name_text) or (f"a negative receptive radius ({radius})" if radius < 0 else None)
    if problem:
        raise DenoiseError(
            f"{model_dir}: the model describes itself with {problem}; it was not exported by `ctdenoise run`"
        )

    def whole(hu: np.ndarray, levels: np.ndarray) -> np.ndarray:
        out = serve(**{INPUT_KEY: tf.constant(hu), LEVEL_KEY: tf.constant(levels, tf.float32)})[OUTPUT_KEY]
        return _checked_output(model_dir, hu, out.numpy())

    widest = max((max(v.shape[-2:]) for v in serve.variables if len(v.shape) == 4), default=1)
    return LoadedModel(
        name_text,
        _digest(model_dir),
        radius,
        lambda hu, levels: tiled(lambda piece: whole(piece, levels), hu, overlap=radius + TILE_MARGIN),
        int(widest),
    )


def _digest(model_dir: str) -> str:
    """SHA-256 of the graph and of the weights' index, which holds a CRC-32C of every weight
    tensor: it changes with any weight, without reading the weights (megabytes) again."""
    digest = hashlib.sha256()
    for name in ("saved_model.pb", "variables/variables.index"):
        path = files.join(str(model_dir), name)
        if files.exists(path):
            digest.update(files.read_bytes(path))
    return digest.hexdigest()


def _checked_output(model_dir: str, hu: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out` if it can be a denoising of `hu`, else DenoiseError naming what is wrong: a model
    with the product's signature names can still return NaN (written as HU 0 everywhere) or
    another size (written with the input's pixel spacing), which would make a plausible
    series of nonsense. The HU must lie on the CT scale derived series are written on."""
    if out.shape != hu.shape:
        raise DenoiseError(
            f"{model_dir}: the model returned shape {_dims(out.shape)} for input "
            f"{_dims(hu.shape)}; a denoiser returns the input's shape"
        )
    finite = np.isfinite(out)
    if not finite.all():
        raise DenoiseError(
            f"{model_dir}: the model returned {out.size - np.count_nonzero(finite)} NaN or "
            f"infinite values in {out.size}; it is broken or not a denoiser"
        )
    low, high = float(out.min()), float(out.max())
    if low < CT_FLOOR_HU - 0.5 or high > CT_CEILING_HU + 0.5:
        raise DenoiseError(
            f"{model_dir}: the model returned HU from {low:.6g} to {high:.6g}, outside the CT "
            f"scale {CT_FLOOR_HU}..{CT_CEILING_HU}; it does not return Hounsfield units"
        )
    return out


def _dims(shape: tuple[int, ...]) -> str:
    return " × ".join(str(side) for side in shape)


def _check_batch_memory(model: LoadedModel, slices: list[_Slice], batch_size: int) -> None:
    """Refuse, before any slice is denoised, a `batch_size` whose estimate does not fit the
    memory available now: two float32 maps of the model's widest layer (its input and output)
    for every pixel of a batch of the largest slices, or of tiles where slices are tiled."""
    reach = TILE + 2 * (model.receptive_radius + TILE_MARGIN)
    pixels = max(min(s.source.record.hu.shape[0], reach) * min(s.source.record.hu.shape[1], reach) for s in slices)
    per_slice = pixels * model.widest_layer * 4 * 2
    available = _available_memory()
    if batch_size * per_slice > available:
        fits = max(available // per_slice, 1)
        raise DenoiseError(
            f"--batch {batch_size}: slices of {pixels:,} pixels through layers of {model.widest_layer} channels "
            f"need about {_gib(batch_size * per_slice)}, more than the {_gib(available)} available; "
            f"use --batch {fits} or less"
        )


def _available_memory() -> int:
    """Bytes the kernel says a process can still have without swapping (MemAvailable)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def tiled(model: Callable[[np.ndarray], np.ndarray], hu: np.ndarray, overlap: int, tile: int = TILE) -> np.ndarray:
    """`model` on [N, H, W, 1] HU, in tiles of `tile`² with `overlap` pixels of context on
    each side when the slices are larger than one tile; each tile keeps only its centre."""
    height, width = hu.shape[1:3]
    if height <= tile and width <= tile:
        return model(hu)
    out = np.empty(hu.shape, np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(top + tile + overlap, height), min(left + tile + overlap, width)
            piece = model(np.ascontiguousarray(hu[:, y0:y1, x0:x1]))
            bottom, right = min(top + tile, height), min(left + tile, width)
            out[:, top:bottom, left:right] = piece[:, top - y0 : bottom - y0, left - x0 : right - x0]
    return out


def _serving_dir(run_root: Path, address: StoreAddress) -> str:
    """Where the run root's pushes went: the parent of the newest pushed version ML Metadata
    records for the root (in its own or a shared store), else the default RUN_ROOT/serving."""
    from ctdenoise.metadata.queries import existing_store, newest_push, property_value

    store = existing_store(run_root, address, read_only=True)
    pushed = newest_push(store, address.pipeline_name(run_root)) if store is not None else None
    if pushed is not None:
        return property_value(pushed, "pushed_destination").rstrip("/").rsplit("/", 1)[0]
    return str(names.serving_dir(run_root))


def _is_model(folder: str) -> bool:
    return files.exists(files.join(str(folder), "saved_model.pb"))


def _name(folder: str) -> str:
    return str(folder).rstrip("/").rsplit("/", 1)[-1]


def _resolved_out(out_dir: Path) -> Path:
    """Where a symbolic link given as the output points (dangling or not): the series is
    built beside that folder and renamed onto it, which a rename onto the link itself cannot do."""
    return out_dir.resolve() if out_dir.is_symlink() else out_dir


def _check_out_dir(out_dir: Path, input_dir: Path) -> None:
    """Refuse to overwrite anything, or to write into the series being read, or a name the
    filesystem cannot hold."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DenoiseError(f"{out_dir}: already exists and is not an empty folder; choose a new output folder")
    if out_dir.resolve().is_relative_to(input_dir.resolve()):
        raise DenoiseError(f"{out_dir}: inside the input series folder; choose a folder outside it")
    _check_name_lengths(out_dir)


def _check_name_lengths(out_dir: Path) -> None:
    """The output's hidden staging name (`ctdenoise.storage.publish.staging_name`) and each parent folder
    still to be created fit the filesystem's NAME_MAX: a long name fails here, not with
    "File name too long" after the model has loaded."""
    out = out_dir.absolute()
    staging = staging_name(out.name)
    names = [(out.name, len(os.fsencode(staging)), " with its hidden staging suffix")]
    parent = out.parent
    while not parent.exists():
        names.append((parent.name, len(os.fsencode(parent.name)), ""))
        parent = parent.parent
    limit = os.pathconf(parent, "PC_NAME_MAX")
    for name, length, note in names:
        if length > limit:
            raise DenoiseError(
                f"{out_dir}: the folder name {name[:12]}... needs {length} bytes{note}; "
                f"this filesystem allows {limit}: choose a shorter name"
            )


def _read_series(input_dir: Path) -> list[_Slice]:
    """Every file under `input_dir` as CT slices, or DenoiseError naming the first bad file."""
    if not input_dir.is_dir():
        raise DenoiseError(f"{input_dir}: not a folder")
    paths = sorted(p for p in input_dir.rglob("*") if p.is_file())
    if not paths:
        raise DenoiseError(f"{input_dir}: empty folder; expected the DICOM files of one CT series")
    sources = [source for path in paths for source in _read_file(input_dir, path)]
    series = {str(source.header.get("SeriesInstanceUID", "")) for source in sources}
    if len(series) > 1:
        raise DenoiseError(f"{input_dir}: holds files of {len(series)} series; give the folder of one series")
    _check_distinct_instances(sources)
    digits = max(4, len(str(len(sources))))
    return [_Slice(source, number=i, name=f"{i:0{digits}d}") for i, source in enumerate(sources, 1)]


def _check_distinct_instances(sources: list[SourceSlice]) -> None:
    """Each source image (SOP instance and frame) once: a copied file would be denoised twice
    and the derived series would reference one source several times."""
    seen: dict[tuple[str, int], str] = {}
    for source in sources:
        key = (source.record.instance, source.record.frame or 0)
        if source.record.instance and key in seen:
            raise DenoiseError(
                f"{source.record.rel_path}: the same instance (SOPInstanceUID) as {seen[key]}; give each image once"
            )
        seen.setdefault(key, source.record.rel_path)


def _read_file(input_dir: Path, path: Path) -> list[SourceSlice]:
    """The slices of one file (one parse), or DenoiseError naming the file."""
    name = f"{input_dir.name}/{path.relative_to(input_dir).as_posix()}"
    try:
        return source_slices(read_ct_file(path, name))
    except DicomRejected as exc:
        raise DenoiseError(f"{name}: {exc.reason}") from None


def _write_series(
    model: LoadedModel,
    slices: list[_Slice],
    folder: Path,
    series_uid: str,
    provenance: Provenance,
    png: bool,
    batch_size: int,
    say: Callable[[str], None],
) -> list[Path]:
    """Denoise batch by batch and write each slice's DICOM (and preview); returns preview paths relative to `folder`."""
    pngs, done = [], 0
    for batch in _batches(slices, batch_size):
        hu = np.stack([s.source.record.hu for s in batch]).astype(np.float32)[..., np.newaxis]
        levels = noise_levels(hu) if provenance.strength_hu is None else np.full(len(batch), provenance.strength_hu)
        for item, denoised, level in zip(batch, to_ct_hu(model(hu, levels)[..., 0]), levels, strict=True):
            ds = derived_dataset(item.source, denoised, item.number, series_uid, provenance, float(level))
            ds.save_as(folder / f"{item.name}.dcm", enforce_file_format=True)
            if png:
                pngs.append(_write_preview(folder, item, denoised))
        done += len(batch)
        say(f"denoise: {done}/{len(slices)} slices (noise level {_range(levels)} HU)")
    return sorted(pngs)


def _range(levels: np.ndarray) -> str:
    low, high = float(np.min(levels)), float(np.max(levels))
    return f"{low:.1f}" if round(low, 1) == round(high, 1) else f"{low:.1f}–{high:.1f}"


def _batches(slices: list[_Slice], size: int) -> Iterator[list[_Slice]]:
    """Runs of at most `size` slices of one shape: a series may mix matrix sizes, a batch cannot."""
    by_shape: dict[tuple[int, ...], list[_Slice]] = {}
    for item in slices:
        by_shape.setdefault(item.source.record.hu.shape, []).append(item)
    for group in by_shape.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _write_preview(folder: Path, item: _Slice, denoised: np.ndarray) -> Path:
    """preview/NNNN.png: LDCT | denoised side by side, so the change is visible at a glance."""
    path = Path("preview") / f"{item.name}.png"
    (folder / path).parent.mkdir(exist_ok=True)
    panels = {"LDCT": item.source.record.hu, "denoised": denoised}
    labelled_panels(panels, labels=False).save(folder / path)
    return path
