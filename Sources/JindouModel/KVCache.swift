/// One sequence's key/value cache: for every layer, the post-norm, post-rotary keys and
/// the values of every position so far (`kvHeads × headDim` floats per position), or for
/// Multi-head Latent Attention one latent row per position (`kv_lora_rank +
/// qk_rope_head_dim` floats) and no values.
///
/// A sliding-window layer (`windows[l]` = W) keeps only what attention can still read: the
/// last W − 1 positions before a step plus the step's own, in a buffer that slides (rows
/// stay contiguous and position-ordered; when the buffer is full the live rows move to its
/// start, so each row moves O(1) times on average). Its memory stops growing with the
/// context: at most 2 × (W − 1 + the largest step) rows.
///
/// A step first `reserve`s room for its new tokens, every layer writes their rows at
/// `length ..< length + n` (through `keys(layer:)`, which addresses rows by position), and
/// `commit(n)` makes them visible to the next step.
///
/// Mapped mode (`maxPositions`, what the batch scheduler uses): every full-attention layer's
/// rows live at fixed offsets of one memfd (`KVRowStore`), mapped once with room for
/// `maxPositions` rows (pages cost memory only once written), so rows never move and a
/// later cache can *share* a kept prefix instead of copying it (`sharePrefix`): the whole
/// pages of the prefix are mapped from the store that holds them, copy-on-write
/// (MAP_PRIVATE), and only the rows of its last, partial page are copied. A cache writes
/// only rows at or after its length, so shared pages are read and never written; should a
/// cache be truncated below its shared prefix, those pages are copied into its own store
/// first. Sliding-window layers stay on the heap (their buffers slide) and are copied.
///
/// A linear-attention layer (`stateWidths[l]` > 0: Qwen3-Next's Gated DeltaNet) keeps no rows
/// but a fixed block of floats (its convolution history and recurrent state) that describes
/// the whole sequence so far: it grows with nothing, cannot be cut back to an earlier length
/// and is copied only whole (`copyPrefix` of the full length). For speculative decoding,
/// `keepStates(forNext:)` asks the next step to keep the state after each of its last tokens,
/// so that `truncate(to:)` can go back to any of them (transformers' `recurrent_states_to_keep`).
///
/// `@unchecked Sendable`: a cache belongs to one sequence, and a sequence is in at most
/// one step at a time; the scheduler (or the caller of `generate`) guarantees that.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    /// Floats per position and layer for keys (or latent rows).
    public let rowWidth: Int
    /// Floats per position and layer for values (0: none are kept).
    public let valueWidth: Int
    /// Per layer, its attention window (nil: every position is kept).
    public let windows: [Int?]
    /// Per layer, floats of fixed state (0: a layer of rows).
    public let stateWidths: [Int]
    private var states: [UnsafeMutablePointer<Float>?]
    /// Speculation: how many of the next step's last tokens keep their state, and per state
    /// layer those states (token-major, `stateWidths[l]` floats each).
    public private(set) var statesToKeep = 0
    private var keptStates: [UnsafeMutablePointer<Float>?]
    private var keptCounts: [Int]
    /// The length the first kept state stands for.
    private var keptFrom = 0
    public private(set) var length = 0
    /// Positions below which every layer can write without another `reserve`.
    public private(set) var capacity = 0
    private var keys: [UnsafeMutablePointer<Float>] = []
    private var values: [UnsafeMutablePointer<Float>] = []
    /// Per layer, rows allocated and the position held in row 0.
    private var rows: [Int]
    private var firstPosition: [Int]
    /// Mapped mode: the most positions a mapped layer holds, and the mapping (made at the
    /// first `reserve`, so queued requests hold no file descriptor).
    public let maxPositions: Int?
    private var mapping: KVMapping?

    public convenience init(layerCount: Int, rowWidth: Int) {
        self.init(layerCount: layerCount, keyWidth: rowWidth, valueWidth: rowWidth)
    }

    public init(layerCount: Int, keyWidth: Int, valueWidth: Int, windows: [Int?]? = nil, maxPositions: Int? = nil,
                stateWidths: [Int]? = nil) {
        precondition(windows.map { $0.count == layerCount && $0.allSatisfy { ($0 ?? 1) >= 1 } } ?? true, "one window ≥ 1 (or nil) per layer")
        precondition(stateWidths.map { $0.count == layerCount && $0.allSatisfy { $0 >= 0 } } ?? true, "one state width ≥ 0 per layer")
        self.layerCount = layerCount
        self.rowWidth = keyWidth
        self.valueWidth = valueWidth
        let stateWidths = stateWidths ?? Array(repeating: 0, count: layerCount)
        self.stateWidths = stateWidths
        states = Array(repeating: nil, count: layerCount)
        keptStates = Array(repeating: nil, count: layerCount)
        keptCounts = Array(repeating: 0, count: layerCount)
        // A state layer holds no rows: window 1 keeps it out of the mapped store.
        self.windows = (windows ?? Array(repeating: nil, count: layerCount)).enumerated().map { stateWidths[$0.offset] > 0 ? 1 : $0.element }
        self.maxPositions = maxPositions.map { max(1, $0) }
        rows = Array(repeating: 0, count: layerCount)
        firstPosition = Array(repeating: 0, count: layerCount)
    }

    deinit {
        for l in 0..<keys.count where !(mapping?.holds(layer: l) ?? false) {
            keys[l].deallocate()
            values[l].deallocate()
        }
        for state in states { state?.deallocate() }
        for kept in keptStates { kept?.deallocate() }
    }

    /// Bytes the cache holds per cached token (keys + values over the layers of rows), were
    /// every such layer to keep every position.
    public var bytesPerToken: Int {
        stateWidths.filter { $0 == 0 }.count * (rowWidth + valueWidth) * MemoryLayout<Float>.size
    }

    /// Layer `layer`'s fixed state (`stateWidths[layer]` floats, zero for a new sequence).
    public func state(layer: Int) -> UnsafeMutablePointer<Float> {
        precondition(stateWidths[layer] > 0, "layer \(layer) keeps rows, not a state")
        if let state = states[layer] { return state }
        let state = UnsafeMutablePointer<Float>.allocate(capacity: stateWidths[layer])
        state.initialize(repeating: 0, count: stateWidths[layer])
        states[layer] = state
        return state
    }

    /// Bytes of the fixed states allocated so far.
    public var stateBytes: Int {
        zip(states, stateWidths).reduce(0) { $0 + ($1.0 == nil ? 0 : $1.1) } * MemoryLayout<Float>.size
    }

    /// The next step keeps the state after each of its last `count` tokens (a draft
    /// verification: the pending token and its drafts), so that the cache can be truncated to
    /// any of those lengths afterwards.
    public func keepStates(forNext count: Int) {
        statesToKeep = stateWidths.contains { $0 > 0 } ? max(0, count) : 0
    }

    /// Where the step of `tokens` tokens now running keeps token `index`'s state in layer
    /// `layer` (nil: not kept). Called by the linear-attention kernel during that step.
    public func keptStateSlot(layer: Int, index: Int, tokens: Int) -> UnsafeMutablePointer<Float>? {
        let keep = min(statesToKeep, tokens)
        let slot = index - (tokens - keep)
        guard keep > 0, slot >= 0 else { return nil }
        let width = stateWidths[layer]
        if keptCounts[layer] < keep {
            keptStates[layer]?.deallocate()
            keptStates[layer] = UnsafeMutablePointer<Float>.allocate(capacity: keep * width)
        }
        keptCounts[layer] = keep
        keptFrom = length + tokens - keep + 1
        return keptStates[layer]! + slot * width
    }

    private func zeroStates() {
        for (state, width) in zip(states, stateWidths) { state?.update(repeating: 0, count: width) }
    }

    private func recomputeCapacity() {
        capacity = (0..<layerCount).filter { stateWidths[$0] == 0 }.map { firstPosition[$0] + rows[$0] }.min() ?? Int.max
    }

    /// Bytes this cache holds itself: heap rows, and the written pages of its own store
    /// (pages it shares from another store are that store's).
    public var allocatedBytes: Int {
        var heap = 0
        for l in 0..<layerCount where !(mapping?.holds(layer: l) ?? false) { heap += rows[l] }
        return heap * (rowWidth + valueWidth) * MemoryLayout<Float>.size + (mapping?.ownBytes(length: length) ?? 0) + stateBytes
    }

    /// Bytes of rows this cache reads from other caches' stores instead of holding them.
    public var sharedBytes: Int { mapping?.sharedBytes ?? 0 }

    /// The store of this cache's own mapped rows (nil: heap only, or not yet reserved).
    public var ownRowStore: KVRowStore? { mapping?.store }

    /// The stores whose pages this cache borrows from other caches.
    public var borrowedRowStores: [KVRowStore] { mapping?.borrowedStores ?? [] }

    /// Makes room for `additional` positions beyond `length`: full layers grow
    /// geometrically (mapped ones hold `maxPositions` from the start); sliding layers drop
    /// rows no query of this step or later can read.
    public func reserve(_ additional: Int) {
        if keys.isEmpty {
            keys = (0..<layerCount).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 1) }
            values = (0..<layerCount).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 1) }
            if let maxPositions, let m = KVMapping(windows: windows, widths: (rowWidth, valueWidth), maxPositions: maxPositions) {
                mapping = m
                for l in 0..<layerCount where m.holds(layer: l) {
                    keys[l].deallocate()
                    values[l].deallocate()
                    keys[l] = m.rows(layer: l, values: false)
                    values[l] = m.rows(layer: l, values: true)
                    rows[l] = maxPositions
                }
            }
        }
        let needed = length + additional
        if needed <= capacity { return }
        for l in 0..<layerCount where stateWidths[l] == 0 && needed > firstPosition[l] + rows[l] {
            if let window = windows[l] {
                // The step's first query (position `length`) reads back to length − (W − 1).
                let keepFrom = max(firstPosition[l], length - (window - 1))
                let live = length - keepFrom, required = live + additional
                relocate(l, keeping: keepFrom, rows: rows[l] >= 2 * required ? rows[l] : max(16, 2 * required))
            } else {
                relocate(l, keeping: firstPosition[l], rows: max(needed - firstPosition[l], max(16, rows[l] * 2)))
            }
        }
        recomputeCapacity()
    }

    /// Layer `l`'s rows from position `keepFrom` to `length` moved to row 0 of a buffer of
    /// `count` rows (the same buffer when it is big enough).
    private func relocate(_ l: Int, keeping keepFrom: Int, rows count: Int) {
        if let m = mapping, m.holds(layer: l) {
            // Past maxPositions (speculative drafts at the very end): this layer moves to
            // the heap for good; its pages stay mapped, unused, until the cache goes.
            for (buffers, width) in [(\KVCache.keys, rowWidth), (\KVCache.values, valueWidth)] {
                let target = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count * width))
                if length > 0 && width > 0 { target.update(from: self[keyPath: buffers][l], count: length * width) }
                self[keyPath: buffers][l] = target
            }
            mapping!.release(layer: l)
            rows[l] = count
            return
        }
        let live = length - keepFrom, offset = keepFrom - firstPosition[l]
        for (buffers, width) in [(\KVCache.keys, rowWidth), (\KVCache.values, valueWidth)] where width > 0 || count != rows[l] {
            let old = self[keyPath: buffers][l]
            let target = count == rows[l] ? old : UnsafeMutablePointer<Float>.allocate(capacity: max(1, count * width))
            if live > 0 && width > 0 {
                // Overlapping when compacting in place: copyMemory moves like memmove.
                UnsafeMutableRawPointer(target).copyMemory(from: old + offset * width, byteCount: live * width * MemoryLayout<Float>.size)
            }
            if target != old {
                old.deallocate()
                self[keyPath: buffers][l] = target
            }
        }
        rows[l] = count
        firstPosition[l] = keepFrom
    }

    /// Key rows of `layer`, addressed by position (`keys(layer:) + p × rowWidth` is position
    /// p's row; on a sliding layer only the positions it still keeps may be read or written).
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys[layer] - firstPosition[layer] * rowWidth }
    /// Value rows of `layer`, addressed by position as `keys(layer:)`.
    public func values(layer: Int) -> UnsafeMutablePointer<Float> { values[layer] - firstPosition[layer] * valueWidth }

    /// The first position layer `layer` still holds (0 unless it slides).
    public func firstKeptPosition(layer: Int) -> Int { firstPosition[layer] }

    /// Makes `count` newly written positions part of the cache.
    public func commit(_ count: Int) {
        precondition(length + count <= capacity)
        length += count
        statesToKeep = 0
    }

    /// Takes the first `length` positions of `other` (a cache of the same shape) into this
    /// empty cache, for prefix caching: every layer copies the rows attention can still read
    /// (a sliding layer only its window before `length`, which `other` must still hold).
    public func copyPrefix(of other: KVCache, length: Int) {
        precondition(self.length == 0 && other.length >= length && other.layerCount == layerCount
                     && other.rowWidth == rowWidth && other.valueWidth == valueWidth, "copyPrefix needs an empty cache of the same shape")
        guard length > 0 else { return }
        reserve(length)
        for l in 0..<layerCount { copyRows(layer: l, of: other, length: length) }
        commit(length)
    }

    /// Takes the first `length` positions of `other` into this empty cache by sharing its
    /// pages where both are mapped alike (see the type's notes), copying otherwise; returns
    /// the bytes now shared rather than held.
    @discardableResult
    public func sharePrefix(of other: KVCache, length: Int) -> Int {
        precondition(self.length == 0 && other.length >= length, "sharePrefix needs an empty cache and a long enough source")
        reserve(length)
        guard length > 0, let mine = mapping, let theirs = other.mapping, mine.layout == theirs.layout,
              other.layerCount == layerCount, other.windows == windows else {
            copyPrefix(of: other, length: length)
            return 0
        }
        for l in 0..<layerCount {
            if mine.holds(layer: l) && theirs.holds(layer: l) {
                for v in [false, true] where (v ? valueWidth : rowWidth) > 0 {
                    let width = (v ? valueWidth : rowWidth) * MemoryLayout<Float>.size
                    let sharedEnd = mine.share(layer: l, values: v, from: theirs, bytes: length * width)
                    let tail = length * width - sharedEnd
                    if tail > 0 {
                        (UnsafeMutableRawPointer(mine.rows(layer: l, values: v)) + sharedEnd)
                            .copyMemory(from: UnsafeRawPointer(other.mapping!.rows(layer: l, values: v)) + sharedEnd, byteCount: tail)
                    }
                }
            } else {
                copyRows(layer: l, of: other, length: length)
            }
        }
        commit(length)
        return mine.sharedBytes
    }

    /// Layer `l`'s readable rows before `length` copied from `other`.
    private func copyRows(layer l: Int, of other: KVCache, length: Int) {
        if stateWidths[l] > 0 {
            // A state stands for the whole sequence: only a copy of all of it is meaningful.
            precondition(length == other.length && other.stateWidths[l] == stateWidths[l],
                         "layer \(l) keeps a recurrent state: only the whole sequence (\(other.length)) can be copied, not \(length)")
            state(layer: l).update(from: other.state(layer: l), count: stateWidths[l])
            return
        }
        var from = other.firstKeptPosition(layer: l)
        if let window = windows[l] {
            precondition(from <= max(0, length - (window - 1)), "layer \(l) of the source no longer holds the window before \(length)")
            from = max(from, length - (window - 1))
            // Only the window is copied: rows before it were never written here.
            if from > firstPosition[l] {
                firstPosition[l] = from
                recomputeCapacity()
            }
        }
        precondition(windows[l] != nil || from == 0, "layer \(l) of the source no longer holds the prefix")
        let count = length - from
        guard count > 0 else { return }
        (keys(layer: l) + from * rowWidth).update(from: other.keys(layer: l) + from * rowWidth, count: count * rowWidth)
        if valueWidth > 0 {
            (values(layer: l) + from * valueWidth).update(from: other.values(layer: l) + from * valueWidth, count: count * valueWidth)
        }
    }

    /// Forgets everything (the memory stays reserved for reuse; shared pages are let go).
    public func reset() {
        mapping?.unshare(keepingBytes: { _ in 0 }, preserve: false)
        length = 0
        for l in 0..<layerCount { firstPosition[l] = 0 }
        zeroStates()
        statesToKeep = 0
        for l in 0..<layerCount { keptCounts[l] = 0 }
        capacity = (0..<layerCount).filter { stateWidths[$0] == 0 }.map { rows[$0] }.min() ?? (keys.isEmpty ? 0 : Int.max)
    }

    /// Forgets the positions from `newLength` on (speculative drafts the model rejected).
    /// A sliding layer must still hold the window of the next position.
    public func truncate(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length, "truncate to \(newLength) of \(length)")
        if newLength != 0 && newLength != length && stateWidths.contains(where: { $0 > 0 }) {
            // Back to a state the last step kept (speculation), or not at all.
            let slot = newLength - keptFrom
            for l in 0..<layerCount where stateWidths[l] > 0 {
                let width = stateWidths[l]
                precondition(slot >= 0 && slot < keptCounts[l] && keptStates[l] != nil,
                             "a recurrent state cannot be cut back to position \(newLength) of \(length) (no kept state)")
                state(layer: l).update(from: keptStates[l]! + slot * width, count: width)
            }
        }
        for l in 0..<layerCount {
            if let window = windows[l] {
                precondition(newLength == 0 || firstPosition[l] <= max(0, newLength - (window - 1)),
                             "layer \(l) no longer holds the window of position \(newLength)")
            }
        }
        // Rows from newLength on will be written again: pages shared past it become our own.
        mapping?.unshare(keepingBytes: { [rowWidth, valueWidth] values in newLength * (values ? valueWidth : rowWidth) * MemoryLayout<Float>.size })
        length = newLength
        if newLength == 0 { reset() }
    }
}
