"""The deoss gateway (DESIGN.md §2): users' objects in, fragments on miners out.

- the two APIs: ``native/`` (docs/native-api.md) and ``s3/`` (docs/s3.md); both answer
  refusals from ``errors`` (facts, no HTTP) through their own error table, and share
  ``access_keys``, ``names``, ``conditional``, ``expect`` and ``streaming``;
- the object pipeline: ``objects`` (the service both APIs call) over ``upload`` and
  ``read``; ``codec`` (encryption and erasure coding), ``keywrap`` (data keys),
  ``transfer`` (placement and the miner protocol), ``index`` and ``records`` (what this
  gateway knows), ``sealed_meta`` (what it records on chain), ``tracker`` (deals on
  chain);
- ``durability/`` (docs/durability.md): repair, scrub, recovery;
- the process: ``app`` (open_gateway), ``config``, ``cli``, ``client``, ``devnet``,
  ``metrics``.
"""
