"""Lead conversion: intent, the weekly hazard, each lead's clock, and the exact truth.

**Intent** decays weekly (half-life ≈ 2 weeks). The weekly conversion hazard is
``exp(eta + season(week)) × (b + intent)`` for ``lead_lifetime_weeks`` after creation; conversion
happens when the cumulative hazard passes the lead's own exponential clock ``E ~ Exp(1)``. Holding
every random draw fixed, removing a channel's (or a content item's) touches can only lower the
hazard, so the **counterfactual removal** truth is computed exactly by re-running the clock
(tables in :mod:`simulator.attribution_truth`).

The **true probability** that a lead converts within ``window_days`` of each weekly snapshot is
exact: the known part of the hazard is summed in closed form and the future touches are integrated
out with the Laplace functional of their Poisson process (tabulated per source, interest, stage and
content epoch).
"""

from __future__ import annotations

import numpy as np

from crm.contract import CHANNELS, INTERACTION_TYPES
from simulator.attribution_truth import removal_tables
from simulator.config import Calendar, Progress, SimulationConfig
from simulator.leads import SOURCES
from simulator.touches import (
    CHANNEL_WEIGHT,
    EPOCH_WEEKS,
    TYPE_WEIGHT,
    arrival_shape,
    channel_matrix,
    content_choice,
    lead_stage,
    type_matrix,
)

BASE_INTENT = 0.3  # hazard with no touches, relative to one unit of intent
INTENT_DECAY = float(np.exp(-7 / 21))  # per week
# grid of the future-touch tables: 2**e * (1 + j/16), e from GRID_EXP_MIN up to GRID_EXP_MAX
GRID_EXP_MIN, GRID_EXP_MAX = -30, 12
GRID_LEN = (GRID_EXP_MAX - GRID_EXP_MIN) * 16 + 1


def _intent(effect_sum: np.ndarray) -> np.ndarray:
    """Intent at the start of each week of age (columns 0..lifetime) from the touches before it:
    each week's effects, decayed by ``INTENT_DECAY`` per week."""
    intent = np.zeros((effect_sum.shape[0], effect_sum.shape[1] + 1))
    running = np.zeros(effect_sum.shape[0])
    for age in range(effect_sum.shape[1]):
        running = running * INTENT_DECAY + np.maximum(effect_sum[:, age], 0.0)
        intent[:, age + 1] = running
    return intent


