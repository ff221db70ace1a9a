package auth

// tracked is how many addresses t holds, counting or shut out, for tests
// of MaxTracked.
func (t *Throttle) tracked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.counting) + len(t.blocked)
}
