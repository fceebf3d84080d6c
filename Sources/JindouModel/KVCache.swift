/// One sequence's key/value cache: for every layer, the post-norm, post-rotary keys and
/// the values of every position so far (`kvHeads × headDim` floats per position), or for
/// Multi-head Latent Attention one latent row per position (`kv_lora_rank +
/// qk_rope_head_dim` floats) and no values.
///
/// A step first `reserve`s room for its new tokens, every layer writes their rows at
/// `length ..< length + n`, and `commit(n)` makes them visible to the next step.
///
/// `@unchecked Sendable`: a cache belongs to one sequence, and a sequence is in at most
/// one step at a time; the scheduler (or the caller of `generate`) guarantees that.
public final class KVCache: @unchecked Sendable {
    public let layerCount: Int
    /// Floats per position and layer for keys (or latent rows).
    public let rowWidth: Int
    /// Floats per position and layer for values (0: none are kept).
    public let valueWidth: Int
    public private(set) var length = 0
    public private(set) var capacity = 0
    private var keys: [UnsafeMutablePointer<Float>] = []
    private var values: [UnsafeMutablePointer<Float>] = []

    public convenience init(layerCount: Int, rowWidth: Int) {
        self.init(layerCount: layerCount, keyWidth: rowWidth, valueWidth: rowWidth)
    }

    public init(layerCount: Int, keyWidth: Int, valueWidth: Int) {
        self.layerCount = layerCount
        self.rowWidth = keyWidth
        self.valueWidth = valueWidth
    }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
    }

    /// Bytes the cache holds per cached token (keys + values over all layers).
    public var bytesPerToken: Int { layerCount * (rowWidth + valueWidth) * MemoryLayout<Float>.size }

    /// Bytes currently allocated.
    public var allocatedBytes: Int { capacity * bytesPerToken }

    /// Makes room for `additional` positions beyond `length` (grows geometrically).
    public func reserve(_ additional: Int) {
        let needed = length + additional
        if needed <= capacity { return }
        let newCapacity = max(needed, max(16, capacity * 2))
        for l in 0..<layerCount {
            let k = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * rowWidth)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: max(1, newCapacity * valueWidth))
            if capacity > 0 {
                k.update(from: keys[l], count: length * rowWidth)
                v.update(from: values[l], count: length * valueWidth)
                keys[l].deallocate()
                values[l].deallocate()
                keys[l] = k
                values[l] = v
            } else {
                keys.append(k)
                values.append(v)
            }
        }
        capacity = newCapacity
    }

    /// Key rows of `layer` (position-major).
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys[layer] }
    /// Value rows of `layer` (position-major).
    public func values(layer: Int) -> UnsafeMutablePointer<Float> { values[layer] }

    /// Makes `count` newly written positions part of the cache.
    public func commit(_ count: Int) {
        precondition(length + count <= capacity)
        length += count
    }

    /// Forgets everything (the memory stays reserved for reuse).
    public func reset() { length = 0 }

    /// Forgets the positions from `newLength` on (speculative drafts the model rejected).
    public func truncate(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length, "truncate to \(newLength) of \(length)")
        length = newLength
    }
}
