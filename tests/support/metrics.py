"""Scraping a server's Prometheus endpoint in tests."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "scrape", "value"]

# (sample name, its labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape_sync(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> Samples:
    """Every sample ``/metrics`` on 127.0.0.1:``port`` answers with."""
    return await asyncio.to_thread(_scrape_sync, port)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series was never created."""
    return samples.get((name, frozenset(labels.items())), 0.0)
