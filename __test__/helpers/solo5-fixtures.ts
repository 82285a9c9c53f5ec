/**
 * Solo5 test fixtures built with gcc inside the test: unikernel-shaped ELF images whose ABI and
 * manifest notes are hand-made bytes placed in their own PT_NOTE segments by a linker script, and
 * a stub tender (a small C program) that checks its argv like solo5-hvt / solo5-spt, opens the
 * TAPs and block files it is given, prints console lines and exits with a chosen code.
 * Nothing here comes from Solo5's repository.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** Whether gcc is usable (else the Solo5 fixture tests skip). */
export function gccUnavailable(): string | undefined {
  const r = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? 'needs gcc to build fixture images' : undefined;
}

/** An ELF note: 12-byte header, owner name padded to 4, descriptor padded to 4. */
export function elfNote(owner: string, type: number, desc: Uint8Array): Buffer {
  const name = Buffer.from(`${owner}\0`, 'latin1');
  const namePadded = Buffer.alloc(Math.ceil(name.length / 4) * 4);
  name.copy(namePadded);
  const descPadded = Buffer.alloc(Math.ceil(desc.length / 4) * 4);
  Buffer.from(desc).copy(descPadded);
  const header = Buffer.alloc(12);
  header.writeUInt32LE(name.length, 0);
  header.writeUInt32LE(desc.length, 4);
  header.writeUInt32LE(type, 8);
  return Buffer.concat([header, namePadded, descPadded]);
}

/** The 16-byte ABI1 descriptor. */
export function abiDesc(target: number, version: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(target, 0);
  b.writeUInt32LE(version, 4);
  return b;
}

export const NT_ABI = 0x31494241;
export const NT_MFT = 0x3154464d;

function cArray(bytes: Uint8Array): string {
  return [...bytes].map((b) => `0x${b.toString(16)}`).join(',');
}

const LDS = `ENTRY(_start)
PHDRS {
  text PT_LOAD FILEHDR PHDRS;
  abi PT_NOTE;
  mft PT_NOTE;
}
SECTIONS {
  . = 0x100000 + SIZEOF_HEADERS;
  .note.solo5.abi : ALIGN(4) { KEEP(*(.note.solo5.abi)) } :text :abi
  .note.solo5.manifest : ALIGN(8) { KEEP(*(.note.solo5.manifest)) } :text :mft
  .text : { *(.text .text.*) } :text
  .rodata : { *(.rodata .rodata.*) } :text
  /DISCARD/ : { *(.note.gnu.*) *(.note.GNU-stack) *(.eh_frame*) *(.comment) }
}
`;

/**
 * Builds an image at `out` with the given raw ABI and manifest notes (either may be omitted) in
 * PT_NOTE segments of their own. Returns `out`.
 */
export function buildImage(dir: string, out: string, notes: { abi?: Buffer; manifest?: Buffer }): string {
  const src = path.join(dir, `${path.basename(out)}.c`);
  const lds = path.join(dir, 'image.lds');
  const abi = notes.abi ?? Buffer.alloc(0);
  const mft = notes.manifest ?? Buffer.alloc(0);
  const c = [
    abi.length ? `__attribute__((section(".note.solo5.abi"), aligned(4), used)) static const unsigned char abi_note[] = {${cArray(abi)}};` : '',
    mft.length ? `__attribute__((section(".note.solo5.manifest"), aligned(8), used)) static const unsigned char mft_note[] = {${cArray(mft)}};` : '',
    'void _start(void) { for (;;) { } }',
    '',
  ].join('\n');
  writeFileSync(src, c);
  writeFileSync(lds, LDS);
  execFileSync('gcc', ['-nostdlib', '-static', '-ffreestanding', '-fno-pie', '-no-pie', '-O1', '-fno-asynchronous-unwind-tables', `-Wl,-T,${lds}`, '-Wl,--build-id=none', '-o', out, src], {
    stdio: 'pipe',
  });
  return out;
}

/** The stub tender's C source. */
const STUB = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void on_signal(int sig) {
  char msg[64];
  int n = snprintf(msg, sizeof msg, KIND ": Exiting on signal %d\n", sig);
  if (write(2, msg, n) < 0) _exit(2);
  _exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: " KIND " [ CORE OPTIONS ] [ MODULE OPTIONS ] [ -- ] KERNEL [ ARGS ]\n");
}

