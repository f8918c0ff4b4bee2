"""Read back ``tuned.json`` (written by ``python -m bench.tune``): the fastest equivalent Lite
configuration per variant on the machine it was measured on.

``lite_config(path, variant_id)`` gives a ``megenginelite.LiteConfig`` with the recommended
options and the thread count to set on the network, so deployment code needs nothing else of
the harness::

    config, threads = lite_config("release/tuned.json", "resnet18.fused.cbn-on")
    network = megenginelite.LiteNetwork(config=config)
    if threads > 1:
        network.threads_number = threads
    network.load("release/resnet18.fused.cbn-on.mge")

``recommended_config(path, variant_id)`` is the name of the recommended config in
``exporters.devices`` (what ``pytest bench/ --tuned FILE`` benchmarks). Every mistake (no
file, not JSON, not a tuned document, unknown variant) is a one-line ``HarnessError``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mge_harness.exporters.errors import HarnessError
from mge_harness.exporters.files import check_regular

#: The ``format_version`` this module reads.
FORMAT_VERSION = 1


def load_tuned(path) -> dict:
    """The parsed ``tuned.json`` at ``path``, checked for the fields this module reads."""
    path = Path(path)
    check_regular(path, "a tuned.json written by python -m bench.tune")
    if not path.is_file():
        raise HarnessError(
            f"{path}: no such file; write it with python -m bench.tune --release DIR"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HarnessError(f"{path}: not valid JSON ({err})") from None
    if (
        not isinstance(document, dict)
        or document.get("format_version") != FORMAT_VERSION
        or not isinstance(document.get("variants"), dict)
    ):
        raise HarnessError(
            f"{path}: not a tuned.json (expected format_version {FORMAT_VERSION} and a "
            "'variants' table); write it with python -m bench.tune"
        )
    return document


def recommendation(path, variant_id: str) -> dict:
    """The ``recommended`` record of ``variant_id``: config, options, threads, speedups."""
    variants = load_tuned(path)["variants"]
    if variant_id not in variants:
        known = ", ".join(variants) or "none"
        raise HarnessError(f"{path}: no variant {variant_id!r}; tuned variants: {known}")
    record = variants[variant_id].get("recommended")
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("config"), str)
        or not isinstance(record.get("options"), dict)
        or not isinstance(record.get("threads"), int)
        or record["threads"] < 1
    ):
        raise HarnessError(
            f"{path}: variant {variant_id!r} has no valid 'recommended' record (config, "
            "options, threads); run python -m bench.tune again"
        )
    return record


def recommended_config(path, variant_id: str) -> str:
    """The ``exporters.devices`` config name recommended for ``variant_id``."""
    return recommendation(path, variant_id)["config"]


def lite_config(path, variant_id: str):
    """``(megenginelite.LiteConfig, threads)`` recommended for ``variant_id`` in ``path``."""
    import megenginelite as lite

    record = recommendation(path, variant_id)
    config = lite.LiteConfig(device_type=lite.LiteDeviceType.LITE_CPU)
    for field, value in record["options"].items():
        if not hasattr(config.options, field) or not isinstance(value, int):
            raise HarnessError(
                f"{path}: variant {variant_id!r}: {field}={value!r} is not an integer "
                "LiteOptions field"
            )
        setattr(config.options, field, value)
    return config, record["threads"]
