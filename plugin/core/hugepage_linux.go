package core

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks Linux to back the 2 MiB-aligned interior of a large
// lookup array with transparent huge pages (honoured when THP is "always"
// or "madvise"). Lookups hit these arrays at random; with 4 KiB pages
// nearly every one of them also misses the TLB, which under
// virtualisation costs a two-level page walk. Errors are ignored: the
// advice is only an optimisation.
func adviseHugePages(p unsafe.Pointer, size uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + size) &^ (huge - 1)
	if end <= start {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, end-start, 14 /* MADV_HUGEPAGE */)
}
