package api

import "slices"

// Patterns lists the patterns the API registered, in order, the catch-all
// "/" included.
func (a *API) Patterns() []string { return slices.Clone(a.mux.patterns) }
