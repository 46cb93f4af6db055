//go:build cgo

// With cgo the program is dynamically linked, on the image's C library.
package main

// #include <stdlib.h>
import "C"
