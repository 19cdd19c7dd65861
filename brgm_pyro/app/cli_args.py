"""The objects a resolved command line (``brgm_pyro.app.settings.Settings``) asks for: the
generator and its feature network, the corruption (with its mask prepared for the generator),
the images prepared for the generator, and the model.

Every change made to a user's image or mask (padding, cropping, colour to grayscale, a resize of
a generator without a declared preparation) is announced in one printed line
(``brgm_pyro.preparation``); nothing is stretched silently.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import generators  # generators.load_generator looked up at call time (tests replace it)
from ..corruptions import Corruption, make_blind, make_corruption
from ..functional import image_shape
from ..generators import PriorGenerator
from ..io import NonSquareImageError
from ..models import BRGMModel, brgm_model, default_config, learn_noise
from ..preparation import ImagePreparation, PreparedImage, prepare_mask, prepare_pixels
from .features import build_features
from ..threads import apply_thread_policy
from .settings import Settings


def announce(prepared: PreparedImage, name: str) -> None:
    """Print the one line that says what was done to an input (nothing when it was used as it is)."""
    line = prepared.announcement(name)
    if line:
        print(line)


def load_generator_and_features(settings: Settings) -> tuple[PriorGenerator, torch.nn.Module | None]:
    """--generator on --device, and the --features network for it; sets torch's threads for the
    generator (``brgm_pyro.threads.apply_thread_policy``: --threads, else OMP_NUM_THREADS, else from
    the generator's size; never more than a data-set rank's share)."""
    generator = generators.load_generator(settings.generator, device=settings.device)
    apply_thread_policy(generator, settings.threads)
    return generator, build_features(settings.features, generator, generator.device)


def image_preparation(generator: PriorGenerator) -> ImagePreparation | None:
    """The generator's declared image preparation (its metadata), or None."""
    return ImagePreparation.from_metadata(getattr(generator, "metadata", None))


def corruption_from_settings(settings: Settings, generator: PriorGenerator) -> Corruption:
    """--task with its flags (--factor / --kernel, --mask / --mask-id), for the generator's images;
    a --mask file is prepared like the images (``preparation.prepare_mask``) and announced."""
    resolution = generator.img_resolution
    if settings.task == "super-resolution":
        return make_corruption("super-resolution", resolution, kernel=settings.kernel,
                               **({} if settings.factor is None else {"factor": settings.factor}))
    if settings.task == "inpainting":
        if settings.mask is not None and settings.mask_id is not None:
            raise ValueError("give either --mask or --mask-id, not both")
        if settings.mask is None:
            return make_corruption("inpainting", resolution, mask_id=settings.mask_id)
        mask = prepare_mask(settings.mask, resolution, image_preparation(generator))
        announce(mask, f"mask {settings.mask}")
        return make_corruption("inpainting", resolution, mask=mask.tensor)
    return make_corruption(settings.task, resolution)


def model_from_settings(settings: Settings, generator: PriorGenerator, corruption: Corruption,
                        observation: torch.Tensor, features: torch.nn.Module | None) -> BRGMModel:
    """The model the command line asks for: ``default_config`` with the weight flags applied,
    built by ``brgm_model``; --blind makes the named corruption parameters latent and
    --learn-noise infers sigma_pixel (prior HalfNormal(0.5)); --misfit-scale adds the generator's misfit
    (``brgm_pyro.models.misfit``; a misfit scale the generator recommends is left out with --blind)."""
    config = replace(default_config(generator, corruption, features), **settings.weights)
    if settings.misfit_scale is not None:  # 'none': the paper's model, whatever the generator recommends
        config = replace(config, misfit_scale=None if settings.misfit_scale == "none" else settings.misfit_scale)
    if settings.blind and config.misfit_scale is not None:  # the misfit term needs the operator fixed
        if settings.misfit_scale is not None:
            raise ValueError(f"--misfit-scale needs a fixed operator, but --blind {' '.join(settings.blind)} makes "
                             "its parameters unknown; drop one of the two")
        config = replace(config, misfit_scale=None)  # the generator's recommendation: not for a blind operator
    model = brgm_model(generator, corruption, observation.to(generator.device), config=config, features=features)
    if settings.blind:
        model = replace(model, corruption=make_blind(model.corruption, list(settings.blind)))
    if settings.learn_noise:
        model = learn_noise(model)
    return model


def read_image(settings: Settings, generator: PriorGenerator,
               corruption: Corruption) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(truth, observation) of ``brgm reconstruct IMAGE`` from its pixels (decoded once, in the
    settings): IMAGE is the clean image, prepared for the generator and corrupted here, or with
    --observed the observation itself (then the truth is None; it must have f's output size, or
    for a same-size f the declared size).  What was done to it is announced in one line."""
    if settings.image is None:
        raise ValueError("read_image needs the settings of a single-image run")
    shape = image_shape(generator)
    path = settings.image.path
    out_shape = tuple(corruption.output_shape(shape))
    same_size = out_shape == shape
    target = shape if not settings.observed else out_shape
    try:
        prepared = prepare_pixels(settings.image.pixels, target,
                                  image_preparation(generator) if (not settings.observed or same_size) else None,
                                  what=f"image {path}", center_crop=settings.center_crop,
                                  allow_resize=not settings.observed,
                                  expected=(f"{corruption.describe()} of this generator's images gives"
                                            if settings.observed else "this generator's images are"))
    except NonSquareImageError as err:
        raise ValueError(f"{err.name} is not square ({err.width}x{err.height}); pass --center-crop to crop its "
                         "central square") from None
    announce(prepared, f"image {path}")
    if settings.observed:
        return None, prepared.tensor
    return prepared.tensor, corruption(prepared.tensor)
