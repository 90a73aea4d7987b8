"""Records that evolve: identity and description (identity), settling versions at commit (settle), the current
view and history (view), withdrawal (withdraw) and re-derivation (reprocess)."""
