"""The semantic tier's hit rate and precision on the labelled pairs, per δ and per fixed threshold.

    cd benchmarks && ../.venv/bin/python cache_precision.py [--pairs FILE] [--write]

Every distinct cached question of evals/paraphrase.jsonl goes into one index (the
real MiniLM embeddings, as a partition would hold them); each new question gets
what the tier would serve: the best candidate the verifier does not veto. Printed:

* per δ, the threshold fitted on one half of the cached questions and measured
  on the other (both halves, so nothing is measured on what it was fitted to):
  paraphrase hit rate, precision, error rate, and whether the error stayed ≤ δ;
* the same for the threshold fitted on the whole set (what graphops ships);
* per fixed threshold (0.80 … 0.95), with and without the verifier: what a
  static threshold gives, for comparison;
* the verifier's vetoes per kind of pair.

``--write`` writes the whole set's points to src/graphops/cache/minilm_points.json,
the calibration graphops ships for MiniLM.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from graphops.cache.calibrate import (
    MINILM_POINTS,
    cross_validated,
    load_pairs,
    points,
    report,
    served,
)
from graphops.cache.decide import threshold_for
from graphops.cache.verify import Verifier
from graphops.models import make_embeddings
from graphops.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DELTAS = (0.005, 0.01, 0.02, 0.05)
FIXED = (0.80, 0.85, 0.90, 0.93, 0.95)


def row(*cells: object) -> None:
    """One markdown table row."""
    print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=str(ROOT / "evals" / "paraphrase.jsonl"))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    pairs = load_pairs(args.pairs)
    embeddings = make_embeddings(load_settings())
    results = served(pairs, embeddings.embed_documents, Verifier())
    plain = served(pairs, embeddings.embed_documents, Verifier(checks=frozenset()))
    kinds = Counter(p.kind for p in pairs)
    print(f"{len(pairs)} pairs: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"{len({p.cached for p in pairs})} distinct cached questions in one index\n")

    row(
        "δ",
        "threshold (whole set)",
        "held-out half",
        "threshold",
        "paraphrases hit",
        "precision",
        "error",
        "≤ δ",
    )
    print("|---|---|---|---|---|---|---|---|")
    for delta in DELTAS:
        whole = threshold_for(points(results), delta)
        for half, r in enumerate(cross_validated(results, delta)):
            ok = "yes" if r.error_rate <= delta else "NO"
            row(
                f"{delta:g}",
                f"{whole:.3f}",
                half + 1,
                f"{r.threshold:.3f}",
                f"{r.hit_rate:.1%}",
                f"{r.precision:.1%}",
                f"{r.error_rate:.1%}",
                ok,
            )
    print("\nWhole set at the shipped thresholds (fitted on it: an optimistic view):\n")
    print("| δ | threshold | paraphrases hit | precision | served | wrong |")
    print("|---|---|---|---|---|---|")
    for delta in DELTAS:
        r = report(results, threshold_for(points(results), delta))
        row(
            f"{delta:g}",
            f"{r.threshold:.3f}",
            f"{r.hit_rate:.1%}",
            f"{r.precision:.1%}",
            r.served,
            r.wrong,
        )
    print("\nFixed thresholds (whole set):\n")
    print("| threshold | verifier | paraphrases hit | precision | served | wrong |")
    print("|---|---|---|---|---|---|")
    for t in FIXED:
        for name, rs in (("no", plain), ("yes", results)):
            r = report(rs, t)
            row(f"{t:.2f}", name, f"{r.hit_rate:.1%}", f"{r.precision:.1%}", r.served, r.wrong)
    verifier = Verifier()
    vetoed: Counter[str] = Counter()
    for p in pairs:
        if verifier.conflict(p.cached, p.query) is not None:
            vetoed[p.kind] += 1
    print("\nVerifier vetoes of the pair itself, per kind:\n")
    print("| kind | pairs | vetoed |")
    print("|---|---|---|")
    for kind, n in sorted(kinds.items()):
        print(f"| {kind} | {n} | {vetoed[kind] / n:.0%} |")
    if args.write:
        path = ROOT / "src" / "graphops" / "cache" / MINILM_POINTS
        data = {
            "source": "evals/paraphrase.jsonl",
            "embeddings": "all-MiniLM-L6-v2 (graphops local)",
            "points": [[round(s, 6), c] for s, c in points(results)],
        }
        path.write_text(json.dumps(data) + "\n", encoding="utf-8")
        print(f"\nwrote {len(data['points'])} points to {path}")


if __name__ == "__main__":
    main()
