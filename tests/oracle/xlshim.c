/*
 * Test-only LD_PRELOAD library for pyxl's oracle: it lets the genuine
 * Xen 4.17 `xl` run `xl -N create` (a dry run) on a machine that has no
 * hypervisor.  While it parses a config, xl (through libxl) opens
 * libxenctrl/xenstore handles and asks a few questions about the host;
 * every one of those entry points is answered here, from a small fake host.
 *
 * Environment (read on every call, so a test may vary them per run):
 *   PYXL_ORACLE_CPUS      physical CPUs, all online      (default 2)
 *   PYXL_ORACLE_NODES     NUMA nodes, CPU c on node c%N   (default 1)
 *   PYXL_ORACLE_XL_CONF   file opened instead of /etc/xen/xl.conf
 *   PYXL_ORACLE_FIXED_UUID  non-empty: libuuid's uuid_generate returns
 *                         deadbeef-dead-4ead-8ead-deaddeadbeef, so a JSON
 *                         whose c_info.uuid is that value had no uuid= key.
 * Memory: 16 GiB in 4 KiB pages, half of it free.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned host_value(const char *var, unsigned fallback)
{
    const char *text = getenv(var);
    long v = text && *text ? strtol(text, NULL, 10) : 0;
    return v > 0 ? (unsigned)v : fallback;
}
#define HOST_CPUS  host_value("PYXL_ORACLE_CPUS", 2)
#define HOST_NODES host_value("PYXL_ORACLE_NODES", 1)
#define HOST_PAGES (16ULL << 30 >> 12)

/* Opaque handles: libxl only checks that they are not NULL. */
static void *fake_handle(void) { return calloc(1, 1024); }
void *xc_interface_open(void *logger, void *dlogger, unsigned flags) { return fake_handle(); }
int xc_interface_close(void *xch) { return 0; }
void *xs_open(unsigned long flags) { return fake_handle(); }
void *xs_daemon_open(void) { return fake_handle(); }
void *xs_domain_open(void) { return fake_handle(); }
void xs_close(void *h) {}
void xs_daemon_close(void *h) {}

/* xc_version(): report Xen 4.17; every string query gets zeroes. */
int xc_version(void *xch, int cmd, void *arg)
{
    static const size_t reply_size[] = {
        [1] = 16,    /* XENVER_extraversion */
        [2] = 1024,  /* XENVER_compile_info */
        [3] = 1024,  /* XENVER_capabilities */
        [4] = 64,    /* XENVER_changeset */
        [5] = 16,    /* XENVER_platform_parameters */
        [6] = 8,     /* XENVER_get_features */
        [8] = 64,    /* XENVER_guest_handle */
        [9] = 1024,  /* XENVER_commandline */
    };
    if (cmd == 0)
        return 4 << 16 | 17;
    if (cmd == 7)
        return 4096;     /* XENVER_pagesize */
    if (cmd > 0 && cmd < 10 && reply_size[cmd] && arg)
        memset(arg, 0, reply_size[cmd]);
    return 0;
}

int xc_get_max_cpus(void *xch) { return HOST_CPUS; }
int xc_get_online_cpus(void *xch) { return HOST_CPUS; }
int xc_get_max_nodes(void *xch) { return HOST_NODES; }
long xc_memory_op(void *xch, unsigned cmd, void *arg, size_t len) { return 0; }

/* Layout of Xen 4.17's xen_sysctl_physinfo: 10 x uint32, then uint64s
 * (total_pages, free_pages, scrub_pages, outstanding_pages, max_mfn). */
int xc_physinfo(void *xch, void *out)
{
    uint32_t *w = out;
    uint64_t *pages;
    memset(out, 0, 112);
    w[0] = 1;                 /* threads per core */
    w[1] = HOST_CPUS;         /* cores per socket */
    w[2] = HOST_CPUS;         /* nr_cpus */
    w[3] = HOST_CPUS - 1;     /* max_cpu_id */
    w[4] = HOST_NODES;        /* nr_nodes */
    w[5] = HOST_NODES - 1;    /* max_node_id */
    w[6] = 2000000;           /* cpu_khz */
    pages = (uint64_t *)(w + 10);
    pages[0] = HOST_PAGES;
    pages[1] = HOST_PAGES / 2;
    pages[4] = HOST_PAGES;
    return 0;
}

/* Per-CPU {core, socket, node}; a NULL buffer asks only for the count. */
int xc_cputopoinfo(void *xch, unsigned *count, uint32_t *topo)
{
    unsigned n = HOST_CPUS, c;
    if (topo) {
        if (n > *count)
            n = *count;
        for (c = 0; c < n; c++) {
            topo[3 * c] = c;
            topo[3 * c + 1] = 0;
            topo[3 * c + 2] = c % HOST_NODES;
        }
    }
    *count = n;
    return 0;
}

/* Per-node {size, free} in bytes and the node distance matrix. */
int xc_numainfo(void *xch, unsigned *count, uint64_t *mem, uint32_t *dist)
{
    unsigned n = HOST_NODES, a, b;
    if (mem || dist) {
        if (n > *count)
            n = *count;
        for (a = 0; a < n; a++) {
            if (mem) {
                mem[2 * a] = (HOST_PAGES << 12) / HOST_NODES;
                mem[2 * a + 1] = (HOST_PAGES << 11) / HOST_NODES;
            }
            for (b = 0; dist && b < n; b++)
                dist[a * n + b] = a == b ? 10 : 20;
        }
    }
    *count = n;
    return 0;
}

/* Keep the host's /etc/xen/xl.conf out of the measurement. */
FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*libc_fopen)(const char *, const char *);
    const char *replacement = getenv("PYXL_ORACLE_XL_CONF");
    if (!libc_fopen)
        libc_fopen = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen");
    if (path && replacement && *replacement && strcmp(path, "/etc/xen/xl.conf") == 0)
        path = replacement;
    return libc_fopen(path, mode);
}

void uuid_generate(unsigned char out[16])
{
    static const unsigned char sentinel[16] = {
        0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0x4e, 0xad,
        0x8e, 0xad, 0xde, 0xad, 0xde, 0xad, 0xbe, 0xef };
    static void (*libuuid_generate)(unsigned char *);
    const char *fixed = getenv("PYXL_ORACLE_FIXED_UUID");
    if (fixed && *fixed) {
        memcpy(out, sentinel, sizeof sentinel);
        return;
    }
    if (!libuuid_generate)
        libuuid_generate = (void (*)(unsigned char *))dlsym(RTLD_NEXT, "uuid_generate");
    libuuid_generate(out);
}
