package auth

// tracked is how many addresses t holds, for tests of MaxTracked.
func (t *Throttle) tracked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
