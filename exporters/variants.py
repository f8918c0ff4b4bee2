"""Export variants: what one ``.mge`` file is, as a frozen dataclass with a stable id.

The id (``resnet18.fused.cbn-on``) is the file name, the pytest param id, the benchmark
``extra_info["variant"]`` and the row key of every report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mge_harness.exporters.errors import HarnessError

#: How a graph gets from raw pixels to the network input.
#: external: the graph takes float32 NCHW at the preprocessing size; the host runs OpenCV.
#: fused: the graph takes raw uint8 BGR NHWC of any size and resizes with MegEngine's Resize
#:   op (the fastest recipe that passes the gate, exporters.preprocess.fused_preprocess).
#: fused-exact: as fused, resizing exactly with gathers (slow in MegEngine 1.13).
#: fused-fast: what "fused" is now; releases exported before still name it so and load.
#: identity-warp: the widely copied recipe that "resizes" with an identity warp: it crops.
PREPROCESSINGS = ("external", "fused", "fused-exact", "fused-fast", "identity-warp")
RAW_INPUT_PREPROCESSINGS = ("fused", "fused-exact", "fused-fast", "identity-warp")

#: Preprocessings that are exported (``fused-fast`` is only read from older releases).
EXPORTED_PREPROCESSINGS = ("external", "fused", "fused-exact", "identity-warp")

#: Names that export no more, and what to ask for instead.
RENAMED = {"fused-fast": "fused"}

#: Quantized variants (``--variants int8``, opt-in): int8 post-training quantization of the
#: external variant (``exporters.int8``), judged against the float reference by its own rule.
QUANTIZATIONS = ("int8",)

IDENTITY_WARP_REASON = (
    "identity-matrix warp_perspective crops the top-left window instead of resizing"
)


@dataclass(frozen=True)
class Variant:
    """One export of a model: preprocessing recipe and ``optimize_for_inference`` options;
    ``quantization`` ("int8") for a quantized variant (None: float32)."""

    model: str
    preprocessing: str
    fuse_conv_bias_nonlinearity: bool
    expected_failure: str | None = None
    quantization: str | None = None

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSINGS:
            raise HarnessError(
                f"unknown preprocessing {self.preprocessing!r}; expected one of {PREPROCESSINGS}"
            )
        if self.quantization not in (None, *QUANTIZATIONS):
            raise HarnessError(
                f"unknown quantization {self.quantization!r}; expected one of {QUANTIZATIONS}"
            )

    @property
    def id(self) -> str:
        if self.quantization:  # quantized convs always fuse: the fusion flag names nothing
            return f"{self.model}.{self.preprocessing}.{self.quantization}"
        fuse = "on" if self.fuse_conv_bias_nonlinearity else "off"
        return f"{self.model}.{self.preprocessing}.cbn-{fuse}"

    @property
    def file(self) -> str:
        return f"{self.id}.mge"

    @property
    def raw_input(self) -> bool:
        return self.preprocessing in RAW_INPUT_PREPROCESSINGS

    def dump_options(self) -> dict[str, Any]:
        """Keyword arguments of ``trace.dump``: all of them, so the manifest records all."""
        return {
            "arg_names": ["data"],
            "output_names": ["logits"],
            "optimize_for_inference": True,
            "enable_fuse_conv_bias_nonlinearity": self.fuse_conv_bias_nonlinearity,
            "keep_var_name": 1,
            "dump_format": "FBS_V2",
        }


def default_matrix(model: str) -> list[Variant]:
    """{external, fused} x conv-bias fusion {off, on}, plus identity-warp (expected to fail)."""
    variants = [
        Variant(model, pre, fuse) for pre in ("external", "fused") for fuse in (False, True)
    ]
    variants.append(Variant(model, "identity-warp", True, expected_failure=IDENTITY_WARP_REASON))
    return variants


def int8_variant(model: str) -> Variant:
    """The int8 variant: external preprocessing (QuantStub takes the float32 NCHW input)."""
    return Variant(model, "external", True, quantization="int8")


def select_variants(model: str, names: str | None) -> list[Variant]:
    """The default matrix, or the preprocessings named in ``names`` ("all" adds fused-exact).

    ``names`` is a comma-separated list of preprocessings (each exported with fusion off and
    on; identity-warp with fusion on, as the recipe does), "all", and optionally "int8" (opt-in,
    never in the default matrix or "all"), which brings the external variants it is judged
    against when they are not listed.
    """
    if not names:
        return default_matrix(model)
    listed = [n.strip() for n in names.split(",")]
    quantized = [n for n in listed if n in QUANTIZATIONS]
    listed = [n for n in listed if n not in QUANTIZATIONS]
    if quantized and not listed:
        listed = ["external"]
    wanted = list(EXPORTED_PREPROCESSINGS) if listed == ["all"] else listed
    renamed = [n for n in wanted if n in RENAMED]
    if renamed:
        raise HarnessError(
            f"--variants {names!r}: {renamed[0]!r} is now the default recipe, named "
            f"{RENAMED[renamed[0]]!r} (the exact gathers are 'fused-exact')"
        )
    unknown = [n for n in wanted if n not in EXPORTED_PREPROCESSINGS]
    if unknown or not wanted:
        raise HarnessError(
            f"--variants {names!r}: unknown preprocessing {unknown[0] if unknown else ''!r}; "
            f"expected a comma-separated list of {', '.join(EXPORTED_PREPROCESSINGS)}, or all, "
            f"and optionally {', '.join(QUANTIZATIONS)}"
        )
    if quantized and "external" not in wanted:
        wanted = ["external", *wanted]
    variants = []
    for pre in dict.fromkeys(wanted):
        if pre == "identity-warp":
            variants.append(Variant(model, pre, True, expected_failure=IDENTITY_WARP_REASON))
        else:
            variants.extend(Variant(model, pre, fuse) for fuse in (False, True))
    if quantized:
        variants.append(int8_variant(model))
    return variants
