"""Who is calling and what they may do: principals, API tokens, OIDC bearer tokens."""
