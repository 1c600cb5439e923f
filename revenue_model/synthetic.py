"""A seeded generator of installs and their D7 revenue, shaped like the original data.

The original data set is not public. This generator reproduces what it was
documented to have: about 85% of users never pay; revenue is heavy-tailed
(the top 1% bring 40% or more) with whales concentrated in a few countries
(Peru, Saudi Arabia, Japan, Korea, the US); revenue depends on events,
country, device, acquisition source and how recent the OS is; platform and
source are spelled in mixed case; event_3 is missing for about a fifth of
users, more often for disengaged ones; regions are often empty; long tails of
rare countries and devices mean a new sample holds categories an old one
never saw.

Revenue is not a formula of the observed columns: two hidden traits per user
(engagement and willingness to pay) drive both the events and the spending,
and the events only show them through count noise. ``with_truth=True`` adds
the expected revenue and payer probability given those traits, an upper
bound on what any model of the observed columns can reach.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
from scipy.special import expit

# code: (share of installs, payer logit shift, log-spend shift, whale rate among payers, regions)
_COUNTRIES = {
    "US": (0.13, 0.35, 0.45, 0.030, ("California", "Texas", "New York", "Florida", "Illinois")),
    "BR": (0.12, -0.25, -0.35, 0.004, ("Sao Paulo", "Rio de Janeiro", "Minas Gerais", "Bahia")),
    "MX": (0.09, -0.10, -0.20, 0.006, ("Ciudad de Mexico", "Jalisco", "Nuevo Leon")),
    "PE": (0.05, 0.30, 0.55, 0.100, ("Lima", "Arequipa", "Cusco", "La Libertad")),
    "ES": (0.06, 0.10, 0.20, 0.010, ("Madrid", "Catalonia", "Andalusia", "Valencia")),
    "AR": (0.05, -0.30, -0.25, 0.004, ("Buenos Aires", "Cordoba", "Santa Fe")),
    "CO": (0.05, -0.20, -0.30, 0.004, ("Bogota", "Antioquia", "Valle del Cauca")),
    "CL": (0.04, 0.00, 0.10, 0.008, ("Santiago", "Valparaiso")),
    "IN": (0.10, -0.90, -0.90, 0.001, ("Maharashtra", "Karnataka", "Delhi", "Tamil Nadu")),
    "ID": (0.06, -0.60, -0.70, 0.002, ("Jakarta", "West Java", "East Java")),
    "PH": (0.04, -0.40, -0.50, 0.003, ("Metro Manila", "Cebu")),
    "TR": (0.04, -0.30, -0.40, 0.003, ("Istanbul", "Ankara", "Izmir")),
    "DE": (0.03, 0.25, 0.35, 0.012, ("Bavaria", "Berlin", "Hesse")),
    "GB": (0.03, 0.30, 0.40, 0.015, ("England", "Scotland", "Wales")),
    "JP": (0.02, 0.50, 0.80, 0.050, ("Tokyo", "Osaka", "Kanagawa")),
    "KR": (0.02, 0.40, 0.70, 0.040, ("Seoul", "Busan", "Gyeonggi")),
    "SA": (0.02, 0.40, 0.90, 0.100, ("Riyadh", "Makkah", "Eastern Province")),
}
_TAIL_COUNTRY_SHARE = 0.05  # installs from many rare countries

# name: (share of paid installs, payer logit shift, log-spend shift, iOS only)
_SOURCES = {
    "Facebook Ads": (0.20, 0.10, 0.05, False),
    "Google Ads": (0.18, 0.05, 0.00, False),
    "Unity Ads": (0.12, -0.20, -0.10, False),
    "AppLovin": (0.12, 0.00, 0.10, False),
    "ironSource": (0.10, -0.10, -0.05, False),
    "TikTok Ads": (0.10, -0.15, -0.15, False),
    "Apple Search Ads": (0.08, 0.35, 0.20, True),
    "Mintegral": (0.05, -0.40, -0.30, False),
    "Moloco": (0.05, 0.05, 0.10, False),
}
_ORGANIC_SHARE = 0.40

# family: (share within its platform, payer logit shift, log-spend shift)
_IOS_DEVICES = {"Apple iPhone": (0.86, 0.10, 0.15), "Apple iPad": (0.14, 0.20, 0.35)}
_ANDROID_DEVICES = {
    "Samsung Galaxy": (0.34, 0.10, 0.10), "Xiaomi Redmi": (0.15, -0.15, -0.15),
    "Motorola Moto": (0.12, -0.10, -0.10), "Huawei": (0.08, -0.05, -0.05),
    "Google Pixel": (0.05, 0.25, 0.25), "Oppo": (0.08, -0.15, -0.20),
    "Vivo": (0.07, -0.15, -0.20), "Realme": (0.05, -0.20, -0.20),
}
_TAIL_DEVICE_SHARE = 0.06
_OS_MAJORS = {"ios": np.arange(13, 19), "android": np.arange(8, 16)}

_WHALE_LOG_LIFT = 2.0  # whales spend e^2 (about 7x) more than other payers like them


def generate_users(rows: int, seed: int = 0, *, with_install_date: bool = True,
                   weeks: int = 8, end_date: str = "2026-10-31",
                   with_truth: bool = False) -> pd.DataFrame:
    """Return ``rows`` synthetic installs with the contract's columns and ``revenue`` (USD)."""
    rng = np.random.default_rng(seed)
    n = int(rows)
    country = _draw_countries(rng, n)
    known = np.isin(country, list(_COUNTRIES))
    pick = lambda table, col: np.array([table[c][col] if k else _tail_default(col)  # noqa: E731
                                        for c, k in zip(country, known)], dtype=float)
    c_payer, c_spend, c_whale = pick(_COUNTRIES, 1), pick(_COUNTRIES, 2), pick(_COUNTRIES, 3)

    ios_share = np.where(np.isin(country, ["US", "JP", "GB", "KR", "SA", "DE"]), 0.6, 0.3)
    is_ios = rng.random(n) < ios_share
    source, s_payer, s_spend = _draw_sources(rng, is_ios)
    device, d_payer, d_spend = _draw_devices(rng, is_ios)
    os_version, recency = _draw_os(rng, is_ios)

    # Hidden traits: engagement and willingness to pay, correlated.
    engagement = rng.standard_normal(n)
    wallet = 0.4 * engagement + np.sqrt(1 - 0.4 ** 2) * rng.standard_normal(n)

    event_1 = rng.negative_binomial(2, 2 / (2 + np.exp(2.6 + 0.7 * engagement)))
    event_2 = rng.negative_binomial(3, 3 / (3 + np.exp(0.3 + 0.5 * engagement + 0.6 * wallet)))
    event_3 = np.round(np.exp(1.0 + 0.5 * engagement + 0.4 * wallet + 0.5 * rng.standard_normal(n)), 3)
    event_3_missing = rng.random(n) < expit(-1.8 - 0.9 * engagement)
    event_3 = np.where(event_3_missing, np.nan, event_3)

    payer_logit = (-2.55 + c_payer + s_payer + d_payer + 0.5 * recency
                   + 0.15 * is_ios + 0.5 * engagement + 1.1 * wallet)
    payer_probability = expit(payer_logit)
    payer = rng.random(n) < payer_probability

    log_mu = 1.0 + c_spend + s_spend + d_spend + 0.3 * recency + 0.55 * wallet + 0.15 * engagement
    log_sigma = 0.8 + 0.2 * is_ios
    whale_rate = np.clip(c_whale * np.exp(0.8 * wallet), 0, 0.5)
    whale = rng.random(n) < whale_rate
    log_revenue = log_mu + log_sigma * rng.standard_normal(n) + np.where(whale, _WHALE_LOG_LIFT, 0.0)
    revenue = np.where(payer, np.round(np.exp(log_revenue), 2), 0.0)
    revenue = np.where(payer, np.maximum(revenue, 0.99), 0.0)  # the cheapest in-app purchase

    frame = pd.DataFrame({
        "user_id": [f"u{seed}-{i}" for i in range(n)],
        "country": _mixed_case_country(rng, country),
        "country_region": _draw_regions(rng, country, known),
        "source": _messy_source(rng, source),
        "platform": _mixed_case_platform(rng, is_ios),
        "device_family": device,
        "os_version": os_version,
        "event_1": event_1.astype(float),
        "event_2": event_2.astype(float),
        "event_3": event_3,
        "revenue": revenue,
    })
    if with_install_date:
        days = rng.integers(0, 7 * weeks, n)
        frame["install_date"] = pd.Timestamp(end_date) - pd.to_timedelta(days, unit="D")
    if with_truth:
        payer_mean = np.exp(log_mu + log_sigma ** 2 / 2) * (1 + whale_rate * (np.exp(_WHALE_LOG_LIFT) - 1))
        frame["true_payer_probability"] = payer_probability
        frame["true_expected_revenue"] = payer_probability * payer_mean
    return frame


