//! What a process's memory is made of: the bytes its live allocations hold (counted by
//! [`Counting`], a wrapper of the global allocator) beside what the kernel has given it (the
//! resident set), its threads and its open file descriptors, as gauges at every scrape.
//!
//! The two sizes tell a leak from an allocator's retention: a leak grows the allocations, while
//! an allocator that keeps freed pages for reuse grows the resident set alone. A soak of
//! `aap serve` grew its resident set 12 MB an hour with every cache, stream and descriptor count
//! flat (docs/operations.md, "Soak"); nothing in `/metrics` could say which of the two it was.
//!
//! ```
//! use aap_telemetry::memory::{self, Counting};
//!
//! #[global_allocator]
//! static ALLOCATOR: Counting<std::alloc::System> = Counting::new(std::alloc::System);
//!
//! memory::count_heap(&ALLOCATOR);
//! memory::register();
//! let text = aap_telemetry::metrics::encode();
//! assert!(text.contains("aap_heap_allocated_bytes "));
//! assert!(ALLOCATOR.allocated_bytes() > 0);
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;

/// Threads that get a counter of their own in a [`Counting`]: the first ones a process starts
/// (its runtime's workers and the embedding model's among them). A counter that only its own
/// thread writes needs no atomic read-modify-write (a `lock`ed add on x86, paid at every
/// allocation and every free), only a load and a store. Later threads, and a thread whose slot
/// cannot be read, share one counter added to atomically. A slot is not reused when its thread
/// ends: what it counted stays in the sum, as it must (other threads may free its allocations).
const OWN_SLOTS: usize = 64;
const SHARED_SLOT: usize = OWN_SLOTS;

/// A counter on its own cache line pair, so no two threads write the same line.
#[repr(align(128))]
struct Slot(AtomicIsize);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Constant-initialised and without a destructor: reading it never allocates, so the
    // allocator may use it, also while a thread exits.
    static THREAD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's slot: its own (below [`OWN_SLOTS`]) or [`SHARED_SLOT`]. Inlined into the
/// allocator's calls: a profile of exact hits had it as a function of its own, 0.4% of the samples.
#[inline]
fn thread_slot() -> usize {
    THREAD_SLOT
        .try_with(|slot| {
            if slot.get() == usize::MAX {
                slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SHARED_SLOT));
            }
            slot.get()
        })
        .unwrap_or(SHARED_SLOT)
}

/// A global allocator that counts the bytes of live allocations and hands every call to `A`.
/// Its cost is a load and a store on the thread's own cache line per allocation and per free.
pub struct Counting<A> {
    inner: A,
    slots: [Slot; OWN_SLOTS + 1],
}

impl<A> Counting<A> {
    /// `inner`, counted; for a `#[global_allocator]` static.
    pub const fn new(inner: A) -> Counting<A> {
        Counting { inner, slots: [const { Slot(AtomicIsize::new(0)) }; OWN_SLOTS + 1] }
    }

    /// Bytes the live allocations made through it hold now: what was asked for, not the
    /// allocator's rounding or the pages it keeps. A slot may be read before another's
    /// matching free lands, so the sum can be off by the allocations in flight.
    pub fn allocated_bytes(&self) -> u64 {
        let total: isize = self.slots.iter().map(|slot| slot.0.load(Ordering::Relaxed)).sum();
        u64::try_from(total).unwrap_or(0)
    }

    #[inline]
    fn count(&self, delta: isize) {
        let slot = thread_slot();
        let counter = &self.slots[slot].0;
        if slot == SHARED_SLOT {
            counter.fetch_add(delta, Ordering::Relaxed);
        } else {
            // Only this thread writes its slot: no update can come between the load and the store.
            counter.store(counter.load(Ordering::Relaxed).wrapping_add(delta), Ordering::Relaxed);
        }
    }
}

/// A [`Counting`] allocator seen without its inner allocator's type.
pub trait CountsHeap: Send + Sync {
    /// Bytes its live allocations hold now ([`Counting::allocated_bytes`]).
    fn allocated_bytes(&self) -> u64;
}

