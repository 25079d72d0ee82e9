"""Benchmark how the download and patterns stages grow with the number of structures: wall
time and peak memory of `xrdsym download` and `xrdsym patterns` at each count.

    python bench/scaling.py --counts 1000 10000 --out bench/results/scaling.json

Each stage runs as the pipeline runs it, through the command line, in a process of its own,
with a copy of params.yaml (``--params``) in which only source, download.cif_dir, n_jobs and
dask_scheduler (null: local worker processes) are changed. While
it runs, the resident memory (RSS) of its process and of all its worker processes is polled
every ``--poll-s`` seconds and the largest sum kept; so is the proportional set size (PSS),
which counts pages shared by forked workers once. The kernel's own peak (ru_maxrss, of the
largest single process) is recorded too: it misses nothing between polls.

Inputs are made from the pipeline's structures (data/structures/structures.jsonl.gz, 5,470
synthetic crystals), repeated until there are N: copy k > 0 of a structure has its elements
relabelled by a random permutation of download.synthetic.elements (seeded by k), which keeps
its symmetry and cell (so the work its analysis takes) but gives it another formula, so it is not a
duplicate (small lattice strains would be: StructureMatcher scales volumes and allows 20 % on
lengths). The download stage reads them as N CIF files (source cif_dir, params' n_jobs); the
patterns stage reads N records written directly as structures.jsonl.gz, once per worker count
in ``--jobs``. The results are extrapolated to ``--extrapolate-to`` structures from the two
largest counts (see :func:`extrapolate`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

from xrdsym.io import read_jsonl_gz, write_json, write_jsonl_gz
from xrdsym.sources import StructureRecord
from xrdsym.stages.download import STRUCTURES_FILE

MIB = 2**20


def relabelled_records(
    base: list[dict[str, Any]], n: int, elements: list[str]
) -> Iterator[dict[str, Any]]:
    """``n`` records: ``base`` in order, then copies with their elements relabelled."""
    for i in range(n):
        copy, index = divmod(i, len(base))
        if copy == 0:
            yield base[index]
            continue
        permutation = np.random.default_rng(copy).permutation(elements)
        mapping = dict(zip(elements, map(str, permutation), strict=True))
        record = StructureRecord.from_json(base[index])
        structure = record.structure.copy()
        present = {element.symbol for element in structure.composition.elements}
        structure.replace_species({e: mapping[e] for e in present if e in mapping})
        yield StructureRecord(
            f"{record.id}-copy{copy}", record.source, structure, record.meta
        ).to_json()


def write_inputs(records: Iterable[dict[str, Any]], folder: Path) -> int:
    """Every record as ``folder/cifs/<number>.cif`` and in ``folder/structures.jsonl.gz``."""
    (folder / "cifs").mkdir(parents=True)

    def written() -> Iterator[dict[str, Any]]:
        for i, data in enumerate(records):
            structure = StructureRecord.from_json(data).structure
            structure.to(filename=str(folder / "cifs" / f"{i:07d}.cif"))
            yield data

    return write_jsonl_gz(folder / STRUCTURES_FILE, written())


def inputs_of_count(everything: Path, n: int, folder: Path) -> None:
    """The first ``n`` inputs: ``folder/cifs`` (links to the CIFs) and
    ``folder/structures/structures.jsonl.gz``."""
    (folder / "cifs").mkdir(parents=True)
    for path in sorted((everything / "cifs").iterdir())[:n]:
        (folder / "cifs" / path.name).symlink_to(path)
    records = itertools.islice(read_jsonl_gz(everything / STRUCTURES_FILE), n)
    write_jsonl_gz(folder / "structures" / STRUCTURES_FILE, records)


def _tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """RSS and PSS (bytes) summed over ``root`` and all its descendants, and their number."""
    rss = pss = 0
    tree = [root, *root.children(recursive=True)]
    for member in tree:
        try:
            memory = member.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a worker that has just ended
        rss += memory.rss
        pss += memory.pss
    return rss, pss, len(tree)


def measure(command: list[str], log: Path, poll_s: float) -> dict[str, Any]:
    """Run ``command``; its wall time, peak memory and the last line it printed."""
    load_before = os.getloadavg()[0]
    peak_rss = peak_pss = most_processes = 0
    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        # wait4, not Popen.poll: it also gives the kernel's peak RSS of the finished process
        # (ru_maxrss, KiB on Linux: the largest of the process and the workers it waited for).
        while not (finished := os.wait4(process.pid, os.WNOHANG))[0]:
            try:
                rss, pss, processes = _tree_memory(root)
            except psutil.NoSuchProcess:  # ended between wait4 and the poll
                continue
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            most_processes = max(most_processes, processes)
            time.sleep(poll_s)
    wall_s = time.perf_counter() - start
    _, status, usage = finished
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    if process.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)}: exit status {process.returncode}:\n" + "\n".join(lines[-10:])
        )
    return {
        "wall_s": round(wall_s, 1),
        "peak_rss_sum_mib": round(peak_rss / MIB),
        "peak_pss_sum_mib": round(peak_pss / MIB),
        "peak_rss_largest_process_mib": round(usage.ru_maxrss / 1024),
        "most_processes": most_processes,
        "load_average_1_min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "last_line": lines[-1] if lines else "",
    }


def write_params(
    original: Path, path: Path, *, n_jobs: int, cif_dir: Path | None = None, **changes: Any
) -> None:
    """The params file ``original`` with some top-level keys changed, and download.cif_dir if
    given; the stages run on local worker processes (dask_scheduler: null)."""
    params = yaml.safe_load(original.read_text())
    params.update(changes, n_jobs=n_jobs, dask_scheduler=None)
    if cif_dir is not None:
        params["download"]["cif_dir"] = str(cif_dir)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def xrdsym(stage: str, params: Path, *arguments: Path | str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xrdsym.cli",
        stage,
        "--params",
        str(params),
        *map(str, arguments),
    ]


def extrapolate(runs: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    """Time and memory at ``n`` structures from the two largest counts of one stage and
    worker count (None from a single count): memory along the straight line through them;
    time so too (a fixed start-up plus a time per structure) and by the power law through
    them, whose exponent says how far from linear the growth is."""
    if len(runs) < 2:
        return None
    small, large = sorted(runs, key=lambda run: run["n"])[-2:]
    exponent = math.log(large["wall_s"] / small["wall_s"]) / math.log(large["n"] / small["n"])
    result = {"n": n, "extrapolated_from_n": [small["n"], large["n"]]}
    for key in ("wall_s", "peak_rss_sum_mib", "peak_pss_sum_mib"):
        per_structure = (large[key] - small[key]) / (large["n"] - small["n"])
        result[key] = round(large[key] + per_structure * (n - large["n"]))
    result |= {
        "wall_s_power_law": round(large["wall_s"] * (n / large["n"]) ** exponent),
        "time_exponent": round(exponent, 2),
    }
    return result


def run_download(folder: Path, params: Path, n_jobs: int, poll_s: float) -> dict[str, Any]:
    settings = folder / "download.yaml"
    write_params(params, settings, source="cif_dir", cif_dir=folder / "cifs", n_jobs=n_jobs)
    out, metrics = folder / "downloaded", folder / "download.json"
    command = xrdsym("download", settings, "--out", out, "--metrics", metrics)
    result = measure(command, folder / "download.log", poll_s)
    written = json.loads(metrics.read_text())
    shutil.rmtree(out)
    return {**result, "structures_kept": written.get("n_structures")}


def run_patterns(folder: Path, params: Path, n_jobs: int, poll_s: float) -> dict[str, Any]:
    settings = folder / f"patterns-{n_jobs}.yaml"
    write_params(params, settings, n_jobs=n_jobs)
    out, metrics = folder / f"patterns-{n_jobs}", folder / f"patterns-{n_jobs}.json"
    command = xrdsym(
        "patterns",
        settings,
        "--structures",
        folder / "structures",
        "--out",
        out,
        "--metrics",
        metrics,
    )
    result = measure(command, folder / f"patterns-{n_jobs}.log", poll_s)
    written = json.loads(metrics.read_text())
    shutil.rmtree(out)
    return {**result, "patterns_written": written.get("n_patterns")}


def speed_ups(runs: list[dict[str, Any]], jobs: list[int]) -> dict[str, float]:
    """Wall time of the patterns stage at the fewest workers over that at the most, by count."""
    walls = {(r["n"], r["n_jobs"]): r["wall_s"] for r in runs if r["stage"] == "patterns"}
    counts = sorted({n for n, _ in walls})
    fewest, most = min(jobs), max(jobs)
    return {str(n): round(walls[n, fewest] / walls[n, most], 2) for n in counts if fewest != most}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="patterns n_jobs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scaling.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--structures", type=Path, default=Path("data/structures") / STRUCTURES_FILE
    )
    parser.add_argument("--extrapolate-to", type=int, default=100_000)
    parser.add_argument("--poll-s", type=float, default=0.1, help="seconds between polls")
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    counts = sorted(args.counts)
    base = list(read_jsonl_gz(args.structures))
    elements = params["download"]["synthetic"]["elements"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="xrdsym-scaling-") as tmp:
        everything = Path(tmp) / "all"
        print(f"writing {counts[-1]} structures as CIFs and JSON lines", flush=True)
        write_inputs(relabelled_records(base, counts[-1], elements), everything)
        for n in counts:
            folder = Path(tmp) / str(n)
            inputs_of_count(everything, n, folder)
            measured = [("download", params["n_jobs"], run_download)]
            measured += [("patterns", jobs, run_patterns) for jobs in args.jobs]
            for stage, jobs, how in measured:
                runs.append(
                    {
                        "stage": stage,
                        "n": n,
                        "n_jobs": jobs,
                        **how(folder, args.params, jobs, args.poll_s),
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
    groups = dict.fromkeys((r["stage"], r["n_jobs"]) for r in runs)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "note": "memory in MiB, of the stage's process and its workers together (RSS polled "
        "every poll_s; PSS counts pages shared by forked workers once); the cores are shared "
        "with others: see the load averages",
        "poll_s": args.poll_s,
        "inputs": {
            "from": str(args.structures),
            "base_structures": len(base),
            "copies": "elements relabelled by a random permutation (seeded by the copy number)",
            "download": "source cif_dir, one CIF per structure",
            "patterns": "structures.jsonl.gz written directly",
        },
        "runs": runs,
        "patterns_speed_up": {
            "n_jobs": [min(args.jobs), max(args.jobs)],
            "by_count": speed_ups(runs, args.jobs),
        },
        "extrapolated": {
            f"{stage} n_jobs={jobs}": extrapolate(
                [r for r in runs if (r["stage"], r["n_jobs"]) == (stage, jobs)], args.extrapolate_to
            )
            for stage, jobs in groups
        },
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
