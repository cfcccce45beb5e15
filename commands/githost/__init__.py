"""Git hosts for rollback by revert: the GitHost port, the three-way merge, GitHub (github/) and GitLab implementations, and the factory above them. May import commands' base modules only."""
