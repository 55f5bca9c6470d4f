"""Generated from proto/ceir/v1 by `make proto`. Do not edit."""
