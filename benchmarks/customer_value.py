"""Benchmark: lifetime value of CDNOW's customers, the sample and the whole master file.

Each file gets Fader, Hardie & Lee's protocol: BG/NBD and Gamma-Gamma fitted by maximum
likelihood on the first 39 weeks (1997-01-01 to 1997-09-30), the forecast scored on the next 39
weeks (to 1998-06-30) per customer beside the naive "same rate as before" forecast, in the same
run. Times: reading the file, fitting both models, the values and the holdout check, each in a
fresh process (the first fit compiles PyMC's functions; the time of a second fit in the same
process is given too).

Usage: ``python benchmarks/customer_value.py``. Writes ``benchmarks/results/customer_value.json``.
"""

from __future__ import annotations

from pathlib import Path

from _measure import measure, write

CDNOW = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cdnow"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def _run(path: Path) -> dict:
    return measure(f"""
import time
import pandas as pd
from crm.purchases import read_purchases
from training.customer_value import customer_values, fit_customer_value, holdout_check

t = time.perf_counter()
purchases = read_purchases({str(path)!r})
read_seconds = time.perf_counter() - t
t = time.perf_counter()
model = fit_customer_value(purchases, pd.Timestamp("1997-09-30"))
fit_seconds = time.perf_counter() - t
t = time.perf_counter()
again = fit_customer_value(purchases, pd.Timestamp("1997-09-30"))
refit_seconds = time.perf_counter() - t
t = time.perf_counter()
values = customer_values(model)
check = holdout_check(model, purchases, pd.Timestamp("1998-06-30"))
predict_seconds = time.perf_counter() - t
totals = check.customers[["actual", "model", "naive"]].sum()
RESULT = {{
    "purchases": len(purchases),
    "customers": len(model.summary),
    "repeat_customers": int((model.summary["frequency"] > 0).sum()),
    "parameters": {{k: round(v, 4) for k, v in model.parameters.items()}},
    "holdout_weeks": round(check.weeks, 3),
    "holdout_mean_absolute_error": check.mean_absolute_error,
    "holdout_repeat_purchases": {{k: round(float(v), 1) for k, v in totals.items()}},
    "cumulative_at_week_78": {{
        k: round(float(check.cumulative[k].iloc[-1]), 1) for k in ("actual", "model", "naive")
    }},
    "read_seconds": round(read_seconds, 2),
    "fit_seconds_first": round(fit_seconds, 2),
    "fit_seconds_again": round(refit_seconds, 2),
    "values_and_holdout_seconds": round(predict_seconds, 2),
}}
""")


def main() -> None:
    sample = _run(CDNOW / "CDNOW_sample.txt")
    sample["relative_to_published"] = {
        name: round(sample["parameters"][name] / published - 1, 4)
        for name, published in PUBLISHED.items()
    }
    master = _run(CDNOW / "CDNOW_master.txt")
    write(
        "customer_value",
        {
            "protocol": "maximum likelihood on 1997-01-01..1997-09-30; holdout 1997-10-01.."
            "1998-06-30 scored per customer (mean absolute error of repeat purchases)",
            "published": PUBLISHED,
            "sample": sample,
            "master": master,
        },
    )


if __name__ == "__main__":
    main()