def _tail_default(col: int):
    return {1: -0.2, 2: -0.2, 3: 0.003}[col]


def _draw_countries(rng, n):
    codes = list(_COUNTRIES)
    shares = np.array([_COUNTRIES[c][0] for c in codes])
    shares = shares / shares.sum() * (1 - _TAIL_COUNTRY_SHARE)
    # The tail: two-letter codes with Zipf-like weights; each sample sees a different subset.
    tail = [a + b for a in string.ascii_uppercase for b in string.ascii_uppercase
            if a + b not in _COUNTRIES]
    tail_weights = 1.0 / np.arange(1, len(tail) + 1) ** 1.1
    tail_weights = tail_weights / tail_weights.sum() * _TAIL_COUNTRY_SHARE
    pool = np.array(codes + tail, dtype=object)
    return rng.choice(pool, size=n, p=np.concatenate([shares, tail_weights]))


def _draw_sources(rng, is_ios):
    names = list(_SOURCES)
    n = len(is_ios)
    organic = rng.random(n) < _ORGANIC_SHARE
    source = np.empty(n, dtype=object)
    payer_shift, spend_shift = np.zeros(n), np.zeros(n)
    source[organic] = "Organic"
    for platform_ios in (True, False):
        rows = np.flatnonzero(~organic & (is_ios == platform_ios))
        allowed = [s for s in names if platform_ios or not _SOURCES[s][3]]
        p = np.array([_SOURCES[s][0] for s in allowed])
        chosen = rng.choice(np.array(allowed, dtype=object), size=len(rows), p=p / p.sum())
        source[rows] = chosen
        payer_shift[rows] = [_SOURCES[s][1] for s in chosen]
        spend_shift[rows] = [_SOURCES[s][2] for s in chosen]
    return source, payer_shift, spend_shift


