package api

// registerDomains adds the domains endpoints.
func (a *API) registerDomains() {}
