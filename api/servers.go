package api

// registerServers adds the servers endpoints.
func (a *API) registerServers() {}
