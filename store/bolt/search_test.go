package bolt

import (
	"slices"
	"testing"
	"time"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// A day's stats keep at most MaxTagsPerDay tags: the counts of a new tag
// past them go under OtherTag, while the tags already counted keep
// counting, and the next day starts afresh.
// A search walks the index in read transactions of a few entries each,
// resuming where the last stopped, and gives what one walk would; a
// filtered search stops after the scan limit and says so.
func TestSearchInChunks(t *testing.T) {
	s, _ := openTest(t, Options{})
	_, srv := storetest.Init(t, s)
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var ids []string // oldest first
	for i := range 20 {
		m := storetest.NewMessage(srv.ID, at.Add(time.Duration(i)*time.Minute))
		m.Tag = []string{"even", "odd"}[i%2]
		if err := storetest.Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	ids = slices.Clone(ids)
	slices.Reverse(ids) // newest first, as searches answer
	chunks := 0
	s.scan = scanSettings{chunk: 3, limit: 1000, onChunk: func(time.Duration) { chunks++ }}
	res, err := s.SearchMessages(srv.ID, store.MessageQuery{Offset: 5, Count: 4})
	if err != nil || res.Total != 20 || res.Capped || len(res.Messages) != 4 {
		t.Fatalf("unfiltered: %+v %v", res, err)
	}
	for i, m := range res.Messages {
		if m.MessageID != ids[5+i] {
			t.Errorf("message %d of the page: %s, want %s", i, m.MessageID, ids[5+i])
		}
	}
	if chunks != 7 {
		t.Errorf("%d read transactions for 20 entries in chunks of 3, want 7", chunks)
	}
	res, err = s.SearchMessages(srv.ID, store.MessageQuery{Count: 100, Tag: "odd", To: at.Add(17 * time.Minute)})
	if err != nil || res.Total != 9 || res.Capped || len(res.Messages) != 9 || res.Messages[0].MessageID != ids[2] {
		t.Fatalf("filtered, to minute 17: %+v %v", res, err)
	}
	s.scan.limit = 7
	res, err = s.SearchMessages(srv.ID, store.MessageQuery{Count: 100, Tag: "even"})
	if err != nil || !res.Capped || res.Total != 3 || len(res.Messages) != 3 {
		t.Fatalf("filtered past the scan limit: total %d, capped %v, %d messages, %v; want 3 of the 7 newest, capped",
			res.Total, res.Capped, len(res.Messages), err)
	}
}
