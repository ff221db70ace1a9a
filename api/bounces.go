package api

// registerBounces adds the bounces endpoints.
func (a *API) registerBounces() {}
