"""A challenge's outcome from its two parts (docs/console.md §4.5)."""

from gateway.console.network import outcome


def test_a_challenges_outcome() -> None:
    def of(service: str, idle: str) -> str:
        return outcome({"service_status": service, "idle_status": idle})

    assert of("passed", "passed") == of("none", "passed") == of("passed", "none") == "passed"
    assert of("open", "failed") == "open" and of("passed", "open") == "open"
    assert of("failed", "passed") == of("missed", "failed") == "failed"
    assert of("missed", "passed") == "missed"
