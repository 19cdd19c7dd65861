"""The ``brgm`` commands, each run on a resolved command line (``brgm_pyro.app.settings.Settings``).

Running the methods lives in ``brgm_pyro.inference.run``; writing its
images, metrics, figure and JSON in ``brgm_pyro.app.report``; data-set runs (several images,
``evaluate``) in ``brgm_pyro.app.dataset_cli``.  ``demo`` and ``reconstruct`` (one image) share one
flow, ``reconstruct_problems``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

import brgm_pyro

from .. import generators  # generators.load_generator looked up at call time (tests replace it)
from ..bundled import load_domain_classifier, load_test_images
from ..corruptions import Corruption, make_corruption, setting_name
from ..functional import image_shape
from ..generators import PriorGenerator
from ..inference import MethodOutput, to_inference_data, unknown_region
from ..jsonfile import write_json
from ..study import calibrate, methods_from, resolve_methods, simulate_problems
from ..study.problems import SIMULATION_SIGMA_PIXEL
from ..study.real_images import folder_images, real_image_calibration, recommended_calibration, split_images
from ..study.interval_scale import fit_method_interval_scale, widened
from ..models import BRGMModel
from ..models.likelihoods import gaussian_pixel_noise
from ..training.data import load_fashion_mnist
from ..training.trainer import TrainingConfig, export_generator, train_generator
from .cli_args import corruption_from_settings, load_generator_and_features, read_image
from .dataset_cli import evaluate_command, reconstruct_command
from .parallel import problem_processes, solve_problems
from .report import (
    figure_row, format_parameter_report, observation_display, parameter_report, save_intervals, save_outputs,
    summary_figure, inconsistent_draws_report, unplaced_draws_report, weights_report,
)
from .settings import (
    DEMO_TASK_FOLDERS, Settings, clear_previous_outputs, interval_factors_for, interval_scale_for,
)


# --- the one flow of demo and reconstruct ------------------------------------------------------

@dataclass
class Problem:
    """One observation of a ``demo`` / ``reconstruct`` run, and (once solved) its model and outputs."""

    task: str
    corruption: Corruption
    observation: torch.Tensor
    truth: torch.Tensor | None              # (1, C, H, W) on the CPU, or None for an observed image
    interval_scale: float                   # widens the fullrank posterior (``interval_scale_for``)
    folder: str | None = None               # subfolder of --out (None: --out itself)
    interval_factors: dict[float, float] | None = None  # fullrank's calibrated intervals (``interval_factors_for``)
    title: str | None = None                # row title in the summary figure
    model: BRGMModel | None = None
    outputs: dict[str, MethodOutput] = field(default_factory=dict)


def reconstruct_problems(settings: Settings, generator: PriorGenerator, features: torch.nn.Module | None,
                         problems: list[Problem]) -> tuple[dict, Path]:
    """Build each problem's model, run the settings' methods and refuse non-finite images; only
    then clear the previous run's files and write each problem's images, metrics.json (one entry
    per problem; a problem written into --out itself is the whole file) and summary.png.
    Returns the metrics.json content and the figure's path."""
    out = settings.out
    processes = problem_processes(len(problems), generator, settings.processes)
    if settings.progress:
        for i, problem in enumerate(problems):
            where = "" if processes == 1 or i == 0 else " (in a second process, no progress bar)"
            print(f"{problem.title or problem.task}: {', '.join(settings.methods)}{where}", flush=True)
    solved = solve_problems(settings, generator, features,
                            [(p.corruption, p.observation, p.interval_scale) for p in problems], processes)
    for problem, (model, outputs) in zip(problems, solved):
        problem.model, problem.outputs = model, outputs
        _check_finite_outputs(problem.outputs)
    clear_previous_outputs(settings)
    entries, rows, notes = {}, [], []
    for problem in problems:
        folder = out if problem.folder is None else out / problem.folder
        display = observation_display(problem.corruption, problem.observation, problem.model.image_shape)
        entry = {"task": problem.task, "corruption": problem.model.corruption.describe(),
                 "config": weights_report(problem.model),
                 "metrics": save_outputs(folder, problem.truth, display, problem.outputs)}
        fullrank = problem.outputs.get("fullrank")
        if fullrank is not None:
            entry["fullrank_interval_scale"] = problem.interval_scale
        if fullrank is not None and problem.interval_factors:
            unknown = unknown_region(problem.corruption, problem.model.image_shape)
            entry["metrics"]["fullrank"].update(save_intervals(
                folder, "fullrank", fullrank.result, problem.interval_factors, settings.seed, problem.truth, unknown))
            entry["fullrank_interval_factors"] = {f"{a:g}": f for a, f in problem.interval_factors.items()}
        if fullrank is not None and fullrank.result.model is not problem.model:
            entry["fullrank_config"] = weights_report(fullrank.result.model)  # its calibrated_model
        unplaced = unplaced_draws_report(problem.outputs, generator, seed=settings.seed)
        if unplaced:
            entry["unplaced_draws"] = unplaced
        sigma = next((s for s in map(gaussian_pixel_noise, problem.model.likelihoods) if s is not None), None)
        inconsistent = ({} if problem.model.latent_parameters() else  # f or sigma inferred: no fixed test
                        inconsistent_draws_report(problem.outputs, problem.model.corruption, problem.observation,
                                                  sigma, problem.model.image_shape))
        if inconsistent:
            entry["inconsistent_draws"] = inconsistent
        flagged = [f"{method}: {r['count']} of {r['draws']} draws match no garment the generator makes (the domain "
                   "classifier cannot place them)" for method, r in unplaced.items() if r["count"]]
        flagged += [f"{method}: {r['count']} of {r['draws']} draws do not reproduce the observation (their residual "
                    "exceeds the typical draw's by more than the pixel noise's 0.1% level)"
                    for method, r in inconsistent.items() if r["count"]]
        if flagged:
            notes.append(f"{problem.title or problem.task}: " + "; ".join(flagged))
        parameters = parameter_report(problem.outputs)
        if parameters:
            entry["parameters"] = parameters
            notes.append(format_parameter_report(parameters))
        entries[problem.folder] = entry
        rows.append(figure_row(display, problem.truth, problem.outputs))
        if settings.save_inference_data:
            for method, o in problem.outputs.items():
                idata = to_inference_data(o.result, problem.model, num_draws=settings.samples)
                idata.to_netcdf(str(folder / f"{method}_inference_data.nc"))
    report = entries[None] if list(entries) == [None] else entries
    write_json(report, out / "metrics.json")
    if notes:
        print("\n".join(notes))
    titles = [p.title or "" for p in problems] if any(p.title for p in problems) else None
    figure = summary_figure(rows, out / "summary.png", row_titles=titles, notes="\n".join(notes) or None)
    return report, figure


