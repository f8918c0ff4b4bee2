"""Re-run one gate check on a saved counterexample.

``python -m equivalence.reproduce results/counterexamples/<variant>/<check>.npy`` loads the
uint8 BGR batch and, from the ``.json`` sidecar the gate wrote beside it, the release folder,
variant, check and tolerance file; ``--release``, ``--variant``, ``--check`` and
``--tolerances`` override them. Prints the comparison; exits 0 when it passes now, 1 when it
still fails, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mge_harness.exporters.errors import HarnessError, run_cli


def _sidecar(npy: Path) -> dict:
    path = npy.with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise HarnessError(f"{path}: not valid JSON ({err})") from None


def load_images(npy: Path) -> np.ndarray:
    """The saved batch, checked to be uint8 (N, H, W, 3)."""
    from mge_harness.exporters.preprocess import check_images

    try:
        images = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise HarnessError(f"{npy}: cannot read a numpy array ({err})") from None
    return check_images(images, str(npy))


def main(argv=None) -> int:
    from mge_harness.exporters.quiet import probe_cuda_quietly

    probe_cuda_quietly()
    from mge_harness.equivalence.gate import Gate
    from mge_harness.equivalence.tolerances import CHECKS, load_tolerances
    from mge_harness.exporters.manifest import load_manifest
    from mge_harness.exporters.session import with_eager_option

    parser = argparse.ArgumentParser(prog="python -m equivalence.reproduce", description=__doc__)
    parser.add_argument("npy", type=Path, help="a counterexample .npy saved by the gate")
    parser.add_argument("--release", metavar="DIR", help="release folder (default: sidecar's)")
    parser.add_argument("--variant", metavar="ID", help="variant id (default: sidecar's)")
    parser.add_argument("--check", choices=list(CHECKS), help="check (default: sidecar's)")
    parser.add_argument("--tolerances", metavar="FILE", help="tolerance file (default: sidecar's)")
    parser.add_argument(
        "--eager", metavar="PKG.MODULE:FACTORY", help="eager module source (default: sidecar's)"
    )
    parser.add_argument("--weights", metavar="FILE", help="its weights (default: sidecar's)")
    args = parser.parse_args(argv)
    saved = _sidecar(args.npy)
    release = args.release or saved.get("release")
    variant = args.variant or saved.get("variant")
    check = args.check or saved.get("check")
    if not (release and variant and check):
        raise HarnessError(
            f"{args.npy}: no sidecar .json names the release, variant and check; "
            "pass --release, --variant and --check"
        )
    images = load_images(args.npy)
    eager, weights = args.eager, args.weights
    if eager is None and saved.get("eager"):
        eager, weights = saved["eager"]
    manifest = with_eager_option(load_manifest(release), eager, weights)
    gate = Gate(manifest, load_tolerances(args.tolerances or saved.get("tolerances")))
    try:
        result = gate.run(check, variant, images)
    finally:
        gate.close()
    print(f"{variant}: {check} check on a batch of shape {images.shape}\n{result}")
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
