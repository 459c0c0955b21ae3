/* FNV-1a, the one string hash of the project's tables and signatures: a
 * start (HASH_START, or a per-table seed folded into it so that colliding
 * names cannot be chosen in advance), bytes folded in one at a time, and,
 * for an open-addressing table that takes the low bits, hash_mix() (FNV's
 * low bits mix poorly). Not for anything an attacker must not invert. */
#ifndef MESHNODE_CORE_HASH_H
#define MESHNODE_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_START 0xcbf29ce484222325ULL

static inline uint64_t hash_byte(uint64_t h, unsigned char c)
{
	return (h ^ c) * 0x100000001b3ULL;
}

/* The bytes of s, without its NUL. */
static inline uint64_t hash_str(uint64_t h, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = hash_byte(h, *p);
	return h;
}

/* The bytes of s with ASCII letters folded to lower case. */
static inline uint64_t hash_str_nocase(uint64_t h, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = hash_byte(h, *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + ('a' - 'A')) : *p);
	return h;
}

static inline uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = hash_byte(h, p[i]);
	return h;
}

static inline uint64_t hash_mix(uint64_t h)
{
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

#endif
