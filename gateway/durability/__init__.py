"""What keeps stored objects whole (docs/durability.md).

- ``repair``: moves a fragment to another miner, copied or rebuilt from k siblings,
  for the restoral orders the chain opens;
- ``scrub``: reads fragments back on a schedule and reports the damaged;
- ``recover``: rebuilds the gateway's index from the chain after its disk is lost.
"""