impl<A: Send + Sync> CountsHeap for Counting<A> {
    fn allocated_bytes(&self) -> u64 {
        Counting::allocated_bytes(self)
    }
}

/// The process's global allocator, when it is a [`Counting`] and the binary said so.
static HEAP: OnceLock<&'static dyn CountsHeap> = OnceLock::new();

/// Reports `allocator`'s count as `aap_heap_allocated_bytes`: call it first thing in `main` with
/// the `#[global_allocator]` static. Later calls change nothing.
pub fn count_heap(allocator: &'static dyn CountsHeap) {
    let _ = HEAP.set(allocator);
}

fn signed(bytes: usize) -> isize {
    // No allocation is larger than isize::MAX bytes (Layout's own limit).
    bytes as isize
}

// SAFETY: every call is `A`'s with the caller's arguments; the counting reads only sizes.
// A global allocator is `unsafe` by its trait; this wrapper adds no other unsafe code.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            self.count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.count(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let moved = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            self.count(signed(new_size) - signed(layout.size()));
        }
        moved
    }
}

/// What `/proc` says of a process: resident bytes, threads, open descriptors.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub resident_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
}

impl Process {
    /// This process, now; each figure is `None` where `/proc` does not say (not Linux).
    pub fn read() -> Process {
        Process::at("/proc/self")
    }

    /// Process `pid`, now (a tool sampling the servers it started); each figure is `None` where
    /// `/proc` does not say (the process is gone, or not ours to read).
    pub fn of(pid: u32) -> Process {
        Process::at(&format!("/proc/{pid}"))
    }

    fn at(dir: &str) -> Process {
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let open_fds = std::fs::read_dir(format!("{dir}/fd")).ok().map(|entries| entries.count() as u64);
        Process { open_fds, ..Process::from_status(&status) }
    }

    /// `VmRSS` and `Threads` of a `/proc/<pid>/status` text.
    fn from_status(status: &str) -> Process {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                line.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        Process { resident_bytes: field("VmRSS").map(|kib| kib * 1024), threads: field("Threads"), open_fds: None }
    }
}

/// The gauges of this module, read at every scrape.
#[derive(Debug)]
struct Memory;

impl Memory {
    /// Each gauge's name, help and value in `process` (`None`: not shown).
    fn gauges(process: Process) -> [(&'static str, &'static str, Option<u64>); 4] {
        [
            (
                "process_resident_bytes",
                "Resident memory of this process (VmRSS): what the kernel has given it, including pages its allocator keeps free for reuse.",
                process.resident_bytes,
            ),
            (
                "heap_allocated_bytes",
                "Bytes this process's live allocations hold (counted by its allocator's wrapper): a leak grows it, an allocator keeping freed pages grows only the resident set.",
                HEAP.get().map(|heap| heap.allocated_bytes()),
            ),
            ("process_threads", "Threads of this process.", process.threads),
            ("process_open_fds", "Open file descriptors of this process (sockets included).", process.open_fds),
        ]
    }
}

impl Collector for Memory {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in Memory::gauges(Process::read()) {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Registers the process's memory, threads and descriptors as `aap_process_resident_bytes`,
/// `aap_heap_allocated_bytes` (when the global allocator is a [`Counting`]),
/// `aap_process_threads` and `aap_process_open_fds`, each read at every scrape. Calls after the
/// first change nothing.
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for (name, _, _) in Memory::gauges(Process::default()) {
            crate::metrics::declare(name, "gauge");
        }
        crate::metrics::register_collector(Box::new(Memory));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_resident_bytes_and_threads() {
        let status = "Name:\taap\nVmPeak:\t  900000 kB\nVmRSS:\t  262144 kB\nRssAnon:\t  200000 kB\nThreads:\t6\n";
        let process = Process::from_status(status);
        assert_eq!(process.resident_bytes, Some(268_435_456));
        assert_eq!(process.threads, Some(6));
        assert_eq!(Process::from_status("Name:\taap\n"), Process::default());
    }

