/* Makes a process see an AVX2-only CPU: every CPUID instruction it runs reports
 * no AVX-512 (nor AMX, AVX-VNNI or AVX10), so torch, onnxruntime, OpenBLAS and
 * Nodus all pick the kernels they would pick on a Zen 3 or a recent Intel
 * desktop. The benchmarks load it with LD_PRELOAD (`--hide-avx512` of forward.py and lora.py, through hide_avx512.py)
 * to compare the three engines at the AVX2 level in one interleaved run.
 *
 * It relies on Linux's CPUID faulting (`cpuid_fault` in /proc/cpuinfo; KVM
 * guests have it on any host): after arch_prctl(ARCH_SET_CPUID, 0) a CPUID
 * raises SIGSEGV with si_code SI_KERNEL. The handler turns faulting off, runs
 * the real CPUID, turns it on again, masks the feature bits and steps over the
 * two-byte instruction. The setting is per thread and inherited by
 * threads created later, so it is made in a constructor, before the host
 * starts any. An exec resets it; LD_PRELOAD in the environment sets it again.
 *
 * What it cannot hide: XGETBV still shows the AVX-512 register state, and the
 * dynamic loader chose glibc's string functions before this constructor ran
 * (GLIBC_TUNABLES covers those). */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int cpuid_faulting(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

#define FLAG(n) (1u << (n))

/* Clears, in a CPUID answer, what an AVX2 + FMA CPU (Zen 3) does not have:
 * the feature bits of leaf 7 and the AVX-512 register state of leaf 0xD. */
static void mask_features(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    enum { EAX, EBX, ECX, EDX };
    if (leaf == 7 && subleaf == 0) {
        /* AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[EBX] &= ~(FLAG(16) | FLAG(17) | FLAG(21) | FLAG(26) | FLAG(27) | FLAG(28) | FLAG(30) | FLAG(31));
        /* AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        r[ECX] &= ~(FLAG(1) | FLAG(6) | FLAG(11) | FLAG(12) | FLAG(14));
        /* AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE, AMX-INT8 */
        r[EDX] &= ~(FLAG(2) | FLAG(3) | FLAG(8) | FLAG(22) | FLAG(23) | FLAG(24) | FLAG(25));
    } else if (leaf == 7 && subleaf == 1) {
        r[EAX] &= ~(FLAG(4) | FLAG(5)); /* AVX-VNNI, AVX512_BF16 */
        r[EDX] &= ~FLAG(19);            /* AVX10 */
    } else if (leaf == 0xd && subleaf == 0) {
        r[EAX] &= ~(FLAG(5) | FLAG(6) | FLAG(7)); /* opmask and ZMM state: not offered */
    }
}

static void on_fault(int signal, siginfo_t *info, void *context) {
    greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *instruction = (const unsigned char *)registers[REG_RIP];
    /* A faulting CPUID is a general protection fault (SI_KERNEL); anything else
     * is a real crash: give it back to the default action. */
    (void)signal;
    if (info->si_code != SI_KERNEL || instruction[0] != 0x0f || instruction[1] != 0xa2) {
        struct sigaction fallback = {.sa_handler = SIG_DFL};
        sigaction(SIGSEGV, &fallback, NULL);
        return;
    }
    uint32_t leaf = (uint32_t)registers[REG_RAX], subleaf = (uint32_t)registers[REG_RCX], r[4];
    cpuid_faulting(0);
    __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
    cpuid_faulting(1);
    mask_features(leaf, subleaf, r);
    registers[REG_RAX] = r[0];
    registers[REG_RBX] = r[1];
    registers[REG_RCX] = r[2];
    registers[REG_RDX] = r[3];
    registers[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction action = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || cpuid_faulting(1) != 0) {
        fprintf(stderr, "hide_avx512: this kernel or CPU has no CPUID faulting (cpuid_fault); "
                        "the process would see AVX-512, so it stops\n");
        _exit(70);
    }
}
