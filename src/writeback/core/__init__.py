"""The pure core: values, scope, mapping, desired state, planning, safety, rules, expressions, ports.

Nothing here touches a network, a disk or a clock (import-linter contracts in pyproject.toml).
"""
