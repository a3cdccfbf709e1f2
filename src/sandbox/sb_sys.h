/* Raw system calls for the sandbox child. The child of sb_spawn shares the worker's memory
 * (CLONE_VM, as posix_spawn does) until it execs, so it must not touch anything of libc that
 * writes memory: not even errno, which lives in the spawning thread's TLS. These return the
 * kernel's result: >= 0, or -errno. */
#ifndef SB_SYS_H
#define SB_SYS_H

#include <sys/syscall.h>

static inline long sb_sys6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#else
#error "sandbox: raw system calls are implemented for x86_64 and aarch64"
#endif
}

#define SB_A(x) ((long)(x))
#define sb_sys0(n) sb_sys6(n, 0, 0, 0, 0, 0, 0)
#define sb_sys1(n, a) sb_sys6(n, SB_A(a), 0, 0, 0, 0, 0)
#define sb_sys2(n, a, b) sb_sys6(n, SB_A(a), SB_A(b), 0, 0, 0, 0)
#define sb_sys3(n, a, b, c) sb_sys6(n, SB_A(a), SB_A(b), SB_A(c), 0, 0, 0)
#define sb_sys4(n, a, b, c, d) sb_sys6(n, SB_A(a), SB_A(b), SB_A(c), SB_A(d), 0, 0)
#define sb_sys5(n, a, b, c, d, e) sb_sys6(n, SB_A(a), SB_A(b), SB_A(c), SB_A(d), SB_A(e), 0)

#endif
