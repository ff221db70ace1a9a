package api

// registerAccounts adds the accounts endpoints.
func (a *API) registerAccounts() {}
