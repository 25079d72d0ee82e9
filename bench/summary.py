"""Print every benchmark's ratio against its reference from bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def main() -> None:
    xrd = _load("xrd")["timing"]["all"]
    print(
        f"pattern simulation: vectorised {xrd['speed_ratio']:.1f}x pymatgen per core "
        f"({xrd['structures']} structures)"
    )
    train = _load("train")
    for case, result in train["cases"].items():
        if "ratio" in result:
            print(
                f"training input pipeline, {case}: {result['ratio']:.2f} of the random-tensor "
                f"ceiling ({result['samples_per_second']:.0f} samples/s, {train['device']})"
            )
    images = _load("images")
    for size in ("64x64", "224x224"):
        result = images[size]
        print(
            f"image store {size}: PNG takes {result['png_to_array_write_ratio']:.1f}x the array "
            f"store to write, {result['png_to_array_read_ratio']:.0f}x to read"
        )
    scaling = _load("scaling")
    for run in scaling["runs"]:
        print(
            f"scaling: {run['stage']} of {run['n']} structures, {run['n_jobs']} workers: "
            f"{run['wall_s']} s, peak {run['peak_pss_sum_mib']} MiB (PSS)"
        )
    for count, ratio in scaling["patterns_speed_up"]["by_count"].items():
        print(f"scaling: patterns stage at 2 workers, {ratio:.2f}x 1 worker ({count} structures)")
    predict = _load("predict")
    print(
        f"predict: one file {predict['single_file_seconds']} s; batch "
        f"{predict['batch_patterns_per_second']} patterns/s, "
        f"{predict['batch_to_in_memory_ratio']:.2f} of in-memory ({predict['engine']})"
    )


if __name__ == "__main__":
    main()
