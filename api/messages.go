package api

// registerMessages adds the messages endpoints.
func (a *API) registerMessages() {}
