"""Dispatch: who can go (a member's dispatch status, the nearest available candidates) and the
offers of a case to a member's terminal, with their timeouts."""
