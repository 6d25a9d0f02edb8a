"""Who is calling: doctor and operator accounts, passwords, invites, sessions and API tokens."""
