"""The gateway's Prometheus metrics (docs/native-api.md §8, ``GET /metrics``).

Labels never hold accounts, names, keys, buckets or fids: only route templates, S3
operation names, methods, statuses, error names and segment health, so the series count
stays bounded whoever calls.
"""

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["REQUIRED_METRICS", "GatewayMetrics"]

# Every family a serving gateway exposes, as the text format names it (a counter with
# its _total): docs/native-api.md §8 describes each, tests check each is there.
REQUIRED_METRICS = (
    "deoss_native_requests_total",
    "deoss_native_request_seconds",
    "deoss_native_auth_refusals_total",
    "deoss_upload_bytes_total",
    "deoss_download_bytes_total",
    "deoss_replay_cache_entries",
    "deoss_resume_sessions",
    "deoss_fragments_reported_total",
    "deoss_s3_requests_total",
    "deoss_s3_request_seconds",
    "deoss_repair_orders_claimed_total",
    "deoss_repair_orders_completed_total",
    "deoss_repair_orders_failed_total",
    "deoss_repair_bytes_rebuilt_total",
    "deoss_segments",
    "deoss_scrub_fragments_checked_total",
    "deoss_scrub_fragments_bad_total",
    "deoss_tracker_pending_declarations",
    "deoss_tracker_unpaid_objects",
    "deoss_tracker_oldest_pending_seconds",
)


class _Readings(Collector):
    """Gauges and counters read when scraped, from whoever owns the figure."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.labelled: dict[str, tuple[str, str, Callable[[], Mapping[str, float]]]] = {}
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, read) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=read())
        for name, (help_text, label, read_all) in self.labelled.items():
            family = GaugeMetricFamily(name, help_text, labels=[label])
            for value, reading in read_all().items():
                family.add_metric([value], reading)
            yield family
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
        self.s3_requests = Counter(
            "deoss_s3_requests",
            "S3 API requests, by operation and status",
            ["operation", "status"],
            registry=self.registry,
        )
        self.s3_seconds = Histogram(
            "deoss_s3_request_seconds",
            "S3 API request time, to the end of a streamed answer",
            ["operation"],
            registry=self.registry,
        )
        self._readings = _Readings()
        self.registry.register(self._readings)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge whose value ``read`` gives at each scrape."""
        self._readings.gauges[name] = (help_text, read)

    def gauges(
        self, name: str, help_text: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """A gauge with one label: ``read`` gives {label value: value} at each scrape (a
        bounded set of label values, each given every time)."""
        self._readings.labelled[name] = (help_text, label, read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (``read`` never decreases), read at each scrape."""
        self._readings.counters[name] = (help_text, read)
