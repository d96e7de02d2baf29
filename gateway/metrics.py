"""The gateway's Prometheus metrics (docs/native-api.md §8, ``GET /metrics``).

Labels never hold accounts, names or fids: only route templates, methods, statuses and
error names, so the series count stays bounded whoever calls.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics"]


class _Readings(Collector):
    """Gauges and counters read when scraped, from whoever owns the figure."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, read) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=read())
        for name, (help_text, read) in self.counters.items():
            yield CounterMetricFamily(name, help_text, value=read())


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "deoss_native_requests",
            "Native API requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "deoss_native_request_seconds",
            "Native API request time, to the end of the answer",
            ["route"],
            registry=self.registry,
        )
        self.auth_refusals = Counter(
            "deoss_native_auth_refusals",
            "Signatures refused, by error",
            ["error"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "deoss_upload_bytes", "Object bytes stored", registry=self.registry
        )
        self.download_bytes = Counter(
            "deoss_download_bytes", "Object bytes served", registry=self.registry
        )
        self._readings = _Readings()
        self.registry.register(self._readings)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge whose value ``read`` gives at each scrape."""
        self._readings.gauges[name] = (help_text, read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (``read`` never decreases), read at each scrape."""
        self._readings.counters[name] = (help_text, read)
