"""Run Python calls on an emulated AVX-512 CPU, inside this process (x86-64 Linux).

The AVX-512 kernels must be tested on machines without AVX-512 too: CI and most
development machines here have none, and a kernel that never ran is a kernel that is
wrong somewhere.  Bochs' CPU model (``bochscpu``, from PyPI's ``bochscpu-python``)
executes AVX-512F/BW/DQ/VL in software, with exact IEEE semantics (softfloat).

How: the guest CPU runs in 64-bit mode at ring 0 with page tables that map every
readable page of this process at its own address (guest virtual == host virtual, the
physical pages being the host's pages).  A call is the guest executing
``PyObject_CallNoArgs(job)`` on a stack of its own, with the FS base (TLS) of the
thread that created the Emulator (calls must come from that thread) and the GIL as
the host holds it; the return address is a ``hlt`` that stops the CPU.
The guest sees Bochs' CPUID (AVX-512 present) and XCR0 = x87|SSE|AVX|opmask|ZMM, so
fastsoftmax, imported *in the guest*, picks ``avx512``.

What the guest cannot do itself is forwarded: ``syscall`` enters a stub that
executes ``clflush`` on a marker address, and the clflush hook performs the system
call on the host (the address space is shared, so pointers mean the same), then maps
any pages it created.  A page fault enters a stub that does the same to map the page,
then ``iretq``.  Threads cannot be emulated: clone and friends are refused, so calls
must run at one thread (OMP_NUM_THREADS=1, and the plugin forces fastsoftmax's count).

The host runs Python in those hooks while the guest is stopped mid-instruction, so
the guest must not be inside malloc at that time (the hook would deadlock on the
arena lock): the process runs with PYTHONMALLOC=malloc, a pre-grown heap and a large
mmap threshold (``prepare_process``), and every call first maps all of the process's
pages, so that neither faults nor mmap happen inside the guest's allocator.  Lazy
binding is off (LD_BIND_NOW=1): ld.so's resolver saves registers with XSAVEC sized
for the host CPU, not for the guest's AVX-512 state.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import tempfile

PAGE = 4096
_STACK_BYTES = 8 << 20
_GPA_DATA = 1 << 32  # guest physical pages of the mapped host pages start here
_GPA_TABLES = 0x200000  # ... and those of the page tables here

# Offsets in the code page.  0x000: hlt (the return address of every call).
_PF_STUB, _OTHER_STUB, _SYSCALL_STUB = 0x400, 0x500, 0x800
_SYSCALL_MARK, _PF_MARK = 0xF00, 0xF40
# clflush [rip+0xb39] (-> 0xf40); add rsp, 8 (the error code); iretq
_PF_CODE = bytes.fromhex("0fae3d390b0000" "4883c408" "48cf")
# clflush [rip+0x6f9] (-> 0xf00); lea rsp,[rsp-128] (keep the red zone); push r11;
# popfq (rflags as before the syscall); lea rsp,[rsp+128]; jmp rcx (the return address)
_SYSCALL_CODE = bytes.fromhex("0fae3df9060000" "488d642480" "4153" "9d" "488da42480000000" "ffe1")
_REFUSED_SYSCALLS = {56: "clone", 57: "fork", 58: "vfork", 59: "execve", 60: "exit",
                     62: "kill", 231: "exit_group", 234: "tgkill", 435: "clone3"}
_MEMORY_SYSCALLS = {9, 10, 11, 12, 25}  # mmap, mprotect, munmap, brk, mremap

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long] * 7


def prepare_process() -> None:
    """Heap settings that keep the guest's malloc away from system calls: call first."""
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    _libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest
    _libc.mallopt(m_top_pad, 512 << 20)
    _libc.mallopt(m_trim_threshold, 1 << 30)
    _libc.malloc.restype = ctypes.c_void_p
    _libc.free.argtypes = [ctypes.c_void_p]
    _libc.free(_libc.malloc(1 << 20))  # grows the heap by the top pad now


