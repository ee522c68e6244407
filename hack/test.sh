#!/usr/bin/env bash
# Runs skiff's whole test suite: vet, unit and integration tests, the
# end-to-end tests (real containerd; they skip themselves without root),
# and a short fuzzing run of request decoding. See docs/TESTING.md.
set -uo pipefail
cd "$(dirname "$0")/.."
hack/deps.sh || exit 1
export PATH=$PATH:/usr/local/go/bin
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== go vet"
go vet ./... || exit 1
echo "== go test"
go test -count=1 -timeout 25m ./... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "== fuzz: request decoding (20s)"
if [ "$rc" = 0 ] && grep -qs 'func FuzzDecodeCreate' internal/apiserver/*_test.go; then
  go test -run='^$' -fuzz=FuzzDecodeCreate -fuzztime=20s ./internal/apiserver || rc=1
fi
passed=$(grep -c '^ok ' "$log")
failed=$(grep -c '^FAIL\s' "$log")
echo "packages: $passed passed, $failed failed"
exit "$rc"
