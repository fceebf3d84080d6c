#ifndef JINDOU_SUPPORT_H
#define JINDOU_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, as in iSCSI/ext4) of `length` bytes, continuing from `crc`
/// (pass 0 to start). Uses the SSE4.2 `crc32` instruction when the CPU has it
/// (checked once at run time), a slicing-by-8 table otherwise.
uint32_t jindou_crc32c(uint32_t crc, const void *data, size_t length);

/// Whether the hardware path is in use (for benchmarks and logs).
int jindou_crc32c_is_hardware(void);

#endif
