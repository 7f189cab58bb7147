"""Integrations of Verity with applications and their infrastructure.

Each integration is its own module, imported explicitly (``verity.integrations.postgres_rls``),
so that an application pays only for the integrations it uses.
"""
