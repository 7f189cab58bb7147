"""Peer policy engines (OPA, regorus, Cedar, Casbin) for the policy-engine benchmark."""
