"""Kubernetes: the official client behind a thread boundary, StatefulSet and Pod operations, UID checks and the pre-/post-sync hooks. May import commands' base modules only."""
