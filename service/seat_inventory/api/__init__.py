"""gRPC entry points: servicers that translate, error mapping, the server."""
