"""verikv.jepsen: Jepsen-style fault-injection tests for etcd-API key-value stores.

Layout: history (ops) -> workloads (what clients do) -> clients (etcd v3 gRPC) ->
watchers (the watch workload's Watch streams, the final history) -> drivers
(start/kill/pause/partition a 3-node etcd or verikv) -> net (namespaces + nftables
partitions) -> nemesis (fault schedule) -> runner (one run) -> checker (linearizability,
lost writes) and watch_checker (watch histories) -> report (HTML/PNG/JSON) -> cli
(`verikv jepsen`).
Nothing here may leave a process, namespace or firewall rule behind after a run.
"""