    #[test]
    fn a_process_is_read_by_its_id_as_itself() {
        let by_id = Process::of(std::process::id());
        assert!(by_id.resident_bytes.is_some_and(|bytes| bytes > 1_000_000), "{by_id:?}");
        assert!(by_id.threads.is_some_and(|threads| threads >= 1), "{by_id:?}");
        assert!(by_id.open_fds.is_some_and(|fds| fds >= 3), "{by_id:?}");
        assert_eq!(Process::of(u32::MAX), Process::default(), "no such process");
    }

    #[test]
    #[allow(unsafe_code)]
    fn counting_adds_allocations_and_takes_frees_away() {
        let counting = Counting::new(std::alloc::System);
        let layout = Layout::from_size_align(4096, 8).expect("a valid layout");
        // SAFETY: each pointer is freed once, with the layout it was allocated (or grown) with.
        unsafe {
            let ptr = counting.alloc(layout);
            assert!(!ptr.is_null());
            assert_eq!(counting.allocated_bytes(), 4096);
            let grown = counting.realloc(ptr, layout, 10_000);
            assert!(!grown.is_null());
            assert_eq!(counting.allocated_bytes(), 10_000);
            counting.dealloc(grown, Layout::from_size_align(10_000, 8).expect("a valid layout"));
            let zeroed = counting.alloc_zeroed(layout);
            assert_eq!(*zeroed.add(4095), 0);
            assert_eq!(counting.allocated_bytes(), 4096);
            // Freed on another thread, counted in that thread's slot: the sum still falls.
            let zeroed = zeroed as usize;
            std::thread::scope(|scope| {
                scope.spawn(|| counting.dealloc(zeroed as *mut u8, layout));
            });
        }
        assert_eq!(counting.allocated_bytes(), 0);
    }

    #[test]
    #[allow(unsafe_code)]
    fn threads_past_those_with_a_slot_of_their_own_are_counted_too() {
        let counting = Counting::new(std::alloc::System);
        let layout = Layout::from_size_align(100, 8).expect("a valid layout");
        let threads = OWN_SLOTS + 6;
        // SAFETY: each pointer is freed once, with its layout, after all were allocated.
        let pointers: Vec<usize> = std::thread::scope(|scope| {
            let spawned: Vec<_> =
                (0..threads).map(|_| scope.spawn(|| unsafe { counting.alloc(layout) } as usize)).collect();
            spawned.into_iter().map(|thread| thread.join().expect("the thread allocates")).collect()
        });
        assert!(pointers.iter().all(|ptr| *ptr != 0));
        assert!(NEXT_SLOT.load(Ordering::Relaxed) > OWN_SLOTS, "some threads shared the last slot");
        assert_eq!(counting.allocated_bytes(), 100 * threads as u64);
        for ptr in pointers {
            // SAFETY: as above.
            unsafe { counting.dealloc(ptr as *mut u8, layout) };
        }
        assert_eq!(counting.allocated_bytes(), 0);
    }

    #[test]
    fn a_scrape_shows_the_process_and_omits_an_uncounted_heap() {
        register();
        let text = crate::metrics::encode();
        let scrape = crate::exposition::Scrape::parse(&text).expect("the exposition parses");
        let resident = scrape.value("aap_process_resident_bytes", &[]).expect("the resident set in the scrape");
        assert!(resident > 1e6, "a test process holds more than a megabyte: {resident}");
        assert_eq!(scrape.kind("aap_process_resident_bytes"), Some("gauge"));
        assert!(text.contains("aap_process_threads "), "{text}");
        assert!(text.contains("aap_process_open_fds "), "{text}");
        // This test binary's allocator is the system's, not a Counting: no heap gauge.
        assert!(!text.contains("aap_heap_allocated_bytes"), "{text}");
        // Declared all the same, so checks of what a process can export (the dashboard's) know it.
        let families = crate::metrics::families();
        for name in
            ["aap_process_resident_bytes", "aap_heap_allocated_bytes", "aap_process_threads", "aap_process_open_fds"]
        {
            assert_eq!(families.get(name).map(String::as_str), Some("gauge"), "{name}");
        }
        register();
        let again = crate::exposition::Scrape::parse(&crate::metrics::encode()).expect("the exposition parses");
        assert_eq!(again.matching("aap_process_threads", &[]).count(), 1, "registered once");
    }
}
