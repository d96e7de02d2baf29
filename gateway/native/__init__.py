"""The DeOSS-style native API (docs/native-api.md).

- ``app``: routes, middlewares (errors, metrics, Expect) and health;
- ``auth`` and ``replay_cache``: wallet-signature headers, each signature usable once;
- ``context``: what every handler shares; ``params``: the request parameters, checked;
- ``errors``: the envelope, and the one table of refusals;
- ``files``: upload, download, delete and listing of files;
- ``resume`` and ``resume_store``: resumable range upload, its routes and its spool;
- ``keys``: S3 access keys created and revoked with a wallet signature.
"""