class LeadProcess:
    """The lead conversion process: hazards, clocks, counterfactuals and exact truth."""

    def __init__(
        self,
        cfg: SimulationConfig,
        cal: Calendar,
        leads: dict,
        touches: dict,
        fit_shift: np.ndarray | None = None,
        channel_rate_change: dict[int, np.ndarray] | None = None,
    ):
        """The process of ``leads`` given their ``touches``.

        Args:
            cfg: sizes and seed.
            cal: the calendar.
            leads: from :func:`simulator.leads.draw_leads`.
            touches: every touch drawn, from :func:`simulator.touches.draw_touches` (with drift
                applied, :func:`simulator.drift.plant_drift`).
            fit_shift: added to each lead's fit ``eta`` in its hazard (conversion drift); the
                fit as drawn when None.
            channel_rate_change: channel → relative change of its touch rate in each calendar
                week (volume drift), which the truth integrates over future touches.
        """
        self.cfg, self.cal, self.leads, self.touches = cfg, cal, leads, touches
        self.life = cfg.lead_lifetime_weeks
        self.log_fit = leads["eta"] if fit_shift is None else leads["eta"] + fit_shift
        self.channel_rate_change = channel_rate_change or {}
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 99]))
        self.clock = rng.exponential(1.0, leads["n"])
        self._effect_sum: np.ndarray | None = None
        self.factual = self.conversion_age(self.effect_sum) > 0
        # removing touches only lowers the hazard, so only factual conversions can be lost
        self._of_converted = self.factual[touches["lead"]]

    @property
    def effect_sum(self) -> np.ndarray:
        """Sum of touch effects per lead (rows) and week of age (columns); built on demand."""
        if self._effect_sum is None:
            cell = self.touches["lead"].astype(np.int64) * self.life + self.touches["age"]
            self._effect_sum = np.bincount(
                cell, weights=self.touches["effect"], minlength=self.leads["n"] * self.life
            ).reshape(-1, self.life)
        return self._effect_sum

    def release(self) -> None:
        """Drop the cached effect sums (rebuilt on the next use) to keep peak memory low."""
        self._effect_sum = None

    def conversion_age(self, effect_sum: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Age in weeks (1..lifetime) at which each lead converts within the period, 0 if never."""
        rows = np.arange(self.leads["n"]) if rows is None else rows
        created = self.leads["created_week"][rows]
        ages = np.arange(1, self.life + 1)
        week = created[:, None] + ages[None, :]
        hazard = np.exp(self.log_fit[rows][:, None] + self.cal.season[week]) * (
            BASE_INTENT + _intent(effect_sum)[:, 1:]
        )
        hazard[week >= self.cal.weeks] = 0.0
        passed = np.cumsum(hazard, axis=1) >= self.clock[rows][:, None]
        hit = passed.any(axis=1)
        return np.where(hit, passed.argmax(axis=1) + 1, 0)

    def converted_without(self, remove: np.ndarray) -> np.ndarray:
        """Whether each lead converts within the period with the touches in ``remove`` removed.

        ``remove`` is a boolean mask over :attr:`touches` (all pre-drawn touches, including the
        ones after a factual conversion); every other random draw is held fixed.
        """
        converted = self.factual.copy()
        rows, still = self._without(remove)
        converted[rows] = still
        return converted

    def _without(self, remove: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Converted leads affected by removing the touches in ``remove``, and whether they still
        convert."""
        remove = remove & self._of_converted
        rows, inverse = np.unique(self.touches["lead"][remove], return_inverse=True)
        if len(rows) == 0:
            return rows, np.zeros(0, dtype=bool)
        removed = np.bincount(
            inverse * self.life + self.touches["age"][remove],
            weights=self.touches["effect"][remove],
            minlength=len(rows) * self.life,
        ).reshape(-1, self.life)
        return rows, self.conversion_age(self.effect_sum[rows] - removed, rows) > 0

    def counterfactual_truth(
        self, converted: np.ndarray, value: np.ndarray, content: dict, progress: Progress
    ) -> dict:
        """Conversions and revenue lost when each channel's, each item's and all touches go.

        Args:
            converted: whether each lead converted (factually).
            value: revenue each lead brought (its won opportunities).
            content: the content library, from :func:`simulator.touches.draw_content`.
            progress: not used.

        Returns:
            The truth tables of :func:`simulator.attribution_truth.removal_tables`; also sets
            ``conversions``, ``touch_attributed`` and ``touch_attributed_value`` for the summary.
        """

        def lost(remove: np.ndarray) -> tuple[int, float]:
            rows, still = self._without(remove)
            gone = converted[rows] & ~still
            return int(gone.sum()), float(value[rows][gone].sum())

        ch_rows = []
        for c, name in enumerate(CHANNELS):
            n_lost, v_lost = lost(self.touches["channel"] == c)
            ch_rows.append((name, float(CHANNEL_WEIGHT[c]), n_lost, v_lost))
        ct_rows = []
        order = np.argsort(self.touches["content"], kind="stable")
        bounds = np.searchsorted(self.touches["content"][order], np.arange(content["n"] + 1))
        for k in range(content["n"]):
            mask = np.zeros(len(order), dtype=bool)
            mask[order[bounds[k] : bounds[k + 1]]] = True
            n_lost, v_lost = lost(mask)
            ct_rows.append((f"CT{k + 1:04d}", n_lost, v_lost))
        all_rows, still = self._without(np.ones(len(self.touches["lead"]), dtype=bool))
        lost_all = converted[all_rows] & ~still
        self.touch_attributed = int(lost_all.sum())
        self.touch_attributed_value = float(value[all_rows][lost_all].sum())
        self.conversions = int(converted.sum())
        return removal_tables(ch_rows, ct_rows, self.touch_attributed, self.touch_attributed_value)

    def _future_tables(
        self, content: dict, channel: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """1 - E[exp(-e x)] over one future touch's effect, per (source, interest, stage, epoch).

        Tabulated on the grid ``2**e * (1 + j/16)``, so a lookup reads the float's bits. With
        ``channel``, only that channel's touches count (each weighted by P(channel | source)).
        """
        grid = np.ldexp(
            1.0 + (np.arange(GRID_LEN) % 16) / 16, GRID_EXP_MIN + np.arange(GRID_LEN) // 16
        )
        n_src, n_ep = len(SOURCES), content["n_epochs"]
        tables = np.zeros((n_src, 3, 3, n_ep, len(grid)))
        p_ch = channel_matrix()
        p_ty = type_matrix()
        for stage in range(3):
            for ep in range(n_ep):
                effects, weights = [], []  # atoms: effect and P(atom | source, interest)
                for c in range(len(CHANNELS)):
                    if channel is not None and c != channel:
                        continue
                    for t, type_name in enumerate(INTERACTION_TYPES):
                        p_t = p_ty[c, :, t]
                        if not p_t.any():
                            continue
                        base = CHANNEL_WEIGHT[c] * TYPE_WEIGHT[t]
                        p_content, item_p = content_choice(content, type_name, ep)
                        w = p_ch[:, c][:, None] * p_t[None, :]
                        if p_content < 1:
                            effects.append(np.array([base]))
                            weights.append((w * (1 - p_content))[..., None])
                        if p_content > 0:
                            items = np.flatnonzero(item_p > 0)
                            effects.append(
                                base
                                * content["quality"][items]
                                * content["stage_mult"][items, stage]
                            )
                            weights.append((w * p_content)[..., None] * item_p[items])
                e = np.concatenate(effects)
                wt = np.concatenate(weights, axis=-1)  # (src, z, atoms)
                g = -np.expm1(-e[:, None] * grid[None, :])
                tables[:, :, stage, ep, :] = wt @ g
        return grid, tables.reshape(-1, len(grid))

    def _calendar_tables(self, n_ep: int, horizon: int) -> dict[str, np.ndarray]:
        """Everything in the truth that depends only on (snapshot week, lead age)."""
        life, cal = self.life, self.cal
        n_w = cal.total - horizon - 1
        w = np.repeat(np.arange(n_w), life + 1)
        a = np.tile(np.arange(life + 1), n_w)
        js = np.arange(horizon + 1)
        alive = (a[:, None] + js[None, :]) <= life
        exp_s = cal.exp_season[w[:, None] + js[None, :]] * alive
        decay = INTENT_DECAY**js
        ms = np.arange(horizon)
        touch_age = a[:, None] + ms[None, :]
        out: dict[str, np.ndarray] = {
            "arrival": arrival_shape(touch_age)
            * cal.touch_season[w[:, None] + ms[None, :]]
            * (touch_age <= life - 1),
            "group": (
                lead_stage(touch_age).astype(np.int64) * n_ep
                + np.minimum((w[:, None] + ms[None, :]) // EPOCH_WEEKS, n_ep - 1)
            ),
        }
        for last in (horizon - 1, horizon):
            out[f"s0_{last}"] = exp_s[:, : last + 1].sum(axis=1)
            out[f"s1_{last}"] = (exp_s[:, : last + 1] * decay[: last + 1]).sum(axis=1)
            k = np.zeros((len(w), horizon))
            k_next = np.zeros(len(w))
            for m in range(last - 1, -1, -1):
                k_next = exp_s[:, m + 1] + INTENT_DECAY * k_next
                k[:, m] = k_next
            out[f"k_{last}"] = k
        return out

    def truth(self, converted_age: np.ndarray, content: dict, chunk: int = 250_000) -> dict:
        """Exact P(convert within window_days) at every weekly snapshot a lead is open."""
        cfg, cal, leads, life = self.cfg, self.cal, self.leads, self.life
        ages = np.arange(1, life + 1)
        week = leads["created_week"][:, None] + ages[None, :]
        conv = np.where(converted_age > 0, converted_age, life + 1)
        open_ = (week < cal.weeks) & (ages[None, :] <= conv[:, None])
        lead_idx, a_idx = np.nonzero(open_)
        lead_idx = lead_idx.astype(np.int32)
        a_idx = (a_idx + 1).astype(np.int16)
        del week, open_
        intent = _intent(self.effect_sum)
        _, tables = self._future_tables(content)
        flat = tables.ravel()
        horizon = cfg.window_weeks - 1  # whole weeks fully inside the window: 0..horizon-1
        tail_frac = (cfg.window_days - 7 * horizon) / 7
        n_ep = content["n_epochs"]
        cal_t = self._calendar_tables(n_ep, horizon)
        # volume drift: a channel's future touches at (1 + change) times its rate, week by week
        changed = [
            (change, self._future_tables(content, c)[1].ravel())
            for c, change in self.channel_rate_change.items()
        ]
        future_week = np.arange(horizon)

        out = np.empty(len(lead_idx))
        for lo in range(0, len(lead_idx), chunk):
            i = lead_idx[lo : lo + chunk].astype(np.int64)
            a = a_idx[lo : lo + chunk].astype(np.int64)
            wa = (leads["created_week"][i] + a) * (life + 1) + a
            eta = np.exp(self.log_fit[i])
            cur = intent[i, a]
            base = (leads["source"][i] * 3 + leads["interest"][i]) * 3 * n_ep
            rho = leads["rate"][i][:, None] * cal_t["arrival"][wa]
            if changed:  # the calendar week of each future week of the window
                weeks = (leads["created_week"][i] + a)[:, None] + future_week[None, :]
            group = (base[:, None] + cal_t["group"][wa]) * GRID_LEN
            log_surv = []
            for last in (horizon - 1, horizon):
                known = eta * (
                    BASE_INTENT * cal_t[f"s0_{last}"][wa] + cur * cal_t[f"s1_{last}"][wa]
                )
                x = eta[:, None] * cal_t[f"k_{last}"][wa]
                future = (rho * _lookup(flat, group, x)).sum(axis=1)
                for change, flat_c in changed:
                    future += (rho * change[weeks] * _lookup(flat_c, group, x)).sum(axis=1)
                log_surv.append(-known - future)
            s_whole, s_tail = np.exp(log_surv[0]), np.exp(log_surv[1])
            out[lo : lo + chunk] = (1 - s_whole) + tail_frac * (s_whole - s_tail)
        del intent
        return {"lead": lead_idx, "age": a_idx, "p": out}


def _lookup(flat: np.ndarray, offset: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of tables on the grid ``2**e * (1 + j/16)``, read off float bits."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    pos = (bits >> 48) - ((1023 + GRID_EXP_MIN) << 4)
    frac = (bits & ((1 << 48) - 1)) * (1.0 / (1 << 48))
    inside = np.clip(pos, 0, GRID_LEN - 2)
    lo = flat[offset + inside]
    val = lo + frac * (flat[offset + inside + 1] - lo)
    below = pos < 0  # tiny x (including 0): the table is linear there
    val = np.where(below, flat[offset] * x * 2.0**-GRID_EXP_MIN, val)
    return np.where(pos > GRID_LEN - 2, flat[offset + GRID_LEN - 1], val)