def _check_finite_outputs(outputs: dict[str, MethodOutput]) -> None:
    for method, o in outputs.items():
        if not bool(torch.isfinite(o.image).all()):
            raise ValueError(f"{method} gave non-finite (NaN / inf) images: the optimisation diverged; nothing was "
                             "written (try a smaller --lr)")


# --- commands ----------------------------------------------------------------------------------

def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cmd_info(settings: Settings) -> int:
    print(f"brgm-pyro {brgm_pyro.__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    for name, dist in (("pyro", "pyro-ppl"), ("arviz", "arviz"), ("lpips", "lpips"), ("numpy", "numpy")):
        print(f"{name:<9} {_version(dist)}")
    if torch.cuda.is_available():
        print(f"device    cuda ({torch.cuda.get_device_name(0)})")
    else:
        print("device    cpu (no GPU found)")
    return 0


def cmd_train_generator(settings: Settings) -> int:
    o = settings.options
    config = TrainingConfig(
        data=o["data"], out_dir=o["out"], resolution=o["resolution"], channels=o["channels"],
        z_dim=o["z_dim"], w_dim=o["w_dim"], mapping_layers=o["mapping_layers"],
        channel_base=o["channel_base"], channel_max=o["channel_max"], batch_size=o["batch_size"],
        iterations=o["iterations"], max_minutes=o["max_minutes"], lr=o["lr"], r1_gamma=o["r1_gamma"],
        r1_interval=o["r1_interval"], style_mixing_prob=o["style_mixing"], ema_kimg=o["ema_kimg"],
        ema_rampup=None if o["ema_rampup"] <= 0 else o["ema_rampup"],
        d_channel_base=o["d_channel_base"], d_channel_max=o["d_channel_max"],
        seed=o["seed"], snapshot_every=o["snapshot_every"],
        device=o["device"] or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
    state = train_generator(config, resume=not o["no_resume"], progress=not o["no_progress"])
    print(f"trained {state.iteration} iterations ({state.images_seen} images) in {state.wall_seconds / 60:.1f} min")
    if o["export"]:
        export_generator(f"{o['out']}/checkpoint.pt", o["export"])
        print(f"EMA generator written to {o['export']}")
    return 0


def cmd_reconstruct(settings: Settings) -> int:
    if settings.dataset:  # several images, a folder, a glob, the bundled test set, or torchrun
        return reconstruct_command(settings)
    generator, features = load_generator_and_features(settings)
    corruption = corruption_from_settings(settings, generator)
    truth, observation = read_image(settings, generator, corruption)
    metadata = getattr(generator, "metadata", None)
    scale = interval_scale_for(settings, metadata, corruption)
    problem = Problem(settings.task, corruption, observation, truth, scale,
                      interval_factors=interval_factors_for(settings, metadata, corruption))
    _, figure = reconstruct_problems(settings, generator, features, [problem])
    print(f"outputs in {settings.out}; summary figure: {figure}")
    return 0


def cmd_demo(settings: Settings) -> int:
    generator, features = load_generator_and_features(settings)
    images, _, _ = load_test_images()
    shape = image_shape(generator)
    if tuple(images.shape[1:]) != shape:
        raise ValueError(f"the demo images are {tuple(images.shape[1:])} but the generator makes {shape}; "
                         "run the demo with the bundled generator, or use `brgm reconstruct`")
    truth = images[settings.image_index:settings.image_index + 1]
    mask_id = 0 if settings.mask_id is None else settings.mask_id
    sr = make_corruption("super-resolution", shape[-1], factor=4, kernel=settings.kernel)
    inpainting = make_corruption("inpainting", shape[-1], mask_id=mask_id)
    metadata = getattr(generator, "metadata", None)
    problems = [Problem(task, op, op(truth), truth, interval_scale_for(settings, metadata, op),
                        folder=task, title=title, interval_factors=interval_factors_for(settings, metadata, op))
                for task, op, title in zip(DEMO_TASK_FOLDERS, (sr, inpainting),
                                           ("SR x4", f"in-painting, mask {mask_id}"))]
    report, figure = reconstruct_problems(settings, generator, features, problems)
    for name, entry in report.items():
        m = entry["metrics"]
        print(f"{name:>16}: RMSE  MAP {m['map']['rmse']:.1f}  posterior mean {m['fullrank']['rmse']:.1f}  "
              f"(0-255 scale; posterior mean pixel std {m['fullrank']['mean_pixel_std']:.3f})")
    scales = ", ".join(f"{p.task} x{p.interval_scale:g}" for p in problems)
    print(f"posterior: method fullrank (8 MAP starts, the best 3 climbing on; Laplace at the best mode; full-rank "
          f"Gaussian VI), widened by the interval scale {scales}")
    for p in problems:
        if p.interval_factors:
            levels = ", ".join(f"{100 * a:g}% x{f:g}" for a, f in p.interval_factors.items())
            print(f"{p.task}: pixel intervals calibrated on real images ({levels}): "
                  f"{settings.out / (p.folder or '')}/fullrank_interval<level>_lower|upper.png")
    print("how well the intervals hold, and what they guarantee: docs/calibration-real-images.md")
    print(f"summary figure: {figure}")
    return 0


def cmd_evaluate(settings: Settings) -> int:
    return evaluate_command(settings)  # per-image outputs, resumable, sharded under torchrun


def cmd_calibrate(settings: Settings) -> int:
    """Simulation-based calibration of posterior methods on problems drawn from the model
    (``--images DIR``: the recommended posterior on real images with ground truth instead)."""
    o = settings.options  # read-only: calibrate's options go straight into its calls
    if o['images'] is not None:
        return _calibrate_real(o)
    methods = resolve_methods(o['methods'], methods_from(o['imports']))
    generator = generators.load_generator(o['generator'], device=o['device'])
    corruption = make_corruption(o['task'], generator.img_resolution,
                                 **({"factor": o['factor'], "kernel": o['kernel']} if o['task'] == "super-resolution"
                                    else {"mask_id": o['mask_id']}))
    problem_seed = o['seed'] if o['problem_seed'] is None else o['problem_seed']
    sigma = SIMULATION_SIGMA_PIXEL if o['sigma_pixel'] is None else o['sigma_pixel']
    problems = simulate_problems(generator, corruption, o['num_problems'], sigma_pixel=sigma,
                                 prior_std=o['prior_std'], seed=problem_seed)
    identity = {"task": o['task'], "corruption": corruption.describe(), "generator": o['generator'],
                "sigma_pixel": sigma, "prior_std": o['prior_std'], "kappa": 0.0,
                "problem_seed": problem_seed, "steps": o['steps']}
    out = Path(o['out'])
    if o['fit_interval_scale']:
        return _fit_interval_scale(o, methods, problems, identity, out)
    if o['interval_scale'] != 1.0:
        methods = {f"{name}-x{o['interval_scale']:g}": widened(method, o['interval_scale'])
                   for name, method in methods.items()}
        identity["interval_scale"] = o['interval_scale']
    report = calibrate(problems, methods, num_draws=o['num_draws'], seed=o['seed'], progress=not o['no_progress'],
                       options={"num_steps": o['steps']}, settings=identity)
    json_path = report.to_json(out / "calibration.json")
    figure = report.figure(out / "calibration.png")
    print(f"# {o['task']} ({corruption.describe()}), {o['num_problems']} problems (seed {problem_seed}), "
          f"{o['num_draws']} draws, {o['steps']} steps, method seed {o['seed']}")
    print(report.table())
    print(f"written: {json_path} and {figure}")
    return 0


def _calibrate_misfit(text: str) -> float | str | None:
    """calibrate's --misfit-scale: 'none' (None), 'fit' or a finite number > 0."""
    if text in ("none", "fit"):
        return None if text == "none" else "fit"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"--misfit-scale must be 'none', 'fit' or a positive number, got {text!r}")
    return value


def _calibrate_real(o: Mapping[str, Any]) -> int:
    """``calibrate --images DIR``: coverage, RMSE against MAP, std / error and draw plausibility of the
    recommended posterior on real images, and its conformal interval scale (``study.real_images``)."""
    generator = generators.load_generator(o['generator'], device=o['device'])
    corruption = make_corruption(o['task'], generator.img_resolution,
                                 **({"factor": o['factor'], "kernel": o['kernel']} if o['task'] == "super-resolution"
                                    else {"mask_id": o['mask_id']}))
    folder = Path(o['images'])
    if any(folder.glob("t10k-images-idx3-ubyte*")):  # Fashion-MNIST IDX files: the test split, bundled 100 excluded
        images, _ = load_fashion_mnist("test", folder, generator.img_resolution)
        ids, exclude, source = range(images.shape[0]), load_test_images()[2].tolist(), f"{folder} (test split)"
    else:
        images, ids = folder_images(folder, generator.img_resolution, generator.img_channels)
        exclude, source = (), f"{folder} (files sorted by name, id = position)"
    split = split_images(images, ids, o['num_calibration'], o['num_evaluation'], seed=o['split_seed'],
                         exclude_ids=exclude, source=source)
    misfit = _calibrate_misfit(o['misfit_scale'])
    config, sigma = None, SIMULATION_SIGMA_PIXEL if o['sigma_pixel'] is None else o['sigma_pixel']
    if o['model'] == "recommended":  # the posterior `brgm reconstruct` fits for this setting, and its noise
        try:
            config, sigma = recommended_calibration(generator, corruption, o['sigma_pixel'])
        except ValueError as error:
            raise ValueError(f"{error} (--sigma-pixel or --model plain)") from None
    domain = (generator.img_channels, generator.img_resolution) == (1, 32) and o['generator'] == "fashion-mnist-32"
    setting = setting_name(corruption)
    out = Path(o['out'])
    report = real_image_calibration(
        generator, corruption, split, sigma_pixel=sigma, misfit=misfit, alpha=o['alpha'], config=config,
        num_draws=o['num_draws'], seed=o['seed'], batch_size=o['batch_size'],
        classifier=load_domain_classifier(o['device'] or "cpu") if domain else None, setting=setting,
        fit_options={"num_steps": o['steps']},
        out=out / "real_calibration.json", log=None if o['no_progress'] else print)
    write_json(report.interval_scales("plain"), out / "interval_scales.json", indent=1)
    print(f"# {o['task']} ({corruption.describe()}) on real images of {o['images']}: {len(split.calibration_ids)} "
          f"calibration, {len(split.evaluation_ids)} evaluation ({split.rule}); sigma {sigma}"
          + (f"; model {report.label('plain')} (kappa 0, no perceptual term)" if config is not None else ""))
    print(report.table())
    fit = report.fit("plain")
    print(f"conformal scale (alpha {o['alpha']}, n = {fit['num_images']}): {fit['scale']} "
          f"(plug-in, no guarantee: {fit['plug_in_scale']})")
    print("\nThe posterior's pixel intervals rescaled about their midpoints by a factor per level, fitted on the "
          "calibration images (conformal: E[coverage of a new image's unknown pixels] >= level):\n")
    print(report.interval_table())
    factors = report.interval_scales("plain").get("interval_factors", {}).get(setting)
    print(f"\ninterval factors for {setting}: {factors or 'none (too few calibration images for a guarantee)'}; "
          f"metadata to store: {out / 'interval_scales.json'} (`brgm reconstruct` uses interval_factors)")
    return 0


def _fit_interval_scale(o: Mapping[str, Any], methods: dict, problems: list, settings: dict, out: Path) -> int:
    """``calibrate --fit-interval-scale``: fit the interval scale of the (one) method on the problems."""
    if len(methods) != 1:
        raise ValueError(f"--fit-interval-scale fits one method at a time, got {', '.join(methods)}")
    (name, method), = methods.items()
    fit = fit_method_interval_scale(problems, method, seed=o['seed'], num_draws=o['num_draws'],
                                    options={"num_steps": o['steps']})
    path = write_json({"method": name, "settings": settings, "num_draws": o['num_draws'], "seed": o['seed'],
                       **fit.__dict__}, out / "interval_scale.json", indent=1, sort_keys=False)
    print(f"# interval scale of {name}: {o['task']} ({settings['corruption']}), {len(problems)} problems "
          f"(seed {settings['problem_seed']}), {o['num_draws']} draws")
    print("| scale | " + " | ".join(f"{a:g}" for a in fit.levels) + " | mean abs error |")
    print("|---" * (len(fit.levels) + 2) + "|")
    for s, row, err in zip(fit.scales, fit.coverage, fit.calibration_error):
        mark = " <-" if s == fit.scale else ""
        print(f"| {s:.2f} | " + " | ".join(f"{c:.3f}" for c in row) + f" | {err:.3f}{mark} |")
    print(f"fitted scale: {fit.scale:g} (use --interval-scale {fit.scale:g}); written: {path}")
    return 0


COMMANDS: dict[str, Callable[[Settings], int]] = {
    "info": cmd_info, "train-generator": cmd_train_generator, "demo": cmd_demo, "reconstruct": cmd_reconstruct,
    "evaluate": cmd_evaluate, "calibrate": cmd_calibrate,
}
"""Command name -> the function that runs it."""
