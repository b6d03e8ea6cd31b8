"""verikv: a replicated key-value store whose consensus core is proven in Dafny.

The package is split by trust: `verikv.verified_core` wraps the Dafny-generated core
(it decides), `verikv.shim` moves bytes and checks the core's assumptions at run time,
`verikv.cluster` launches nodes, `verikv.jepsen` attacks them.
"""

__version__ = "0.1.0"
