"""The Objectron and tf.train.Example messages the converter reads, and their generated Python classes.

The `.proto` files state the wire contract (message names, field numbers and types as Google's Objectron
schema and TensorFlow's example.proto publish them) in this project's own package, so nothing clashes with an
installed Objectron or TensorFlow. The `*_pb2.py` files are generated from them, never edited; after changing
a `.proto`, regenerate from the repository root with the pinned toolchain (requirements-dev.txt):

  make protos

which runs `python -m grpc_tools.protoc --proto_path=. --python_out=. centerpose_jax/objectron/proto/*.proto`.
tests/objectron/test_proto.py fails when a checked-in file differs from what that command produces.
"""
