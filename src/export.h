/*
 * Symbol visibility. The module must export luaopen_* only, whatever flags
 * the build uses (LuaRocks' builtin build passes none of ours), so every
 * function shared between the module's own files is marked hidden here.
 */
#ifndef AO_EXPORT_H
#define AO_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define AO_EXPORT __attribute__((visibility("default")))
#define AO_HIDDEN __attribute__((visibility("hidden")))
#else
#define AO_EXPORT
#define AO_HIDDEN
#endif

#endif
