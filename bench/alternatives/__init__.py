"""The designs people would otherwise pick, behind the same gRPC server stack."""
