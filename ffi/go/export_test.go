package shmq

// VersionPtr is one bare cgo call, for BenchmarkCgoFloor.
func VersionPtr() uintptr { return versionPtr() }
