package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// ReadFiles returns the content of every file matching the glob patterns,
// pattern by pattern (fuzz targets seed their corpus from the examples and
// the golden inputs this way).
func ReadFiles(t testing.TB, patterns ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, pattern := range patterns {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, data)
		}
	}
	return out
}