def import_bochscpu():
    """Import bochscpu; wheels built on glibc >= 2.38 need two symbols older glibcs lack."""
    try:
        import bochscpu  # noqa: F401
    except ImportError as e:
        if "__isoc23_" not in str(e):
            raise
        shim = _build_glibc_shim()
        ctypes.CDLL(shim, mode=ctypes.RTLD_GLOBAL)
        import bochscpu  # noqa: F401
    import bochscpu.cpu
    import bochscpu.memory

    return bochscpu


def _build_glibc_shim() -> str:
    src = (
        "#include <stdarg.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
        "unsigned long long __isoc23_strtoull(const char *s, char **e, int b)"
        " { return strtoull(s, e, b); }\n"
        "int __isoc23_sscanf(const char *s, const char *f, ...)"
        " { va_list a; va_start(a, f); int r = vsscanf(s, f, a); va_end(a); return r; }\n"
    )
    d = tempfile.mkdtemp(prefix="fastsoftmax-bochs-")
    c, so = os.path.join(d, "shim.c"), os.path.join(d, "libshim.so")
    with open(c, "w") as f:
        f.write(src)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", so, c], check=True)
    return so


def _mappings():
    """(start, end, permissions, file offset, name) of each mapping of this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()
            a, b = (int(t, 16) for t in p[0].split("-"))
            yield a, b, p[1], int(p[2], 16), p[5] if len(p) > 5 else "[anon]"


def _regions():
    """(start, end) of this process's readable mappings, below the 47-bit user limit."""
    return [(a, b) for a, b, perms, _, _ in _mappings() if perms[0] == "r" and b <= 1 << 47]


def _where(addr: int) -> str:
    for a, b, _, offset, name in _mappings():
        if a <= addr < b:
            return f"{name}+{addr - a + offset:#x}"
    return "unmapped"


def _host_fs_base() -> int:
    arch_prctl, arch_get_fs = 158, 0x1003
    v = ctypes.c_uint64()
    if _libc.syscall(arch_prctl, arch_get_fs, ctypes.addressof(v), 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "arch_prctl(ARCH_GET_FS)")
    return v.value


