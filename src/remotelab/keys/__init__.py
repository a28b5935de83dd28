"""remotelab's keys, kept in the keys directory (``REMOTELAB_KEYS_DIR``, else ``keys`` in
the data directory), readable by their owner only.

- :mod:`remotelab.keys.files`: the directory and its private files;
- :mod:`remotelab.keys.signing`: the Ed25519 key that signs what the gateway accepted, and
  the public keys a worker trusts;
- :mod:`remotelab.keys.curve`: the CurveZMQ keys of the control channel and the stream.
"""
