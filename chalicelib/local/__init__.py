"""The local stack: the same handlers on one machine, with an embedded AWS (moto)."""
