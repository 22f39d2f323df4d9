"""The PET protocol as a library: pure, synchronous, no I/O.

Bytes in, typed objects out, and back: keys and signatures, eligibility, PET messages and
their multipart chunks, the bincode bodies of the HTTP API, and masking (mask derivation,
aggregation, unmasking). Everything that waits (HTTP, Redis, timers) lives above this layer.
"""
