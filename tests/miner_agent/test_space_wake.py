"""Which chain events wake a miner's space manager (MinerLoops._wakes_space): its own
space's, and replacements owed once they add up to an idle unit; never a crash on an
event whose ``miners`` is a count (EraRewarded killed a miner so)."""

from types import SimpleNamespace
from typing import Any

from miner_agent.loops import MinerLoops

ME, OTHER = "me", "other"


def _loops(unit: int = 100) -> Any:
    return SimpleNamespace(
        node=SimpleNamespace(address=ME), params=SimpleNamespace(idle_unit_size=unit), _owed_seen=0
    )


def _wakes(loops: Any, name: str, **data: Any) -> bool:
    return bool(MinerLoops._wakes_space(loops, {"name": name, "data": data}))


def test_events_about_this_miners_space_wake_it() -> None:
    loops = _loops()
    assert _wakes(loops, "FileRemoved", fid="f", miners=[OTHER, ME])
    assert _wakes(loops, "MinerStateChanged", miner=ME, state="positive")
    assert not _wakes(loops, "FileRemoved", fid="f", miners=[OTHER])
    assert not _wakes(loops, "EraRewarded", height=7, miners=3, reward=1)  # a count
    assert not _wakes(loops, "UploadDeclaration", fid="f", miners={ME: ["x"]})


def test_replacements_wake_it_once_they_make_a_whole_unit() -> None:
    loops = _loops(unit=100)
    assert not _wakes(loops, "ReplacementOwed", miner=ME, space=60)
    assert not _wakes(loops, "ReplacementOwed", miner=OTHER, space=60)
    assert _wakes(loops, "ReplacementOwed", miner=ME, space=60)
    assert not _wakes(loops, "ReplacementOwed", miner=ME, space=60)  # counted afresh
