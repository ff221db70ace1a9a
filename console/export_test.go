package console

// SessionHash is how a session ID is kept, for tests that file a session
// without signing in.
var SessionHash = sessionHash
