import CJindouSupport
import Dispatch
import Foundation

/// How many threads numeric kernels spread work over.
///
/// Defaults to the cores this process may use; `JINDOU_THREADS` overrides it (benchmarks
/// compare 1 and 2 threads on the same machine).
public enum Parallelism {
    public static let threads: Int = {
        if let text = ProcessInfo.processInfo.environment["JINDOU_THREADS"], let n = Int(text), n > 0 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()
}

/// The per-index function of `parallelApply`: a C function pointer, so it captures nothing;
/// everything it needs comes through `context`.
public typealias ParallelFunction = @convention(c) (_ context: UnsafeMutableRawPointer?, _ index: Int) -> Void

/// Runs `function(&task, i)` for `i` in `0..<count`, spread over the kernel threads when
/// `count > 1` and `Parallelism.threads > 1`. Allocates nothing, so the hot paths (linear
/// layers, grouped experts) use it; `function` is a closure literal that captures nothing
/// and reads its inputs from `task` (a struct on the caller's stack):
///
///     var task = RowTask(...)
///     parallelApply(chunks, &task) { context, i in context!.assumingMemoryBound(to: RowTask.self).pointee.run(i) }
///
/// Each index must only write memory no other index touches.
@inlinable
public func parallelApply<Task>(_ count: Int, _ task: inout Task, _ function: ParallelFunction) {
    if count <= 0 { return }
    withUnsafeMutablePointer(to: &task) { pointer in
        let context = UnsafeMutableRawPointer(pointer)
        if count == 1 || Parallelism.threads == 1 {
            for i in 0..<count { function(context, i) }
        } else {
            jindou_parallel_apply(count, context, function, Int32(Parallelism.threads))
        }
    }
}

/// Runs `body(i)` for `i` in `0..<count`, spread over the kernel threads when there is
/// enough work to pay for the hand-off (`count > 1` and `Parallelism.threads > 1`): the
/// same thread pool as `parallelApply`. Making the non-escaping `body` callable from the
/// pool's threads costs two small heap objects per parallel call; per-token paths use
/// `parallelApply` directly instead.
///
/// `body` must only write disjoint memory per index.
@inlinable
public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count <= 0 { return }
    if count == 1 || Parallelism.threads == 1 {
        for i in 0..<count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { body in
        var body = body
        parallelApply(count, &body) { context, index in context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index) }
    }
}

/// Runs `body(i)` for `i` in `0..<threads` concurrently, whatever `Parallelism.threads`
/// says: for benchmarks that compare thread counts in one process.
public func runConcurrently(_ threads: Int, _ body: (Int) -> Void) {
    if threads <= 1 {
        body(0)
        return
    }
    withoutActuallyEscaping(body) { body in
        let shared = SendableBody(body)
        DispatchQueue.concurrentPerform(iterations: threads) { shared.call($0) }
    }
}

/// Splits `0..<total` into at most `Parallelism.threads * 2` contiguous chunks of at
/// least `minimumChunk` items and runs `body(range)` for each, in parallel.
@inlinable
public func parallelChunks(_ total: Int, minimumChunk: Int, _ body: (Range<Int>) -> Void) {
    if total <= 0 { return }
    let chunks = parallelChunkCount(total, minimumChunk: minimumChunk)
    if chunks == 1 {
        body(0..<total)
        return
    }
    let size = (total + chunks - 1) / chunks
    parallelFor(chunks) { chunk in
        let start = chunk * size
        let end = min(total, start + size)
        if start < end { body(start..<end) }
    }
}

/// How many chunks `parallelChunks` splits `total` items into: at most
/// `Parallelism.threads * 2`, each of at least `minimumChunk` items.
@inlinable
public func parallelChunkCount(_ total: Int, minimumChunk: Int) -> Int {
    let maxChunks = Parallelism.threads == 1 ? 1 : Parallelism.threads * 2
    return max(1, min(maxChunks, total / max(1, minimumChunk)))
}

/// Carries a benchmark body into `concurrentPerform` (`runConcurrently`).
///
/// `@unchecked Sendable`: `concurrentPerform` returns only after every iteration has
/// finished, so the body never outlives the call, and each thread writes its own memory.
@usableFromInline
struct SendableBody<Argument>: @unchecked Sendable {
    @usableFromInline let body: (Argument) -> Void
    @usableFromInline init(_ body: @escaping (Argument) -> Void) { self.body = body }
    @inlinable func call(_ argument: Argument) { body(argument) }
}
