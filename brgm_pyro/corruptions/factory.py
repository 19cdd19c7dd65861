"""The one task factory: a forward operator f by task name (the command line and the calibration
command call ``make_corruption``)."""

from __future__ import annotations

from typing import Any

from ..choices import TASKS
from .base import Corruption
from .blur import Blur
from .compressed_sensing import CompressedSensing
from .inpainting import Inpainting
from .masks import NUM_STANDARD_MASKS, standard_mask
from .simple import Denoising, Grayscale
from .super_resolution import SuperResolution

DEFAULT_SR_FACTOR = 4
DEFAULT_BLUR_SIGMA = 1.5

# The keyword arguments each task takes (anything else is refused, naming the task).
TASK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "super-resolution": ("factor", "kernel", "sigma"),
    "inpainting": ("mask", "mask_id"),
    "denoising": (),
    "grayscale": (),
    "blur": ("sigma", "kernel", "size"),
    "compressed-sensing": ("num_measurements", "seed", "image_shape"),
}


def make_corruption(task: str, resolution: int | None = None, **kwargs: Any) -> Corruption:
    """Build the operator of a task by name; with ``resolution`` (the generator's image size) it is
    checked against the generator's images and the size-dependent defaults are filled in.

    super-resolution: factor (default 4; with ``resolution``: >= 2 and dividing it), kernel, sigma;
    inpainting: exactly one of mask (file, array or tensor, 1 = observed; with ``resolution``: of that
    size) and mask_id (a standard mask 0..6, needs ``resolution``); blur: sigma (Gaussian, default
    1.5 pixels) and size, or kernel; compressed-sensing: num_measurements (default resolution^2 / 4),
    seed, image_shape; denoising / grayscale: none.

    >>> make_corruption("super-resolution", 32, factor=4).describe()
    'super-resolution x4 (bicubic kernel)'
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    unknown = sorted(set(kwargs) - set(TASK_ARGUMENTS[task]))
    if unknown:
        takes = ", ".join(TASK_ARGUMENTS[task]) or "no arguments"
        raise TypeError(f"task {task!r} takes {takes}; got {', '.join(unknown)}")
    if task == "super-resolution":
        factor = kwargs.pop("factor", None)
        factor = DEFAULT_SR_FACTOR if factor is None else factor
        if resolution is not None and (not isinstance(factor, int) or factor < 2 or resolution % factor):
            raise ValueError(f"super-resolution factor {factor} must be >= 2 and divide the resolution {resolution}")
        return SuperResolution(factor, **kwargs)
    if task == "inpainting":
        return _inpainting(resolution, kwargs.get("mask"), kwargs.get("mask_id"))
    if task == "denoising":
        return Denoising()
    if task == "grayscale":
        return Grayscale()
    if task == "blur":
        if "kernel" in kwargs:
            return Blur(**kwargs)
        return Blur.gaussian(kwargs.get("sigma", DEFAULT_BLUR_SIGMA), kwargs.get("size"))
    if kwargs.get("num_measurements") is None:
        if resolution is None:
            raise ValueError("compressed-sensing needs num_measurements (or the resolution, for resolution^2 / 4)")
        kwargs["num_measurements"] = resolution * resolution // 4
    return CompressedSensing(**kwargs)


def _inpainting(resolution: int | None, mask: Any, mask_id: int | None) -> Inpainting:
    if (mask is None) == (mask_id is None):
        raise ValueError("inpainting needs exactly one of a mask (file or tensor, 1 = observed) or a mask id "
                         f"0..{NUM_STANDARD_MASKS - 1}")
    if mask_id is not None:
        if not (isinstance(mask_id, int) and 0 <= mask_id < NUM_STANDARD_MASKS):
            raise ValueError(f"mask id must be in 0..{NUM_STANDARD_MASKS - 1}, got {mask_id}")
        if resolution is None:
            raise ValueError("a standard mask (mask_id) needs the resolution of the generator's images")
        return Inpainting(standard_mask(mask_id, resolution))
    op = Inpainting(mask)
    shape = tuple(op.mask.shape[-2:])
    if resolution is not None and shape != (resolution, resolution):
        raise ValueError(f"mask is {shape[0]}x{shape[1]} but the generator makes {resolution}x{resolution} images; "
                         "resize the mask (nearest neighbour) to the generator's resolution")
    return op
