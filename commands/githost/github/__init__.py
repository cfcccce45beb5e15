"""GitHub: the REST/Git Data API client, revert through the Git Data API, GitHub App installation tokens, and the GitHost implementation."""
