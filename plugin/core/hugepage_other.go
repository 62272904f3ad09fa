//go:build !linux

package core

import "unsafe"

func adviseHugePages(unsafe.Pointer, uintptr) {}
