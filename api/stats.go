package api

// registerStats adds the stats endpoints.
func (a *API) registerStats() {}