def _draw_devices(rng, is_ios):
    n = len(is_ios)
    device = np.empty(n, dtype=object)
    payer_shift, spend_shift = np.zeros(n), np.zeros(n)
    for platform_ios, table in ((True, _IOS_DEVICES), (False, _ANDROID_DEVICES)):
        rows = np.flatnonzero(is_ios == platform_ios)
        names = list(table)
        p = np.array([table[d][0] for d in names])
        chosen = rng.choice(np.array(names, dtype=object), size=len(rows), p=p / p.sum())
        device[rows] = chosen
        payer_shift[rows] = [table[d][1] for d in chosen]
        spend_shift[rows] = [table[d][2] for d in chosen]
    # A long tail of small Android brands, some never seen before, and a few unknown devices.
    tail = np.flatnonzero(~is_ios & (rng.random(n) < _TAIL_DEVICE_SHARE))
    device[tail] = [f"Brand {x}" for x in rng.zipf(1.6, len(tail)) % 3000]
    payer_shift[tail], spend_shift[tail] = -0.25, -0.25
    device[rng.random(n) < 0.03] = None
    return device, payer_shift, spend_shift


def _draw_os(rng, is_ios):
    """OS version strings and recency in [0, 1] (1: the newest major)."""
    n = len(is_ios)
    version = np.empty(n, dtype=object)
    recency = np.zeros(n)
    for platform, rows in (("ios", np.flatnonzero(is_ios)), ("android", np.flatnonzero(~is_ios))):
        majors = _OS_MAJORS[platform]
        weights = np.linspace(1, 3, len(majors)) ** 2
        major = rng.choice(majors, size=len(rows), p=weights / weights.sum())
        minor = rng.integers(0, 7, len(rows))
        patch = rng.integers(0, 4, len(rows))
        version[rows] = [f"{a}.{b}" if p == 0 else (f"{a}" if p == 1 else f"{a}.{b}.{p}")
                         for a, b, p in zip(major, minor, patch)]
        recency[rows] = (major - majors[0]) / (majors[-1] - majors[0])
    unknown = rng.random(n) < 0.02
    version[unknown] = "unknown"
    recency[unknown] = 0.5
    return version, recency


def _draw_regions(rng, country, known):
    region = np.empty(len(country), dtype=object)
    for i, (c, k) in enumerate(zip(country, known)):
        region[i] = _COUNTRIES[c][4][rng.integers(len(_COUNTRIES[c][4]))] if k else ""
    # Regions are often not resolved: empty strings and missing values mean the same.
    empty = rng.random(len(country))
    region[empty < 0.15] = ""
    region[(empty >= 0.15) & (empty < 0.25)] = None
    return region


def _mixed_case_country(rng, country):
    lower = rng.random(len(country)) < 0.5
    return np.where(lower, np.char.lower(country.astype(str)), country.astype(str)).astype(object)


def _mixed_case_platform(rng, is_ios):
    u = rng.random(len(is_ios))
    ios = np.where(u < 0.6, "iOS", np.where(u < 0.85, "ios", "IOS"))
    android = np.where(u < 0.6, "Android", np.where(u < 0.9, "android", "ANDROID"))
    return np.where(is_ios, ios, android).astype(object)


def _messy_source(rng, source):
    u = rng.random(len(source))
    out = source.astype(object).copy()
    lower = u < 0.10
    out[lower] = [s.lower() for s in out[lower]]
    upper = (u >= 0.10) & (u < 0.13)
    out[upper] = [s.upper() for s in out[upper]]
    return out
