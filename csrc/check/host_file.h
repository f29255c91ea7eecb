/*
 * check/host_file.h - whole-file reading for the host programs (w2s_cli, the C tests, the fuzz
 * harnesses, ab_stages). The engine does no I/O; this is never part of it.
 */
#ifndef W2S_HOST_FILE_H
#define W2S_HOST_FILE_H

#include <stddef.h>

/* The bytes of `path` in a malloc'd buffer the caller frees, its length in *len. NULL if the file
 * cannot be opened or read. The buffer is exactly the file's size, so ASan sees any read past its
 * end; malloc aligns it for any type. An empty file gives a 1-byte buffer and *len == 0
 * (w2s_model_init then names the error). */
void *w2s_host_read_file(const char *path, size_t *len);

#endif
