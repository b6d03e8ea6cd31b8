"""Generated gRPC stubs for etcd's v3 API (from proto/verikv/etcdpb/*.proto, at build time).

`python -m verikv.build` (./dev build) generates kv_pb2, rpc_pb2 and
rpc_pb2_grpc here with Debian's grpc_tools; they are build products, not committed.
"""
