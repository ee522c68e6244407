package registry

import (
	"strconv"
	"testing"
)

func TestValidMemo(t *testing.T) {
	calls := map[string]int{}
	m := NewValidMemo(func(s string) bool { calls[s]++; return s != "bad" })
	for range 3 {
		if !m.Valid("good") {
			t.Fatal("good rejected")
		}
		if m.Valid("bad") {
			t.Fatal("bad accepted")
		}
	}
	if calls["good"] != 1 {
		t.Errorf("an accepted string was checked %d times, want once", calls["good"])
	}
	if calls["bad"] != 3 {
		t.Errorf("a rejected string was checked %d times, want every time (rejections are not remembered)", calls["bad"])
	}
	// Past maxValidMemo entries the memo stops learning, answers stay right.
	for i := range maxValidMemo + 10 {
		m.Valid(strconv.Itoa(i))
	}
	if n := m.n.Load(); n != maxValidMemo {
		t.Errorf("memo holds %d entries, want the cap %d", n, maxValidMemo)
	}
	last := strconv.Itoa(maxValidMemo + 5)
	before := calls[last]
	if !m.Valid(last) || calls[last] != before+1 {
		t.Errorf("a string past the cap should be checked again and accepted")
	}
	if !LabelKeys.Valid("app.kubernetes.io/name") || LabelKeys.Valid("-bad") || !LabelValues.Valid("web") || LabelValues.Valid("bad value") {
		t.Error("label memos disagree with upstream's checks")
	}
}
