package store

// SearchScanLimit bounds the entries a filtered search or bounce listing
// examines. Past it the scan stops and the total it gives is a lower
// bound (the caller says so): matching 1M messages against a filter
// costs seconds of CPU that one request must not take.
const SearchScanLimit = 100_000
