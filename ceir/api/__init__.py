"""The gRPC face of the register: thin servicers, conversions, the server."""