/* STUB_MANIFEST is "net:service0,block:storage": the devices the image declares. */
static int declared(const char *kind, const char *name) {
  const char *m = getenv("STUB_MANIFEST");
  if (!m) return 1;
  char want[128];
  snprintf(want, sizeof want, "%s:%s", kind, name);
  char *copy = strdup(m), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (strcmp(t, want) == 0) { free(copy); return 1; }
  free(copy);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (argv[i][0] != '-') break;
    if (strcmp(argv[i], "--version") == 0) {
      fprintf(stderr, KIND " tender, version v0.0.0-stub\nABI version %d\n", ABI);
      return 0;
    }
    if (strcmp(argv[i], "--help") == 0) { usage(); return 1; }
  }
  if (i >= argc) { fprintf(stderr, KIND ": Missing KERNEL operand\n"); usage(); return 1; }
  int kernel = i;
  if (access(argv[kernel], R_OK) != 0) { fprintf(stderr, KIND ": %s: Could not open: %s\n", argv[kernel], strerror(errno)); return 1; }
  const char *argvlog = getenv("STUB_ARGV");
  if (argvlog) {
    FILE *f = fopen(argvlog, "w");
    for (int j = 0; j < argc; j++) { fputs(argv[j], f); fputc(0, f); }
    fclose(f);
  }
  int taps[64], ntaps = 0, attached = 0;
  for (int j = 1; j < kernel; j++) {
    char name[68], val[4097];
    unsigned mac[6];
    const char *a = argv[j];
    if (strcmp(a, "--") == 0) break;
    if (strncmp(a, "--mem=", 6) == 0) {
      char *end;
      long mb = strtol(a + 6, &end, 10);
      if (*end || mb <= 0) { fprintf(stderr, KIND ": Malformed argument to --mem\n"); return 1; }
    } else if (sscanf(a, "--net:%67[A-Za-z0-9]=%19s", name, val) == 2) {
      if (!declared("net", name)) { fprintf(stderr, KIND ": Resource not declared in manifest: '%s'\n", name); goto invalid; }
      int s = socket(AF_INET, SOCK_DGRAM, 0);
      struct ifreq q;
      memset(&q, 0, sizeof q);
      strncpy(q.ifr_name, val, IFNAMSIZ - 1);
      if (ioctl(s, SIOCGIFFLAGS, &q) < 0) { fprintf(stderr, KIND ": Could not attach interface: %s: %s\n", val, strerror(errno)); return 1; }
      close(s);
      if (!(q.ifr_flags & IFF_UP)) { fprintf(stderr, KIND ": Could not attach interface: %s: Network is down\n", val); return 1; }
      int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
      memset(&q, 0, sizeof q);
      q.ifr_flags = IFF_TAP | IFF_NO_PI;
      strncpy(q.ifr_name, val, IFNAMSIZ - 1);
      if (fd < 0 || ioctl(fd, TUNSETIFF, &q) < 0 || strcmp(q.ifr_name, val) != 0) {
        fprintf(stderr, KIND ": Could not attach interface: %s: %s\n", val, strerror(errno));
        return 1;
      }
      taps[ntaps++] = fd;
      attached++;
      printf("[%s] attached to %s\n", name, val);
    } else if (sscanf(a, "--net-mac:%67[A-Za-z0-9]=%02x:%02x:%02x:%02x:%02x:%02x", name, &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) == 7) {
      printf("[%s] mac %02x:%02x:%02x:%02x:%02x:%02x\n", name, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    } else if (sscanf(a, "--block:%67[A-Za-z0-9]=%4096s", name, val) == 2) {
      if (!declared("block", name)) { fprintf(stderr, KIND ": Resource not declared in manifest: '%s'\n", name); goto invalid; }
      int fd = open(val, O_RDWR);
      if (fd < 0) { fprintf(stderr, KIND ": Could not open block device: %s: %s\n", val, strerror(errno)); return 1; }
      off_t size = lseek(fd, 0, SEEK_END);
      attached++;
      printf("[%s] block %s, %lld bytes\n", name, val, (long long)size);
    } else if (strncmp(a, "--block-sector-size:", 20) == 0 || strcmp(a, "--gdb") == 0 || strncmp(a, "--gdb-port=", 11) == 0 ||
               strncmp(a, "--dumpcore=", 11) == 0) {
      /* accepted */
    } else {
    invalid:
      fprintf(stderr, KIND ": Invalid option: '%s'\n", a);
      usage();
      return 1;
    }
  }
  const char *m = getenv("STUB_MANIFEST");
  if (m && *m) {
    int n = 1;
    for (const char *p = m; *p; p++) n += *p == ',';
    if (n != attached) { fprintf(stderr, KIND ": All declared devices must be attached. See --help for syntax.\n"); return 1; }
  }
  if (strcmp(KIND, "solo5-hvt") == 0) {
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
  }
  /* Guest command line: the arguments after KERNEL joined by single spaces, like the tenders. */
  static char cmdline[8192];
  size_t len = 0;
  int quiet = 0, first = kernel + 1;
  while (first < argc && strncmp(argv[first], "--solo5:", 8) == 0) {
    quiet = strcmp(argv[first], "--solo5:quiet") == 0 || strcmp(argv[first], "--solo5:error") == 0;
    first++;
  }
  for (int j = kernel + 1; j < argc; j++) {
    size_t n = strlen(argv[j]);
    if (len + n + (j > kernel + 1) >= sizeof cmdline) { fprintf(stderr, KIND ": Guest command line too long (max=8191 characters)\n"); return 1; }
    if (j > kernel + 1) cmdline[len++] = ' ';
    memcpy(cmdline + len, argv[j], n);
    len += n;
  }
  cmdline[len] = 0;
  /* the bindings strip the leading --solo5: tokens */
  const char *guest = cmdline;
  for (int j = kernel + 1; j < first; j++) guest += strlen(argv[j]) + (*(guest + strlen(argv[j])) == ' ');
  if (!quiet) printf("Solo5: Bindings version v0.0.0-stub\n");
  printf("Command line is: '%s'\n", guest);
  /* STUB_GUEST=guest.mjs (with STUB_NODE): the unikernel itself is a Morgana stack in Node,
     exec'd with the attached TAP descriptors (inherited: no O_CLOEXEC) and the guest arguments,
     as a tender hands its devices and command line to the guest. */
  if (getenv("STUB_GUEST") && getenv("STUB_NODE")) {
    char *gargv[256];
    char fdlist[256] = "";
    int g = 0;
    for (int j = 0; j < ntaps; j++) snprintf(fdlist + strlen(fdlist), sizeof fdlist - strlen(fdlist), "%s%d", j ? "," : "", taps[j]);
    gargv[g++] = (char *)getenv("STUB_NODE");
    gargv[g++] = (char *)getenv("STUB_GUEST");
    gargv[g++] = fdlist;
    for (int j = first; j < argc && g < 255; j++) gargv[g++] = argv[j];
    gargv[g] = NULL;
    fflush(stdout);
    execv(gargv[0], gargv);
    fprintf(stderr, KIND ": exec %s: %s\n", gargv[0], strerror(errno));
    return 1;
  }
  const char *lines = getenv("STUB_LINES");
  for (int j = 0; lines && j < atoi(lines); j++) printf("console line %d\n", j);
  if (getenv("STUB_SEND")) {
    unsigned char frame[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5};
    /* STUB_SEND=N: N broadcast frames (ethertype 0x88b5) on every TAP, 100 ms apart. */
    for (int k = 0; k < atoi(getenv("STUB_SEND")); k++) {
      if (k) usleep(100000);
      for (int j = 0; j < ntaps; j++) if (write(taps[j], frame, sizeof frame) < 0) perror("write");
    }
  }
  int code = getenv("STUB_EXIT") ? atoi(getenv("STUB_EXIT")) : 0;
  const char *exits = getenv("STUB_EXITS"), *counter = getenv("STUB_COUNTER");
  if (exits && counter) {
    int run = 0;
    FILE *f = fopen(counter, "r");
    if (f) { if (fscanf(f, "%d", &run) != 1) run = 0; fclose(f); }
    f = fopen(counter, "w");
    fprintf(f, "%d\n", run + 1);
    fclose(f);
    char *copy = strdup(exits), *save = NULL, *t = strtok_r(copy, ",", &save);
    for (int j = 0; j < run && t; j++) { char *next = strtok_r(NULL, ",", &save); if (next) t = next; }
    code = atoi(t);
    printf("run %d exits %d\n", run, code);
  }
  const char *sleep_ms = getenv("STUB_SLEEP_MS");
  if (sleep_ms) {
    long ms = atol(sleep_ms);
    if (ms < 0) for (;;) pause();
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  const char *crash = getenv("STUB_SIGNAL");
  if (crash) { signal(atoi(crash), SIG_DFL); raise(atoi(crash)); }
  if (code == 255) printf("Solo5: ABORT: stub.c:1: forced abort\n");
  else printf("Solo5: solo5_exit(%d) called\n", code);
  return code;
}
`;

/** Builds the stub tender as `<dir>/<kind>` (kind `solo5-hvt` or `solo5-spt`) reporting ABI `abi`. */
export function buildStubTender(dir: string, kind = 'solo5-hvt', abi = 2): string {
  const src = path.join(dir, 'stub-tender.c');
  const out = path.join(dir, kind);
  writeFileSync(src, STUB);
  execFileSync('gcc', ['-O1', '-Wall', `-DKIND="${kind}"`, `-DABI=${abi}`, '-o', out, src], { stdio: 'pipe' });
  return out;
}
