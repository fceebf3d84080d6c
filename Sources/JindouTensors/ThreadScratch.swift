import CJindouSupport

/// Per-thread working memory for the hot paths, so a decode step allocates nothing once
/// its buffers have grown to the model's sizes (`jindou_thread_scratch`).
///
/// A buffer belongs to the thread that asked for it and stays valid until that thread asks
/// for the same slot again. Rules that keep that safe: each use site has its own slot;
/// a buffer is used only in synchronous code (never held across `await`, where a task may
/// move to another thread); other threads may read or write it only while its owner waits
/// for them (inside `parallelApply`). Contents are undefined on return.
public enum ScratchSlot: Int32, CaseIterable, Sendable {
    /// Activations rounded to int8 blocks for the integer kernels (values, then scales and sums).
    case int8Activations = 0
    /// A tile of weights widened to fp32 for BLAS.
    case widenedTile = 1
    /// Attention scores of one query token.
    case attentionScores = 2
    /// The grouped experts' bookkeeping (integers).
    case expertGroups = 3
    /// The grouped experts' inputs, gate and up activations and outputs.
    case expertActivations = 4
    /// The router's per-token scores.
    case routerScores = 5
    /// The router's index lists.
    case routerIndices = 6
    /// The router's logits.
    case routerLogits = 7
    /// One row of block-quantised weights widened to fp32 (`WeightMatrix.floatActivations`).
    case widenedRow = 8
    /// The scores of a group of query heads sharing a key/value head (`attendOneToken`'s
    /// matrix-product form at long contexts).
    case groupedScores = 9
    /// One value head's chunk of the chunked delta rule (its gathered q/k/v, the chunk's
    /// triangular systems and outputs).
    case deltaRuleChunk = 10
}

/// A buffer of at least `count` values of `type` in `slot` of the calling thread's scratch.
@inlinable
public func threadScratch<T>(_ slot: ScratchSlot, _ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
    precondition(MemoryLayout<T>.alignment <= 64, "thread scratch is 64-byte aligned")
    let raw = jindou_thread_scratch(slot.rawValue, max(1, count) * MemoryLayout<T>.stride)!
    return raw.bindMemory(to: T.self, capacity: max(1, count))
}
