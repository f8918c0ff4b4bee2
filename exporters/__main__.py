"""``python -m exporters``: export a model's variants into a release folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mge_harness.exporters.errors import HarnessError, run_cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m exporters",
        description="Export a MegEngine model's variants (.mge files) and manifest.json into a "
        "release folder. Unchanged variants are reused from an earlier export into the folder.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a built-in model (resnet18, tiny) or your own as package.module:factory, a callable "
        "returning a megengine.module.Module",
    )
    parser.add_argument("--out", required=True, help="the release folder to write")
    parser.add_argument(
        "--weights", help="state dict for a factory model: .npz or megengine.save pickle"
    )
    parser.add_argument(
        "--name", help="model name in variant ids (factory models; defaults to the factory's name)"
    )
    parser.add_argument(
        "--variants",
        help="comma-separated preprocessings to export: external, fused, fused-exact, "
        "identity-warp, or all (defaults to external, fused and identity-warp); add int8 for the "
        "opt-in int8 post-training-quantized variant (it brings the external pair it is judged "
        "against)",
    )
    parser.add_argument("--size", help="factory models: input HEIGHTxWIDTH, defaults to 224x224")
    parser.add_argument(
        "--mean", help="factory models: 3 comma-separated numbers in the model's channel order"
    )
    parser.add_argument(
        "--std", help="factory models: 3 comma-separated numbers in the model's channel order"
    )
    parser.add_argument(
        "--color",
        choices=("bgr", "rgb"),
        help="factory models: the channel order the model sees, defaults to bgr; rgb needs "
        "--mean and --std (the defaults are BGR-ordered ImageNet statistics)",
    )
    parser.add_argument(
        "--force", action="store_true", help="export every variant even when cached"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


def _floats(text: str | None, option: str, count: int, default):
    if text is None:
        return default
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise HarnessError(f"{option} {text!r}: expected {count} numbers")
    return values


def _listed(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _refuse_factory_options(args: argparse.Namespace, spec) -> None:
    """HarnessError for the first option a built-in model would ignore, saying what it fixes
    instead: silently exporting something else than was asked for is worse than refusing."""
    pre = spec.preprocess
    normalisation = f"has its own normalisation (color {pre.color}, mean {_listed(pre.mean)}, std {_listed(pre.std)})"
    reasons = {
        "weights": "has its own weights",
        "size": f"has its own input size ({pre.size[0]}x{pre.size[1]})",
        "mean": normalisation,
        "std": normalisation,
        "color": normalisation,
        "name": f"names its variants {spec.name}.*",
    }
    for option, reason in reasons.items():
        if getattr(args, option) is not None:
            raise HarnessError(
                f"--{option}: built-in model {spec.name!r} {reason}; --{option} is for your own "
                "model (--model package.module:factory)"
            )


def model_spec(args: argparse.Namespace):
    from mge_harness.exporters.preprocess import IMAGENET_BGR_MEAN, IMAGENET_BGR_STD, PreprocessSpec
    from mge_harness.exporters.zoo import builtin_spec, is_factory_reference, user_spec

    if not is_factory_reference(args.model):
        spec = builtin_spec(args.model)
        _refuse_factory_options(args, spec)
        return spec
    if args.color == "rgb" and (args.mean is None or args.std is None):
        raise HarnessError(
            "--color rgb: give --mean and --std too, in RGB order; the defaults are ImageNet "
            f"statistics in BGR order (mean {_listed(IMAGENET_BGR_MEAN)}, std "
            f"{_listed(IMAGENET_BGR_STD)})"
        )
    size = _floats(args.size, "--size", 2, (224, 224))
    if any(v != int(v) or v < 1 for v in size):
        raise HarnessError(f"--size {args.size!r}: expected HEIGHTxWIDTH in whole pixels")
    spec = PreprocessSpec(
        size=(int(size[0]), int(size[1])),
        mean=_floats(args.mean, "--mean", 3, IMAGENET_BGR_MEAN),
        std=_floats(args.std, "--std", 3, IMAGENET_BGR_STD),
        color=args.color or "bgr",
    )
    return user_spec(args.model, spec, weights=args.weights, name=args.name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
    from mge_harness.exporters.export import export_release, stderr_progress
    from mge_harness.exporters.variants import select_variants

    spec = model_spec(args)
    variants = select_variants(spec.name, args.variants)
    manifest = export_release(
        spec, args.out, variants, progress=None if args.quiet else stderr_progress, force=args.force
    )
    if not args.quiet:
        print(
            f"wrote {manifest.root / 'manifest.json'} with {len(manifest.variants)} variants",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
