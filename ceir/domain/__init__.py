"""The register's domain: identifiers, lists, decision rules, permissions.

Nothing here imports gRPC, protobuf or SQLAlchemy.
"""
