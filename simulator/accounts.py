"""Accounts: the companies leads work at and customers are, with their firmographics.

Both the lead process (an account's industry and size shape a lead's fit) and the customer process
(industry shapes health; size sets contract value) read what is drawn here.
"""

from __future__ import annotations

import numpy as np

from simulator.config import DAY_NS, Calendar, SimulationConfig, categorical, cumulative

INDUSTRIES = (
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "media",
    "logistics",
)
INDUSTRY_P = np.array([0.22, 0.14, 0.12, 0.14, 0.12, 0.08, 0.08, 0.10])
# a lead's fit (simulator.leads) and a customer's mean health (simulator.churn), by industry
INDUSTRY_EFFECT = np.array([0.3, 0.2, 0.0, -0.1, -0.2, -0.3, 0.0, -0.1])
BAND_P = np.array([0.12, 0.25, 0.28, 0.20, 0.10, 0.05])  # by crm.contract.EMPLOYEE_BANDS
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
REGION_P = np.array([0.5, 0.3, 0.15, 0.05])
COUNTRIES = {
    "NA": ("US", "CA"),
    "EMEA": ("GB", "DE", "FR", "NL"),
    "APAC": ("AU", "SG", "IN", "JP"),
    "LATAM": ("BR", "MX"),
}


def draw_accounts(cfg: SimulationConfig, cal: Calendar, rng: np.random.Generator) -> dict:
    """Firmographics, customer flag, lead weight and missing-field draws of every account."""
    n = cfg.accounts
    industry = categorical(rng, cumulative(INDUSTRY_P)[None, :], np.zeros(n, dtype=int))
    band = categorical(rng, cumulative(BAND_P)[None, :], np.zeros(n, dtype=int))
    region = categorical(rng, cumulative(REGION_P)[None, :], np.zeros(n, dtype=int))
    created_ns = cal.start_ns - (rng.uniform(30, 1500, n) * DAY_NS).astype(np.int64)
    lead_weight = rng.lognormal(0.0, 0.8, n)
    customer = rng.random(n) < cfg.customer_share
    return {
        "n": n,
        "industry": industry,
        "band": band,
        "region": region,
        "created_ns": created_ns,
        "lead_weight": lead_weight / lead_weight.sum(),
        "customer": customer,
        "industry_missing": rng.random(n) < 0.04,
        "band_missing": rng.random(n) < 0.08,
        "region_missing": rng.random(n) < 0.02,
        "name_a": rng.integers(0, 40, n),
        "name_b": rng.integers(0, 12, n),
        "country_u": rng.random(n),
    }
