"""Write scikit-learn's bundled breast-cancer dataset as the demo's sample CSV.

Usage: ``python include/data/make_sample.py [OUT.csv]`` (default: ``breast_cancer.csv`` next to
this script). The data ships inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import os
import sys

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "breast_cancer.csv")


def make_sample(out: str = DEFAULT_OUT) -> str:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    # Identifier-safe names ("mean_radius") survive hyperparameter configs, CLI flags and formulas.
    frame.columns = [str(c).strip().replace(" ", "_") for c in frame.columns]
    frame["target"] = frame["target"].astype("int64")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # "\n" line endings keep the file byte-identical whichever OS regenerates it.
    frame.to_csv(out, index=False, lineterminator="\n")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = make_sample(args[0] if args else DEFAULT_OUT)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