def _address(buf) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class Emulator:
    """One emulated CPU; ``call(fn)`` runs ``fn()`` on it and returns what it returns."""

    def __init__(self):
        self.bx = import_bochscpu()
        self.stats = {"calls": 0, "syscalls": 0, "page_faults": 0}
        self._next_gpa, self._next_table_gpa = _GPA_DATA, _GPA_TABLES
        self._mapped: set[int] = set()
        self._region_done: dict[int, int] = {}
        self._table_hva: dict[int, int] = {}
        self._pools: list[mmap.mmap] = []
        self._pool_va = self._pool_left = 0
        self._root_gpa, self._root_hva = self._new_table()

        self._code = mmap.mmap(-1, PAGE)
        self._code.write(b"\xf4" * PAGE)  # hlt everywhere
        self._code[_PF_STUB:_PF_STUB + len(_PF_CODE)] = _PF_CODE
        self._code[_SYSCALL_STUB:_SYSCALL_STUB + len(_SYSCALL_CODE)] = _SYSCALL_CODE
        self.code_va = _address(self._code)
        # GDT: null, 64-bit ring-0 code (0x08), data (0x10).  IDT: vector 14 enters the
        # page-fault stub, every other vector a hlt at _OTHER_STUB.
        self._tables = mmap.mmap(-1, 2 * PAGE)
        self._gdt_va = _address(self._tables)
        gdt = (ctypes.c_uint64 * 3).from_address(self._gdt_va)
        gdt[0], gdt[1], gdt[2] = 0, 0x00209A0000000000, 0x00CF92000000FFFF
        self._idt_va = self._gdt_va + PAGE
        idt = (ctypes.c_uint64 * 512).from_address(self._idt_va)
        for v in range(256):
            h = self.code_va + (_PF_STUB if v == 14 else _OTHER_STUB)
            idt[2 * v] = (h & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | (((h >> 16) & 0xFFFF) << 48)
            idt[2 * v + 1] = h >> 32
        self._stack = mmap.mmap(-1, _STACK_BYTES)
        self._stack_va = _address(self._stack)
        self._fs_base = _host_fs_base()
        self._session = self.bx.Session()
        self._session.missing_page_handler = self._missing_physical_page
        self.sync_mappings()

    # ---- guest page tables: guest virtual == host virtual ------------------------
    def _new_table(self):
        if not self._pool_left:
            m = mmap.mmap(-1, 256 * PAGE)  # zeroed
            self._pools.append(m)
            self._pool_va, self._pool_left = _address(m), 256
        hva = self._pool_va
        self._pool_va += PAGE
        self._pool_left -= 1
        gpa = self._next_table_gpa
        self._next_table_gpa += PAGE
        self.bx.memory.page_insert(gpa, hva)
        self._table_hva[gpa] = hva
        return gpa, hva

    def _map_page(self, va: int) -> None:
        if va in self._mapped:
            return
        present_rw = 0x3
        hva = self._root_hva
        for level in range(3):  # PML4, PDPT, PD
            entry = ctypes.c_uint64.from_address(hva + 8 * ((va >> (39 - 9 * level)) & 511))
            if entry.value == 0:
                entry.value = self._new_table()[0] | present_rw
            hva = self._table_hva[entry.value & ~0xFFF]
        gpa = self._next_gpa
        self._next_gpa += PAGE
        self.bx.memory.page_insert(gpa, va)
        ctypes.c_uint64.from_address(hva + 8 * ((va >> 12) & 511)).value = gpa | present_rw
        self._mapped.add(va)

    def sync_mappings(self) -> None:
        """Map every readable page of the process that is not mapped yet."""
        for a, b in _regions():
            done = self._region_done.get(a, a)
            if done < b:
                for p in range(done, b, PAGE):
                    self._map_page(p)
                self._region_done[a] = b

    def _map_around(self, addr: int) -> None:
        self.sync_mappings()
        if addr & ~(PAGE - 1) not in self._mapped:
            raise MemoryError(f"guest touched {addr:#x}, which this process has not mapped")

    @staticmethod
    def _missing_physical_page(gpa):
        raise RuntimeError(f"guest physical page {gpa:#x} has no host page")

    # ---- calls --------------------------------------------------------------------
    def _segment(self, selector, attr, base=0):
        s = self.bx.Segment()
        s.present, s.selector, s.base, s.limit, s.attr = True, selector, base, 0xFFFFFFFF, attr
        return s

    def _initial_state(self, rip: int, rsp: int, args):
        bx = self.bx
        s = bx.State()
        bx.cpu.set_long_mode(s)
        s.cr3 = self._root_gpa
        osfxsr, osxmmexcpt, fsgsbase, osxsave = 1 << 9, 1 << 10, 1 << 16, 1 << 18
        s.cr4 |= osfxsr | osxmmexcpt | fsgsbase | osxsave
        s.xcr0 = 0xE7  # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
        s.efer = 0xD01  # SCE, LME, LMA, NXE
        s.lstar = self.code_va + _SYSCALL_STUB
        s.star = (0x08 << 32) | (0x08 << 48)
        s.sfmask = 0x700  # TF, IF, DF cleared on syscall
        s.mxcsr = 0x1F80
        s.fpcw, s.fpsw, s.fptw = 0x37F, 0, 0xFFFF  # x87 as after finit: all masked, empty
        s.rflags = 0x2
        s.rip, s.rsp = rip, rsp
        for reg, value in zip(("rdi", "rsi", "rdx", "rcx", "r8", "r9"), args):
            setattr(s, reg, value)
        code, data = 0x209B, 0xC093  # 64-bit ring-0 code; ring-0 data
        s.cs = self._segment(0x08, code)
        s.ds = s.es = s.ss = s.gs = self._segment(0x10, data)
        s.fs = self._segment(0x10, data, self._fs_base)
        gdtr = bx.GlobalSegment()
        gdtr.base, gdtr.limit = self._gdt_va, 3 * 8 - 1
        idtr = bx.GlobalSegment()
        idtr.base, idtr.limit = self._idt_va, 256 * 16 - 1
        s.gdtr, s.idtr = gdtr, idtr
        return s

    def call_address(self, fn_addr: int, *args: int) -> int:
        """Run the C function at fn_addr(args...) on the guest; returns its rax."""
        self.sync_mappings()
        rsp = ((self._stack_va + _STACK_BYTES - 64) & ~15) - 8
        ctypes.c_uint64.from_address(rsp).value = self.code_va  # return to the hlt
        cpu = self._session.cpu
        cpu.state = self._initial_state(fn_addr, rsp, args)
        events: dict = {}

        def on_exception(sess, cpu_id, vector, error):
            if vector != 14:  # page faults are served by the stub and the clflush hook
                events.setdefault("exception", (vector, error))

        def on_hlt(sess, cpu_id):
            sess.stop()

        def on_clflush(sess, cpu_id, lin, phy):
            try:
                if lin == self.code_va + _SYSCALL_MARK:
                    self._syscall(sess.cpu)
                elif lin == self.code_va + _PF_MARK:
                    self.stats["page_faults"] += 1
                    self._map_around(sess.cpu.cr2)
            except BaseException as e:  # noqa: BLE001  (reported after the stop)
                events["error"] = e
                sess.stop()

        hook = self.bx.Hook()
        hook.exception, hook.hlt, hook.clflush = on_exception, on_hlt, on_clflush
        self._session.run([hook])
        if "error" in events:
            raise events["error"]
        if "exception" not in events and cpu.rip == self.code_va + 1:
            return cpu.rax
        where = ""
        if cpu.rip == self.code_va + _OTHER_STUB + 1:
            # the frame: [error code,] rip, cs, rflags, rsp, ss
            with_error = "exception" in events and events["exception"][0] in (8, 10, 11, 12, 13, 17)
            rip = ctypes.c_uint64.from_address(cpu.rsp + (8 if with_error else 0)).value
            where = f" at {rip:#x} ({_where(rip)})"
        raise RuntimeError(f"the emulated CPU stopped: {events}, rip {cpu.rip:#x}{where}")

    def _syscall(self, cpu) -> None:
        self.stats["syscalls"] += 1
        nr = cpu.rax
        if nr in _REFUSED_SYSCALLS:
            raise RuntimeError(f"the guest called {_REFUSED_SYSCALLS[nr]}(), which cannot be emulated")
        r = _libc.syscall(nr, cpu.rdi, cpu.rsi, cpu.rdx, cpu.r10, cpu.r8, cpu.r9)
        if r == -1:
            r = -ctypes.get_errno()
        cpu.rax = r & 0xFFFFFFFFFFFFFFFF
        if nr in _MEMORY_SYSCALLS:
            self.sync_mappings()

    def call(self, fn):
        """fn() on the emulated CPU: its result, or the exception it raised."""
        box = []

        def job():
            try:
                box.append((True, fn()))
            except BaseException as e:  # noqa: BLE001  (re-raised on the host)
                box.append((False, e))

        self.stats["calls"] += 1
        call_no_args = ctypes.cast(ctypes.pythonapi.PyObject_CallNoArgs, ctypes.c_void_p).value
        self.call_address(call_no_args, id(job))
        if not box:
            raise RuntimeError("the emulated call returned without a result")
        ok, value = box[0]
        if ok:
            return value
        raise value


def main() -> None:  # pragma: no cover - a manual smoke test
    prepare_process()
    emu = Emulator()
    import importlib

    fs = emu.call(lambda: importlib.import_module("fastsoftmax"))
    print("isa in the emulator:", fs.isa(), emu.stats, file=sys.stderr)


if __name__ == "__main__":
    main()
