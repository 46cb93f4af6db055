//go:build cgo

// With cgo the program is dynamically linked, on the C library.
package main

// #include <stdlib.h>
import "C"
