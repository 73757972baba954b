// Maps shared-memory pool files into an executor's address space, so that onnxruntime reads a stage's
// input where the producer wrote it instead of from a copy: on the 2-vCPU VMs this was measured on,
// pread() of a 4.9 MB tmpfs file cost 4.6 ms (C) to 6-7 ms (Node), mapping it and touching every page
// about 1 ms.
//
// Why not an npm package: the one maintained (@riaskov/mmap-io) unmaps only when the garbage collector
// finds the buffer dead, fetches prebuilt binaries at install (no network here) and builds on NAN. A
// frame's mapping must end as soon as the stage job is done with it, before its file is recycled, and
// without waiting for a collection (a mapped file counts in the executor's resident memory).
//
// API (N-API, so one build serves every Node >= 18 and worker threads):
//   map(fd, length, writable) -> ArrayBuffer   MAP_SHARED | MAP_POPULATE; throws on failure
//   unmap(arrayBuffer) -> boolean              munmap now and detach the buffer (its views read as empty)
// A buffer never unmapped is unmapped when it is collected.
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <node_api.h>

typedef struct mapping {
  void *addr;
  size_t length;
  int mapped;
  struct mapping *next;
} mapping;

// Live mappings of every thread of the process (an executor's workers each load this module).
static mapping *live = NULL;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, "SHM_MAP_FAILED", msg);
  return NULL;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping *m = (mapping *)hint;
  pthread_mutex_lock(&lock);
  for (mapping **p = &live; *p; p = &(*p)->next) {
    if (*p == m) {
      *p = m->next;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  if (m->mapped) munmap(m->addr, m->length);
  free(m);
}

static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, "BAD_ARGUMENT", "map(fd, length, writable)");
    return NULL;
  }
  int32_t fd;
  int64_t length;
  bool writable;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &length) != napi_ok ||
      napi_get_value_bool(env, argv[2], &writable) != napi_ok || fd < 0 || length <= 0) {
    napi_throw_type_error(env, "BAD_ARGUMENT", "map(fd, length, writable): a file descriptor, a positive length, a boolean");
    return NULL;
  }
  void *addr = mmap(NULL, (size_t)length, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (addr == MAP_FAILED) return fail(env, "mmap", errno);
  mapping *m = (mapping *)malloc(sizeof *m);
  if (!m) {
    munmap(addr, (size_t)length);
    return fail(env, "malloc", ENOMEM);
  }
  m->addr = addr;
  m->length = (size_t)length;
  m->mapped = 1;
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, addr, (size_t)length, finalize, m, &buffer) != napi_ok) {
    munmap(addr, (size_t)length);
    free(m);
    napi_throw_error(env, "SHM_MAP_FAILED", "napi_create_external_arraybuffer failed");
    return NULL;
  }
  pthread_mutex_lock(&lock);
  m->next = live;
  live = m;
  pthread_mutex_unlock(&lock);
  return buffer;
}

static napi_value unmap_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  bool isBuffer = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_arraybuffer(env, argv[0], &isBuffer) != napi_ok || !isBuffer) {
    napi_throw_type_error(env, "BAD_ARGUMENT", "unmap(arrayBuffer from map())");
    return NULL;
  }
  void *data = NULL;
  size_t length = 0;
  napi_get_arraybuffer_info(env, argv[0], &data, &length);
  mapping *found = NULL;
  pthread_mutex_lock(&lock);
  // One live mapping per address at a time: an address reused by a later mmap belongs to the newer
  // entry only after the older was unmapped (mapped = 0).
  for (mapping *m = live; m; m = m->next) {
    if (m->mapped && m->addr == data && data != NULL) {
      m->mapped = 0;
      found = m;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  if (found) {
    // Detach first: no view may read the range once it is unmapped. (Detaching may run the finalizer,
    // which frees the entry, so its fields are read before.)
    void *addr = found->addr;
    size_t len = found->length;
    napi_detach_arraybuffer(env, argv[0]);
    munmap(addr, len);
  }
  napi_get_boolean(env, found != NULL, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "map", NAPI_AUTO_LENGTH, map_file, NULL, &fn);
  napi_set_named_property(env, exports, "map", fn);
  napi_create_function(env, "unmap", NAPI_AUTO_LENGTH, unmap_buffer, NULL, &fn);
  napi_set_named_property(env, exports, "unmap", fn);
  return exports;
}
